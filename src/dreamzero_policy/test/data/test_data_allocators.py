"""``dreamzero data convert`` sets up lean native allocators before pyarrow loads, and respects the user's."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dreamzero_policy.data.allocators import use_lean_allocators
from dreamzero_policy.data.synth import SynthSpec, mapping_dict, write_bag

# Runs the real CLI in a fresh interpreter, then reports the pool pyarrow ended up with.
CHILD = """
import sys
from dreamzero_policy.cli import main
code = main(sys.argv[1:])
import pyarrow as pa
print("exit", code, "pool", pa.default_memory_pool().backend_name)
"""


@pytest.fixture(scope="module")
def bag_and_mapping(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("alloc")
    spec = SynthSpec(duration_s=1.0, gripper_joint=None)
    write_bag(root / "bag", spec)
    (root / "m.yaml").write_text(yaml.safe_dump(mapping_dict(spec)))
    return root / "bag", root / "m.yaml"


def _convert_in_child(bag: Path, mapping: Path, out: Path, **env: str) -> str:
    child_env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"} | env
    argv = ["data", "convert", str(bag), "-m", str(mapping), "-o", str(out), "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], env=child_env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_convert_cli_runs_pyarrow_on_the_system_allocator(bag_and_mapping: tuple[Path, Path], tmp_path: Path) -> None:
    bag, mapping = bag_and_mapping
    assert _convert_in_child(bag, mapping, tmp_path / "ds") == "exit 0 pool system"
    assert (tmp_path / "ds" / "meta" / "info.json").is_file()


def test_convert_cli_keeps_the_users_arrow_pool(bag_and_mapping: tuple[Path, Path], tmp_path: Path) -> None:
    bag, mapping = bag_and_mapping
    line = _convert_in_child(bag, mapping, tmp_path / "ds", ARROW_DEFAULT_MEMORY_POOL="mimalloc")
    assert line == "exit 0 pool mimalloc"


def test_lean_allocators_leave_an_imported_pyarrow_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow  # noqa: F401  (already loaded: too late to choose its pool)

    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    applied = use_lean_allocators()
    assert "ARROW_DEFAULT_MEMORY_POOL" not in os.environ
    assert not any("pyarrow" in a for a in applied)
    if platform.libc_ver()[0] == "glibc":
        assert applied == ["glibc malloc uses at most 2 arenas"]
    else:
        assert applied == []
