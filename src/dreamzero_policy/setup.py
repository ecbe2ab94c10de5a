"""ament_python package for the DreamZero policy: model, runtime, backends, data, node.

It also installs the workspace's top-level ``launch/`` and ``config/`` folders into
``share/dreamzero_policy/`` so ``ros2 launch dreamzero_policy <file>`` finds them.
"""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "dreamzero_policy"
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent  # <repo>/src/dreamzero_policy -> <repo>


def tree_data_files(folder: str) -> list[tuple[str, list[str]]]:
    """(install dir, [files]) for every file under ``<repo>/<folder>``, keeping subfolders."""
    root = REPO_ROOT / folder
    entries: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel_dir = path.parent.relative_to(REPO_ROOT)
            # Paths relative to setup.py: setuptools rejects absolute data_files sources.
            src = Path("..", "..", path.relative_to(REPO_ROOT)).as_posix()
            entries.setdefault(f"share/{PACKAGE}/{rel_dir.as_posix()}", []).append(src)
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *tree_data_files("launch"),
        *tree_data_files("config"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dreamzero-ros maintainers",
    maintainer_email="maintainers@dreamzero-ros.dev",
    description="DreamZero world action model, runtime and policy node",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "policy_node = dreamzero_policy.nodes.policy_node:main",
            "dreamzero = dreamzero_policy.cli:main",
        ],
    },
)
