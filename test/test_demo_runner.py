"""Demo runner pieces without the graph: child process shutdown, executable lookup, CLI arguments."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pytest
from dreamzero_policy.bringup import RECORD_TOPICS, NodeSpec, sim_nodes
from dreamzero_policy.demo_tools.processes import ProcessGroup, executable_path

from dreamzero_policy import demo

REPO = Path(__file__).resolve().parents[1]

# A stand-in *executable* (not a ROS node): its behaviour on SIGINT comes from its file name, since the
# runner passes it ROS arguments it ignores.
_CHILD = """#!{python}
import os, signal, sys, time
mode = os.path.basename(sys.argv[0])
if mode == "ignore_sigint":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
elif mode == "clean":
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
elif mode == "fail":
    print("boom: something broke", flush=True)
    sys.exit(3)
print("up", " ".join(sys.argv[1:]), flush=True)
while True:
    time.sleep(0.05)
"""


def _install(tmp_path: Path, package: str, *exes: str) -> Path:
    for exe in exes:
        path = tmp_path / "install" / package / "lib" / package / exe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_CHILD.format(python=sys.executable))
        path.chmod(0o755)
    return tmp_path / "install"


def _wait_for_line(path: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        time.sleep(0.05)
    pytest.fail(f"{path} never printed {text!r}")


def test_process_group_stops_in_reverse_order_and_escalates(tmp_path: Path) -> None:
    install = _install(tmp_path, "pkg", "clean", "ignore_sigint")
    group = ProcessGroup(tmp_path / "logs", dict(os.environ))
    clean = group.start(NodeSpec(package="pkg", executable="clean", name="a"), ["-p", "x:=1"], install)
    stubborn = group.start(NodeSpec(package="pkg", executable="ignore_sigint", name="b"), install_dir=install)
    _wait_for_line(clean.log_path, "up --ros-args -r __node:=a -p x:=1")
    _wait_for_line(stubborn.log_path, "up --ros-args -r __node:=b")
    assert group.dead() == []
    group.stop(sigint_timeout=1.0, sigterm_timeout=3.0)
    assert clean.returncode == 0 and clean.stop_signal == "SIGINT" and clean.clean
    assert stubborn.stop_signal == "SIGTERM" and stubborn.returncode == -15 and not stubborn.clean


def test_process_group_reports_a_child_that_died(tmp_path: Path) -> None:
    install = _install(tmp_path, "pkg", "fail")
    group = ProcessGroup(tmp_path / "logs", dict(os.environ))
    failing = group.start(NodeSpec(package="pkg", executable="fail", name="f"), install_dir=install)
    failing.process.wait(timeout=10)
    assert group.dead() == [failing]
    assert failing.returncode == 3 and not failing.clean
    assert "boom: something broke" in failing.log_tail()
    group.stop()
    assert failing.stop_signal == "exited by itself"


def test_executable_lookup_names_the_fix(tmp_path: Path) -> None:
    spec = NodeSpec(package="no_such_pkg", executable="nothing", name="x")
    with pytest.raises(FileNotFoundError, match="make build"):
        executable_path(spec, tmp_path)
    install = _install(tmp_path, "pkg", "clean")
    assert (
        executable_path(NodeSpec(package="pkg", executable="clean", name="c"), install)
        == install / "pkg" / "lib" / "pkg" / "clean"
    )


def test_graph_names_follow_the_bringup_node_names() -> None:
    names = demo.GraphNames.from_specs(sim_nodes(config=REPO / "config"))
    assert names.run_task == "/dreamzero_policy/run_task"
    assert names.predicted == "/dreamzero_policy/predicted/image"
    topics = names.record_topics()
    assert set(RECORD_TOPICS) <= set(topics)
    assert names.commanded in topics and names.predicted in topics and len(topics) == len(set(topics))


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(argv)


def test_arguments_round_trip_for_the_namespace_rerun(tmp_path: Path) -> None:
    args = _parse(
        [
            "--duration",
            "7.5",
            "--preset",
            "tiny",
            "--instruction",
            "stack the blocks",
            "--output-dir",
            str(tmp_path / "run"),
            "--realtime-factor",
            "0.2",
            "--device",
            "cpu",
        ]
    )
    again = _parse(demo._argv(args))
    assert again.no_netns  # the re-run must not try to isolate itself again
    for key in (
        "duration",
        "checkpoint",
        "instruction",
        "output_dir",
        "backend",
        "startup_timeout",
        "realtime_factor",
        "device",
    ):
        assert getattr(again, key) == getattr(args, key), key
    # Unset "auto" values stay unset, so the re-run decides them.
    auto = _parse(demo._argv(_parse(["--output-dir", str(tmp_path / "run")])))
    assert auto.realtime_factor is None and auto.device == "auto" and auto.checkpoint == ""


def test_auto_defaults_slow_the_sim_on_cpu_and_keep_explicit_choices() -> None:
    cpu = _parse([])
    chosen = demo.resolve_auto(cpu, cuda=False)
    assert (cpu.realtime_factor, cpu.checkpoint, cpu.device) == (demo.CPU_REALTIME_FACTOR, "small-flash", "")
    assert cpu.realtime_factor < 1.0 and chosen and chosen[0].startswith("no CUDA")
    gpu = _parse([])
    demo.resolve_auto(gpu, cuda=True)
    assert (gpu.realtime_factor, gpu.checkpoint, gpu.device) == (1.0, "", "cuda")
    explicit = _parse(["--realtime-factor", "0.5", "--checkpoint", "tiny", "--device", "cpu"])
    assert demo.resolve_auto(explicit, cuda=False) == []
    assert (explicit.realtime_factor, explicit.checkpoint, explicit.device) == (0.5, "tiny", "cpu")


def test_small_flash_preset_is_small_in_one_step_mode() -> None:
    from dreamzero_policy.model.configuration_dreamzero import get_preset

    small, flash = get_preset("small"), get_preset(demo.CPU_CHECKPOINT)
    assert (flash.num_inference_steps, flash.dit_step_mask, flash.cfg_scale) == (1, (True,), 1.0)
    same = ("dim", "num_layers", "num_heads", "ffn_dim", "latent_height", "latent_width", "num_action_per_block")
    assert all(getattr(small, k) == getattr(flash, k) for k in same)
    assert small.num_inference_steps > 1 and small.cfg_scale != 1.0


def test_bad_arguments_fail_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.run(_parse(["--duration", "0"])) == 2
    assert "--duration must be > 0" in capsys.readouterr().err
    assert demo.run(_parse(["--realtime-factor", "0"])) == 2
    assert "--realtime-factor must be in (0, 10]" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "old.txt").write_text("x")
    assert demo.run(_parse(["--output-dir", str(tmp_path / "run")])) == 2
    assert "not empty" in capsys.readouterr().err


def _report(
    received: int, accepted: int | None, motion: float, violations: int = 0, latency: float = 0.5, rtf: float = 1.0
) -> dict:
    return {
        "run": {"realtime_factor": rtf},
        "chunks": {
            "received": received,
            "accepted_by_adapter": accepted,
            "horizon_s": 1.6,
            "latency_s": {"mean": latency},
        },
        "motion_rad": {"panda_joint1": motion},
        "limit_violations": {
            "total": violations,
            "max_position_excess_rad": 0.0012 if violations else 0.0,
            "per_joint": {
                "panda_joint1": {"position_measured": 0, "position_commanded": 0},
                "panda_joint4": {"position_measured": violations, "position_commanded": 0},
            },
        },
    }


def test_verdicts_name_what_went_wrong() -> None:
    assert demo._check(_report(10, 8, 0.4)) == []
    assert "no action chunk" in demo._check(_report(0, None, 0.0))[0]
    slow = demo._check(_report(4, 0, 0.0, latency=6.0))
    assert len(slow) == 1 and "rejected all 4 chunks" in slow[0] and "6.00 s of compute per chunk" in slow[0]
    assert "2.00 s of sim time at realtime factor 0.25" in demo._check(_report(4, 0, 0.0, latency=8.0, rtf=0.25))[0]
    # 6 s of compute at factor 0.2 is 1.2 s of sim time: inside the 1.6 s chunk, so not the explanation.
    assert "see the adapter log" in demo._check(_report(4, 0, 0.0, latency=6.0, rtf=0.2))[0]
    assert "did not move" in demo._check(_report(5, 5, 0.0))[0]
    limits = demo._check(_report(10, 8, 0.4, violations=3))[0]
    assert "3 joint limit violations (panda_joint4 position_measured x3; worst position excess 0.0012 rad" in limits
    assert "panda_joint1" not in limits
