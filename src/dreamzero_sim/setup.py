"""ament_python package: a MuJoCo simulated robot with ros2_control-like interfaces."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "dreamzero_sim"
MODELS = sorted(p.as_posix() for p in Path("models").rglob("*") if p.is_file())

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/models", MODELS),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dreamzero-ros maintainers",
    maintainer_email="maintainers@dreamzero-ros.dev",
    description="MuJoCo simulated robot for DreamZero",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "sim_robot_node = dreamzero_sim.sim_robot_node:main",
        ],
    },
)
