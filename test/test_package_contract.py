"""Packaging contract: manifests are valid ROS packages, console scripts resolve and are installed where ROS
expects them (``install/<pkg>/lib/<pkg>/<exe>``), and ``--help`` works for the user-facing CLI."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

REPO = Path(__file__).resolve().parents[1]
PYTHON_PACKAGES = ("dreamzero_policy", "embodiment_adapters", "dreamzero_sim")


def console_scripts(pkg: str) -> dict[str, str]:
    tree = ast.parse((REPO / "src" / pkg / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [ast.literal_eval(e) for e in value.elts]
                    return dict(e.replace(" ", "").split("=", 1) for e in entries)
    raise AssertionError(f"{pkg}/setup.py declares no console_scripts")


@pytest.mark.parametrize("pkg", ["dreamzero_msgs", *PYTHON_PACKAGES])
def test_manifest_is_a_valid_ros_package(pkg: str) -> None:
    manifest = parse_package(str(REPO / "src" / pkg / "package.xml"))
    assert manifest.name == pkg
    manifest.validate()  # an invalid maintainer email would silently demote the package to plain Python
    build_type = manifest.get_build_type()
    assert build_type == ("ament_cmake" if pkg == "dreamzero_msgs" else "ament_python")


@pytest.mark.parametrize("pkg", PYTHON_PACKAGES)
def test_console_scripts_resolve_and_are_installed(pkg: str) -> None:
    scripts = console_scripts(pkg)
    assert scripts
    for exe, target in scripts.items():
        module_name, func_name = target.split(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, func_name)), target
        installed = REPO / "install" / pkg / "lib" / pkg / exe
        assert installed.is_file(), f"{installed} missing: run `make setup`"


def test_dreamzero_cli_help_lists_every_subcommand() -> None:
    from dreamzero_policy.cli import SUBCOMMANDS

    out = subprocess.run(
        [sys.executable, "-m", "dreamzero_policy.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for name in SUBCOMMANDS:
        assert name in out.stdout
        sub = subprocess.run(
            [sys.executable, "-m", "dreamzero_policy.cli", name, "--help"], capture_output=True, text=True, timeout=120
        )
        assert sub.returncode == 0, f"dreamzero {name} --help failed:\n{sub.stderr[-2000:]}"
        assert "usage: dreamzero " + name in sub.stdout
