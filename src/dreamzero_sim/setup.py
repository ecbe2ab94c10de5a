"""ament_python package: a MuJoCo simulated robot with ros2_control-like interfaces."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "dreamzero_sim"


def _tree_data_files(root: str) -> list[tuple[str, list[str]]]:
    """One data_files entry per folder under ``root``, so nested files keep their folders
    (MJCF ``<include>`` paths are relative to the including file)."""
    groups: dict[str, list[str]] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            groups.setdefault(f"share/{PACKAGE}/{path.parent.as_posix()}", []).append(path.as_posix())
    return sorted(groups.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *_tree_data_files("models"),
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
