"""``dreamzero data``: help, convert, partial results, inspect (text, JSON, PNG plots)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from dreamzero_policy.cli import main
from dreamzero_policy.data.cli import resolve_mapping
from dreamzero_policy.data.mapping import load_mapping
from dreamzero_policy.data.synth import Camera, SynthSpec, mapping_dict, write_bag

PNG = b"\x89PNG\r\n\x1a\n"


def test_data_cli_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["data", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for needle in ("convert", "inspect", "exit codes", "align_tolerance_s", "MCAP"):
        assert needle in out
    assert main(["data"]) == 2


def test_data_cli_shipped_mappings_load() -> None:
    for name in ("droid_franka", "yam_policy_chunks"):
        m = load_mapping(resolve_mapping(name))
        assert m.name == name and m.video


def test_data_cli_convert_partial_and_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = SynthSpec(duration_s=1.0, gripper_joint=None)
    bad = SynthSpec(
        duration_s=1.0,
        gripper_joint=None,
        cameras=(Camera("/cam/image_raw"),),
        drop={"/cam/image_raw": frozenset({5, 6, 7})},
    )
    write_bag(tmp_path / "bags" / "ep0", good)
    write_bag(tmp_path / "bags" / "ep1", bad, "sqlite3")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping_dict(good)))
    base = ["data", "convert", str(tmp_path / "bags"), "-m", str(tmp_path / "m.yaml"), "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "strict")]) == 1  # the gap fails the whole run
    assert not (tmp_path / "strict").exists()
    assert main([*base, "-o", str(tmp_path / "ds"), "--skip-bad-episodes"]) == 3  # partial is never success
    err = capsys.readouterr().err
    assert "PARTIAL" in err and "ep1" in err
    report = json.loads((tmp_path / "ds" / "meta" / "conversion_report.json").read_text())
    assert report["status"] == "partial" and len(report["skipped_episodes"]) == 1
    # ep0 was encoded while indexing; ep1's streamed video was deleted when its plan was rejected.
    assert [b["video_pass"].split()[0] for b in report["bags"]] == ["single", "second"]
    assert sorted(p.name for p in (tmp_path / "ds").rglob("*.mp4")) == ["episode_000000.mp4"]
    assert main([*base, "-o", str(tmp_path / "two"), "--skip-bad-episodes", "--two-pass"]) == 3
    report2 = json.loads((tmp_path / "two" / "meta" / "conversion_report.json").read_text())
    assert [b["video_pass"] for b in report2["bags"]] == ["second (single pass turned off)"] * 2
    # Two bags at once in worker processes: the same partial outcome and the same skipped episode.
    assert main([*base, "-o", str(tmp_path / "jobs"), "--skip-bad-episodes", "--jobs", "2"]) == 3
    report3 = json.loads((tmp_path / "jobs" / "meta" / "conversion_report.json").read_text())
    assert report3["jobs"] == 2 and report3["skipped_episodes"] == report["skipped_episodes"]
    capsys.readouterr()
    for bad_jobs in ("0", "two"):
        with pytest.raises(SystemExit) as info:
            main([*base, "-o", str(tmp_path / "never"), "--jobs", bad_jobs])
        assert info.value.code == 2 and "argument --jobs/-j: must be a whole number >= 1" in capsys.readouterr().err
    capsys.readouterr()

    assert (
        main(
            [
                "data",
                "inspect",
                str(tmp_path / "bags" / "ep1"),
                "-m",
                str(tmp_path / "m.yaml"),
                "--plots",
                str(tmp_path / "plots"),
                "--json",
            ]
        )
        == 0
    )
    rep = json.loads(capsys.readouterr().out)
    cam = rep["topics"]["/cam/image_raw"]
    assert cam["count"] == 13 and cam["gaps"] == 1 and cam["dropped_estimate"] == 3
    assert rep["topics"]["/joint_states"]["rate_hz"] == pytest.approx(100.0, rel=1e-3)
    assert "beyond" in rep["episodes"][0]["error"]
    assert len(rep["plots"]) == 2 and all(Path(p).read_bytes()[:8] == PNG for p in rep["plots"])

    # A folder of recordings: every bag is inspected; one that cannot be read is reported and fails the run.
    assert main(["data", "inspect", str(tmp_path / "bags"), "--json"]) == 0
    assert [Path(r["bag"]).name for r in json.loads(capsys.readouterr().out)["bags"]] == ["ep0", "ep1"]
    broken = tmp_path / "bags" / "ep2"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("not: a bag\n")
    assert main(["data", "inspect", str(tmp_path / "bags")]) == 1
    captured = capsys.readouterr()
    assert "bag " + str(tmp_path / "bags" / "ep0") in captured.out and f"bag {broken}: FAILED" in captured.out
    assert "1 of 3 bags could not be read" in captured.err

    assert main(["data", "inspect", str(tmp_path / "ds"), "--plots", str(tmp_path / "dplots")]) == 0
    out = capsys.readouterr().out
    assert "1 episodes" in out and "skipped" in out
    assert (tmp_path / "dplots" / "episode_000000.png").read_bytes()[:8] == PNG


def test_data_cli_ctrl_c_mid_conversion_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C while the single read is encoding: workers stop, videos and staged rows are deleted,
    # nothing appears at the output, and the CLI exits 130 with a one-line message.
    from dreamzero_policy.data import live

    spec = SynthSpec(duration_s=2.0, gripper_joint=None)
    write_bag(tmp_path / "bag", spec)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping_dict(spec)))
    calls = {"n": 0}
    real = live.LiveConversion.advance

    def interrupted(self: live.LiveConversion) -> None:
        calls["n"] += 1
        if calls["n"] == 150:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(live.LiveConversion, "advance", interrupted)
    argv = ["data", "convert", str(tmp_path / "bag"), "-m", str(tmp_path / "m.yaml"), "-o", str(tmp_path / "ds")]
    assert main([*argv, "--no-progress"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "m.yaml"]  # no dataset, no staging tree


def test_data_cli_finds_interrupted_recordings_and_loose_files(tmp_path: Path) -> None:
    # A folder of recordings where one was interrupted (no metadata.yaml): it is found, not
    # silently skipped; loose .mcap files are bags of their own; other folders are ignored.
    from dreamzero_policy.data.cli import find_bags

    root = tmp_path / "recordings"
    spec = SynthSpec(duration_s=0.5)
    for name in ("ep1", "ep2"):
        write_bag(root / name, spec)
    (root / "ep2" / "metadata.yaml").unlink()
    (root / "ep2" / "ep2.mcap").rename(root / "ep2" / "ep2_0.mcap")  # as ros2 bag record names it
    write_bag(tmp_path / "loose", spec)
    (tmp_path / "loose" / "loose.mcap").rename(root / "export.mcap")
    (root / "plots").mkdir()
    (root / "plots" / "timing.png").write_bytes(b"png")
    assert find_bags([str(root)]) == [root / "ep1", root / "ep2", root / "export.mcap"]


def test_data_cli_warns_when_a_camera_cuts_the_episode_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The grid ends with the first stream to end: a camera that dies 3 s before the end takes the
    # joints' last 3 s with it. That is said, in the report (both passes alike) and on stderr.
    cams = (Camera("/cam0/image"), Camera("/cam1/image", phase_s=0.02))
    spec = SynthSpec(duration_s=4.0, cameras=cams, gripper_joint=None, drop={"/cam1/image": frozenset(range(15, 61))})
    write_bag(tmp_path / "bag", spec)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping_dict(spec)))
    reports = []
    for name, extra in (("one", []), ("two", ["--two-pass"])):
        argv = ["data", "convert", str(tmp_path / "bag"), "-m", str(tmp_path / "m.yaml"), "-o", str(tmp_path / name)]
        assert main([*argv, "--no-progress", *extra]) == 0
        err = capsys.readouterr().err
        assert "WARNING: episode 0" in err and "of recorded data after it: /cam1/image ended first" in err
        episode = json.loads((tmp_path / name / "meta" / "conversion_report.json").read_text())["episodes"][0]
        reports.append({k: episode[k] for k in ("lost_before_s", "lost_after_s", "started_last", "ended_first")})
    assert reports[0] == reports[1]
    # inspect with the mapping tells it before any conversion
    assert main(["data", "inspect", str(tmp_path / "bag"), "-m", str(tmp_path / "m.yaml")]) == 0
    assert "s after it (/cam1/image ended first)" in capsys.readouterr().out
    # the camera's last frame is at 0.95 s of 4 s; the next-state grid also ends one frame early
    assert reports[0]["ended_first"] == "/cam1/image" and reports[0]["lost_after_s"] == pytest.approx(3.12, abs=0.07)
    assert 0 <= reports[0]["lost_before_s"] < 0.1
    # A whole recording: nothing to warn about.
    write_bag(tmp_path / "whole", SynthSpec(duration_s=4.0, cameras=cams, gripper_joint=None))
    argv = ["data", "convert", str(tmp_path / "whole"), "-m", str(tmp_path / "m.yaml"), "-o", str(tmp_path / "w")]
    assert main([*argv, "--no-progress"]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_data_cli_warns_about_video_only_episodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Video-only episodes are a feature (human videos, play without commands), but an action topic
    # the bag does not have is more often a typo: the run says so instead of passing in silence.
    spec = SynthSpec(duration_s=1.0, gripper_joint=None)
    write_bag(tmp_path / "bag", spec)
    mapping = mapping_dict(spec, action={"joint_position": {"topic": "/typo_chunk", "names": list(spec.joints)}})
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping))
    argv = ["data", "convert", str(tmp_path / "bag"), "-m", str(tmp_path / "m.yaml"), "-o", str(tmp_path / "ds")]
    assert main([*argv, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: 1 of 1 episodes are video-only" in err and "/typo_chunk" in err
