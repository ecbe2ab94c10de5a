"""The repository is a normal ROS 2 source tree: cloned into ``ws/src/`` it builds with plain colcon,
installs the top-level launch/ and config/ into share/dreamzero_policy, and a broken interface
definition fails the build loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "dreamzero_msgs": "ros.ament_cmake",
    "dreamzero_policy": "ros.ament_python",
    "embodiment_adapters": "ros.ament_python",
    "dreamzero_sim": "ros.ament_python",
}
IGNORE = shutil.ignore_patterns(
    ".venv",
    "build",
    "install",
    "log",
    ".git",
    "runs",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "*.egg-info",
)


def colcon_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("ROS_DISTRO"):
        # PyPI-wheel ROS: the venv is the ament/CMake prefix (environment.md §3.5).
        for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
            env[var] = sys.prefix
    env.pop("COLCON_PREFIX_PATH", None)
    return env


def colcon(ws: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(sys.prefix) / "bin" / "colcon"), *args]
    return subprocess.run(cmd, cwd=ws, env=colcon_env(), capture_output=True, text=True, timeout=timeout)


def make_ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(REPO, ws / "src" / "dreamzero-ros", ignore=IGNORE)
    return ws


def python_args() -> list[str]:
    return ["--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]


def test_repository_root_is_not_a_package() -> None:
    # colcon stops crawling at a package: a root package.xml/setup.py would hide everything in src/.
    for name in ("package.xml", "setup.py", "setup.cfg", "COLCON_IGNORE"):
        assert not (REPO / name).exists(), f"{name} at the repository root hides the src/ packages from colcon"


def test_colcon_discovers_all_packages_from_a_workspace(tmp_path: Path) -> None:
    ws = make_ws(tmp_path)
    result = colcon(ws, "list")
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        name, _path, kind = line.split("\t")
        found[name] = kind.strip("()")
    assert found == PACKAGES


def share_files(install: Path) -> set[str]:
    share = install / "dreamzero_policy" / "share" / "dreamzero_policy"
    return {p.relative_to(share).as_posix() for p in share.rglob("*") if p.is_file()}


def expected_share_files() -> set[str]:
    return {
        p.relative_to(REPO).as_posix()
        for folder in ("launch", "config")
        for p in (REPO / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.slow
def test_full_workspace_builds_and_installs_launch_and_config(tmp_path: Path) -> None:
    ws = make_ws(tmp_path)
    result = colcon(ws, "build", *python_args())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for pkg in PACKAGES:
        assert (ws / "install" / pkg / "share" / pkg / "package.xml").is_file(), pkg
    expected = expected_share_files()
    assert any(f.startswith("launch/") for f in expected), "launch/ holds no files"
    assert any(f.startswith("config/") for f in expected), "config/ holds no files"
    assert expected <= share_files(ws / "install")
    # generated Python interfaces are installed
    site = list((ws / "install" / "dreamzero_msgs" / "lib").glob("python3*/site-packages/dreamzero_msgs/msg"))
    assert site and (site[0] / "_action_chunk.py").is_file()


def test_symlink_install_links_launch_and_config() -> None:
    # `make setup` builds this checkout with --symlink-install (the developer workflow).
    install = REPO / "install"
    assert (install / "dreamzero_policy").is_dir(), "run `make setup` first (it builds with --symlink-install)"
    assert expected_share_files() <= share_files(install)
    share = install / "dreamzero_policy" / "share" / "dreamzero_policy"
    for rel in sorted(expected_share_files()):
        assert (share / rel).is_symlink(), f"{rel} should be a symlink into the sources"
        assert (share / rel).resolve() == (REPO / rel).resolve()


@pytest.mark.slow
def test_broken_interface_definition_fails_the_build(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    pkg = ws / "src" / "dreamzero_msgs"
    shutil.copytree(REPO / "src" / "dreamzero_msgs", pkg)
    msg = pkg / "msg" / "ActionChunk.msg"
    msg.write_text(msg.read_text() + "\nfloat128 not_a_ros_type\n")
    result = colcon(ws, "build", "--event-handlers", "console_direct+", *python_args())
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "ActionChunk" in output
    assert "float128" in output
