"""ament_python package: embodiment adapters (action chunks -> robot controllers, safely)."""

from setuptools import find_packages, setup

PACKAGE = "embodiment_adapters"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dreamzero-ros maintainers",
    maintainer_email="maintainers@dreamzero-ros.dev",
    description="Safe execution of action chunks on robot controllers",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "adapter_node = embodiment_adapters.nodes.adapter_node:main",
        ],
    },
)
