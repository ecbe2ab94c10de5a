"""Bags synthesised with rosbags -> dataset -> read back: nothing lost, everything where it belongs."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.core.errors import AlignmentError, DatasetError
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.mapping import mapping_from_dict
from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.data.synth import Camera, SynthSpec, Truth, frame_color, mapping_dict, write_bag

FPS = 15.0
PERIOD = 1e9 / FPS
QUIET = ConvertOptions(progress=False)


def _digest(path: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def _expected_grid(truth: Truth, spec: SynthSpec, next_state: bool) -> np.ndarray:
    """The grid computed independently from the stamps that were written."""
    firsts, lasts = [], []
    for cam in spec.cameras:
        firsts.append(min(truth.stamps[cam.topic]))
        lasts.append(max(truth.stamps[cam.topic]))
    firsts.append(truth.stamps[spec.joint_topic][0])
    lasts.append(truth.stamps[spec.joint_topic][-1])
    if spec.chunk_topic:  # chunk steps are queried one period ahead; the newest chunk's last step ends coverage
        firsts.append(truth.chunks[0][0] + truth.chunks[0][1] - round(PERIOD))
        last = truth.chunks[-1]
        lasts.append(last[0] + last[1] * last[2].shape[0] - round(PERIOD))
    n = int(np.floor((min(lasts) - max(firsts)) / PERIOD + 1e-9)) + 1 - int(next_state)
    return max(firsts) + np.round(np.arange(n) * PERIOD).astype(np.int64)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_data_convert_is_exact(tmp_path: Path, storage: str) -> None:
    spec = SynthSpec(
        duration_s=2.0,
        cameras=(Camera("/cam0/image", "rgb8"), Camera("/cam1/image", "jpeg", phase_s=0.02)),
        jitter_s=0.003,
        chunk_topic="/chunk",
        chunk_rate=5.0,
        chunk_horizon=8,
        seed=3,
    )
    truth = write_bag(tmp_path / "bag", spec, storage)
    before = _digest(tmp_path / "bag")
    mapping = mapping_from_dict(mapping_dict(spec))
    result = convert([tmp_path / "bag"], mapping, tmp_path / "ds", QUIET)
    assert result.exit_code == 0 and _digest(tmp_path / "bag") == before  # input untouched

    ds = DatasetReader(tmp_path / "ds")
    ep = ds.episode(0)
    grid = _expected_grid(truth, spec, next_state=True)
    T = len(grid)
    assert T >= 25 and result.frames == T and ds.info["total_frames"] == T
    np.testing.assert_array_equal(ep.columns["sync.stamp_ns"], grid)
    np.testing.assert_array_equal(ep.timestamp, (np.arange(T) / FPS).astype(np.float32))
    np.testing.assert_array_equal(ep.columns["frame_index"], np.arange(T))

    for i, cam in enumerate(spec.cameras):
        used = ep.columns[f"sync.video.view{i}.stamp_ns"]
        stamps = np.asarray(truth.stamps[cam.topic])
        nearest = stamps[np.abs(stamps[None, :] - grid[:, None]).argmin(1)]
        np.testing.assert_array_equal(used, nearest)
        assert np.abs(used - grid).max() <= PERIOD / 2
        frames = ds.video(0, f"view{i}")
        assert frames.shape == (T, 24, 32, 3)
        ids = [truth.frames[cam.topic][truth.stamps[cam.topic].index(int(s))] for s in used]
        expect = np.array([frame_color(k) for k in ids], float)
        np.testing.assert_allclose(frames.reshape(T, -1, 3).mean(1), expect, atol=4)

    # State: the exact values of the JointState message with the nearest stamp.
    jstamps = np.asarray(truth.stamps["/joint_states"])
    used = ep.columns["sync.state.joint_position.stamp_ns"]
    assert np.abs(used - grid).max() <= 0.5 * 1e9 / spec.joint_rate + 2 * spec.jitter_s * 1e9
    rows = np.searchsorted(jstamps, used)
    np.testing.assert_array_equal(jstamps[rows], used)
    q = np.stack(truth.joints)[rows]
    np.testing.assert_array_equal(ep.state["joint_position"], q[:, :3].astype(np.float32))
    np.testing.assert_array_equal(ep.state["gripper_position"], q[:, 3:].astype(np.float32))

    # Actions from ActionChunks round-trip: each frame's action is a step of the newest chunk covering
    # the frame's target time (grid + one period), with its exact value.
    targets = ep.columns["sync.action.joint_position.stamp_ns"]
    assert np.abs(targets - (grid + PERIOD)).max() <= PERIOD / 2
    for k, tgt in enumerate(targets):
        c0, step, data = max((c for c in truth.chunks if c[0] + c[1] <= tgt), key=lambda c: c[0])
        i = (int(tgt) - c0) // step - 1
        assert c0 + (i + 1) * step == tgt
        np.testing.assert_array_equal(ep.action["joint_position"][k], data[i, :3].astype(np.float32))
    # The gripper action is the next frame's gripper state.
    np.testing.assert_array_equal(ep.action["gripper_position"][:-1], ep.state["gripper_position"][1:])

    # Statistics equal a direct numpy computation on the written columns.
    st = ds.stats
    state = ep.columns["observation.state"].astype(np.float64)
    for name, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
        np.testing.assert_allclose(st["observation.state"][name], fn(state, 0), atol=1e-6)
    np.testing.assert_allclose(st["observation.state"]["q01"], np.quantile(state, 0.01, 0), atol=1e-6)
    np.testing.assert_allclose(
        st["action"]["q99"], np.quantile(ep.columns["action"].astype(np.float64), 0.99, 0), atol=1e-6
    )
    a, s, H = ep.action["joint_position"].astype(np.float64), ep.state["joint_position"].astype(np.float64), 4
    rel = np.concatenate([a[t : t + H] - s[t] for t in range(T - H + 1)])
    np.testing.assert_allclose(ds.relative_stats["joint_position"]["q99"], np.quantile(rel, 0.99, 0), atol=1e-6)
    np.testing.assert_allclose(ds.relative_stats["joint_position"]["mean"], rel.mean(0), atol=1e-6)

    # Layout files.
    assert ds.modality["state"]["gripper_position"] == {
        **ds.modality["state"]["gripper_position"],
        "start": 3,
        "end": 4,
    }
    assert ds.modality["video"]["view1"]["original_key"] == "observation.images.view1"
    assert ds.embodiment == {"embodiment_tag": "synthetic"}
    assert ds.tasks == {0: "synthetic task"} and ds.episodes[0]["length"] == T
    assert ds.info["features"]["observation.state"]["names"] == ["j1", "j2", "j3", "gripper"]
    assert ds.info["features"]["observation.images.view0"]["shape"] == [24, 32, 3]


def test_data_convert_dropped_frame_fails_then_is_held_within_tolerance(tmp_path: Path) -> None:
    spec = SynthSpec(cameras=(Camera("/cam0/image"),), drop={"/cam0/image": frozenset({10})}, gripper_joint=None)
    write_bag(tmp_path / "bag", spec)
    with pytest.raises(AlignmentError, match=r"/cam0/image.*beyond 33\.3 ms"):
        convert([tmp_path / "bag"], mapping_from_dict(mapping_dict(spec)), tmp_path / "ds", QUIET)
    assert not (tmp_path / "ds").exists() and [p.name for p in tmp_path.iterdir()] == ["bag"]  # no partial output

    mapping = mapping_from_dict(mapping_dict(spec, align_tolerance_s=1.0 / FPS))
    convert([tmp_path / "bag"], mapping, tmp_path / "ds", QUIET)
    ds = DatasetReader(tmp_path / "ds")
    cam = next(s for s in ds.report["episodes"][0]["streams"] if s["topic"] == "/cam0/image")
    assert cam["held_frames"] == 1 and cam["max_align_error_s"] == pytest.approx(1 / FPS, abs=1e-6)
    frames = ds.video(0, "view0").reshape(-1, 24 * 32, 3).mean(1)
    ids = [np.abs(frames[k] - frame_color(9)).max() < 4 or np.abs(frames[k] - frame_color(11)).max() < 4 for k in (10,)]
    assert ids == [True]  # the missing frame 10 is held from a neighbour, and reported


def test_data_convert_time_going_backwards_is_dropped_and_counted(tmp_path: Path) -> None:
    spec = SynthSpec(backwards={"/joint_states": frozenset({50, 120})}, gripper_joint=None)
    truth = write_bag(tmp_path / "bag", spec)
    convert([tmp_path / "bag"], mapping_from_dict(mapping_dict(spec)), tmp_path / "ds", QUIET)
    ds = DatasetReader(tmp_path / "ds")
    rep = next(s for s in ds.report["episodes"][0]["streams"] if s["key"] == "joint_position")
    assert rep["out_of_order_dropped"] == 2
    bad = {truth.stamps["/joint_states"][i] for i in (50, 120)}
    assert not bad & set(ds.episode(0).columns["sync.state.joint_position.stamp_ns"].tolist())


def test_data_convert_video_only_episode_is_marked_and_left_out_of_stats(tmp_path: Path) -> None:
    with_actions = SynthSpec(chunk_topic="/chunk", gripper_joint=None)
    write_bag(tmp_path / "a", with_actions)
    write_bag(tmp_path / "b", SynthSpec(gripper_joint=None, seed=1))  # no /chunk topic recorded
    mapping = mapping_from_dict(mapping_dict(with_actions))
    result = convert([tmp_path / "a", tmp_path / "b"], mapping, tmp_path / "ds", QUIET)
    ds = DatasetReader(tmp_path / "ds")
    assert result.episodes == 2 and ds.info["video_only_episodes"] == [1]
    assert [e["video_only"] for e in ds.episodes] == [False, True]
    assert np.isnan(ds.episode(1).columns["action"]).all() and np.isfinite(ds.episode(0).columns["action"]).all()
    assert len(ds.video(1, "view0")) == ds.episodes[1]["length"]
    a0 = ds.episode(0).columns["action"].astype(np.float64)
    np.testing.assert_allclose(ds.stats["action"]["mean"], a0.mean(0), atol=1e-6)
    both = np.concatenate([ds.episode(i).columns["observation.state"] for i in (0, 1)]).astype(np.float64)
    np.testing.assert_allclose(ds.stats["observation.state"]["max"], both.max(0), atol=1e-6)


def test_data_convert_instruction_topic_splits_episodes(tmp_path: Path) -> None:
    spec = SynthSpec(
        duration_s=2.0, gripper_joint=None, instructions=((0.0, "pick"), (0.5, "pick"), (1.0, "place"), (1.6, "idle"))
    )
    write_bag(tmp_path / "bag", spec, "sqlite3")
    mapping = mapping_from_dict(
        mapping_dict(spec, episodes={"split": "instruction_topic", "topic": "/instruction"}, instruction={})
    )
    convert([tmp_path / "bag"], mapping, tmp_path / "ds", QUIET)
    ds = DatasetReader(tmp_path / "ds")
    assert [e["tasks"] for e in ds.episodes] == [["pick"], ["place"]]
    assert ds.tasks == {0: "pick", 1: "place"}
    t0 = 1_700_000_000 * 10**9
    for i, (lo, hi) in enumerate(((0.0, 1.0), (1.0, 1.6))):
        ep = ds.episode(i)
        assert ep.instruction == ds.episodes[i]["tasks"][0]
        stamps = ep.columns["sync.stamp_ns"]
        assert stamps[0] >= t0 + lo * 1e9 and stamps[-1] < t0 + hi * 1e9
        assert len(stamps) >= int((hi - lo) * FPS) - 2


def test_data_convert_run_task_goals_split_episodes(tmp_path: Path) -> None:
    spec = SynthSpec(
        duration_s=2.0, gripper_joint=None, instructions=((0.0, "stack"),), run_task=((0.2, 1.0, 4), (1.2, 1.9, 6))
    )
    write_bag(tmp_path / "bag", spec)
    mapping = mapping_from_dict(
        mapping_dict(
            spec,
            episodes={"split": "run_task", "topic": "/run_task/_action/status"},
            instruction={"topic": "/instruction"},
        )
    )
    convert([tmp_path / "bag"], mapping, tmp_path / "ds", QUIET)
    ds = DatasetReader(tmp_path / "ds")
    assert [e["outcome"] for e in ds.episodes] == ["succeeded", "aborted"]
    assert [e["tasks"] for e in ds.episodes] == [["stack"], ["stack"]]
    assert 10 <= ds.episodes[0]["length"] <= 12 and 9 <= ds.episodes[1]["length"] <= 11


def test_data_convert_rerun_is_safe(tmp_path: Path) -> None:
    spec = SynthSpec(duration_s=1.0, gripper_joint=None)
    write_bag(tmp_path / "bag", spec)
    mapping = mapping_from_dict(mapping_dict(spec))
    convert([tmp_path / "bag"], mapping, tmp_path / "ds", QUIET)
    first = _digest(tmp_path / "ds" / "meta")
    with pytest.raises(DatasetError, match="already exists"):
        convert([tmp_path / "bag"], mapping, tmp_path / "ds", QUIET)
    # A failing --overwrite run leaves the previous dataset intact.
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metadata.yaml").write_text("not: a bag\n")
    with pytest.raises(DatasetError):
        convert([tmp_path / "broken"], mapping, tmp_path / "ds", ConvertOptions(overwrite=True, progress=False))
    assert _digest(tmp_path / "ds" / "meta") == first
    convert([tmp_path / "bag"], mapping, tmp_path / "ds", ConvertOptions(overwrite=True, progress=False))
    assert json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())["total_episodes"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "broken", "ds"]


@pytest.mark.parametrize("offset_s", [-1_699_999_990.0, 7200.0], ids=["sim-time-nodes", "skewed-clock"])
@pytest.mark.parametrize("split", ["run_task", "instruction_topic"])
def test_data_convert_episode_events_follow_the_header_clock(tmp_path: Path, offset_s: float, split: str) -> None:
    # Nodes on sim time (header stamps from ~10 s) recorded by a wall-clock `ros2 bag record`:
    # episode boundaries arrive as receive times and are moved onto the header clock, so the
    # episodes are the ones a same-clock recording gives.
    base = SynthSpec(
        duration_s=2.0,
        gripper_joint=None,
        jitter_s=0.002,
        instructions=((0.0, "stack"), (1.0, "place"), (1.6, "idle")),
        run_task=((0.2, 1.0, 4), (1.2, 1.9, 6)),
        seed=4,
    )
    episodes = (
        {"split": "run_task", "topic": "/run_task/_action/status"}
        if split == "run_task"
        else {"split": "instruction_topic", "topic": "/instruction"}
    )
    mapping = mapping_from_dict(mapping_dict(base, episodes=episodes, instruction={"topic": "/instruction"}))
    datasets = []
    for name, spec in (("same", base), ("shifted", replace(base, header_offset_s=offset_s))):
        write_bag(tmp_path / f"bag_{name}", spec)
        res = convert([tmp_path / f"bag_{name}"], mapping, tmp_path / name, QUIET)
        datasets.append(DatasetReader(tmp_path / name))
        clock = res.report["bags"][0]["event_times"]
        if name == "same":
            assert clock == "receive time"
        else:  # the camera is received 2 ms after its stamp
            moved = re.fullmatch(r"receive time moved onto the header clock via \S+ \(median offset (\S+) s\)", clock)
            assert moved and float(moved[1]) == pytest.approx(offset_s - 0.002, abs=0.002)
    same, shifted = datasets
    assert len(same.episodes) == len(shifted.episodes) == 2
    period = 1e9 / FPS
    for ep, (a, b) in enumerate(zip(same.episodes, shifted.episodes, strict=True)):
        # The receive-to-header offset includes the camera's 2 ms transport delay, so a boundary
        # may land one frame apart; everything else is the same recording on another clock.
        assert (a.get("outcome"), a["tasks"]) == (b.get("outcome"), b["tasks"])
        assert abs(a["length"] - b["length"]) <= 1 and a["length"] >= 5
        assert abs(b["start_ns"] - a["start_ns"] - offset_s * 1e9) <= period + 5_000_000  # + jitter, delay
        # Frames on the same ticks (the shifted grid may start a few ms apart) hold nearly the
        # same joint values: a misplaced episode would be whole frames (~0.1 rad) away.
        ca, cb = same.episode(ep).columns, shifted.episode(ep).columns
        ta = np.asarray(ca["sync.stamp_ns"]) + round(offset_s * 1e9)
        tb = np.asarray(cb["sync.stamp_ns"])
        right = np.clip(np.searchsorted(ta, tb), 1, len(ta) - 1)
        j = np.where(np.abs(ta[right - 1] - tb) <= np.abs(ta[right] - tb), right - 1, right)  # nearest tick
        match = np.abs(ta[j] - tb) < 10_000_000
        assert match.sum() >= min(len(ta), len(tb)) - 1
        sa, sb = np.asarray(ca["observation.state"])[j[match]], np.asarray(cb["observation.state"])[match]
        assert np.abs(sa - sb).max() < 0.03


@pytest.mark.parametrize("single", [True, False], ids=["single-pass", "two-pass"])
def test_data_convert_a_clock_that_steps_back_is_an_error_not_a_silent_loss(tmp_path: Path, single: bool) -> None:
    # One message stamped early is a glitch and is dropped (test_data_align covers it). A clock that
    # steps back 0.5 s for a second makes every sample of that second "older": dropping them all
    # would lose data without a word, so the episode fails and says why.
    spec = SynthSpec(duration_s=2.0, gripper_joint=None, backwards={"/joint_states": frozenset(range(100, 200))})
    write_bag(tmp_path / "bag", spec)
    mapping = mapping_from_dict(mapping_dict(spec))
    opts = ConvertOptions(progress=False, single_pass=single)
    with pytest.raises(
        AlignmentError, match=r"/joint_states \('joint_position'\): \d+ of 201 samples .* clock went back"
    ):
        convert([tmp_path / "bag"], mapping, tmp_path / "ds", opts)
    assert not (tmp_path / "ds").exists()
    write_bag(tmp_path / "good", replace(spec, backwards={}))
    res = convert(
        [tmp_path / "good", tmp_path / "bag"], mapping, tmp_path / "ds", replace(opts, skip_bad_episodes=True)
    )
    assert res.exit_code == 3 and res.episodes == 1
    assert res.skipped[0]["bag"] == str(tmp_path / "bag") and "clock went backwards" in res.skipped[0]["reason"]
