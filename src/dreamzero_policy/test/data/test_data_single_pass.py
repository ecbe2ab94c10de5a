"""Single pass (live.py): taken for one-episode bags, and never changes the dataset.

Every case converts the same bag twice, streamed during pass 1 and with the two-pass path, and
compares everything a training loader reads (parquet columns, meta files, every decoded video
frame) and the alignment reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.mapping import mapping_from_dict
from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.data.synth import Camera, SynthSpec, mapping_dict, write_bag

CAMS = (Camera("/cam0/image", "rgb8"), Camera("/cam1/image", "jpeg", phase_s=0.02))


def _convert_both(tmp_path: Path, spec: SynthSpec, **overrides: object) -> tuple[Path, Path, list[str]]:
    write_bag(tmp_path / "bag", spec)
    mapping = mapping_from_dict(mapping_dict(spec, **overrides))
    passes = []
    for name, single in (("one", True), ("two", False)):
        res = convert([tmp_path / "bag"], mapping, tmp_path / name, ConvertOptions(progress=False, single_pass=single))
        passes.append(res.report["bags"][0]["video_pass"])
    return tmp_path / "one", tmp_path / "two", passes


def _assert_same_dataset(a: Path, b: Path) -> None:
    ra, rb = (json.loads((p / "meta" / "conversion_report.json").read_text())["episodes"] for p in (a, b))
    assert [{k: v for k, v in e.items() if k != "streams"} for e in ra] == [
        {k: v for k, v in e.items() if k != "streams"} for e in rb
    ]
    for ea, eb in zip(ra, rb, strict=True):
        assert [s["key"] for s in ea["streams"]] == [s["key"] for s in eb["streams"]]
        for sa, sb in zip(ea["streams"], eb["streams"], strict=True):
            mean_a, mean_b = sa.pop("mean_align_error_s"), sb.pop("mean_align_error_s")
            assert sa == sb and mean_a == pytest.approx(mean_b, rel=1e-9, abs=1e-15), sa["key"]
    da, db = DatasetReader(a), DatasetReader(b)
    assert da.info["total_episodes"] == db.info["total_episodes"] >= 1
    for name in ("info.json", "stats.json", "relative_stats_dreamzero.json", "episodes.jsonl", "modality.json"):
        assert (a / "meta" / name).read_text() == (b / "meta" / name).read_text(), name
    for ep in range(da.info["total_episodes"]):
        ea, eb = da.episode(ep), db.episode(ep)
        assert ea.columns.keys() == eb.columns.keys()
        for col in ea.columns:
            np.testing.assert_array_equal(np.asarray(ea.columns[col]), np.asarray(eb.columns[col]), err_msg=col)
        for key in json.loads((a / "meta" / "modality.json").read_text())["video"]:
            va, vb = da.video(ep, key), db.video(ep, key)
            assert len(va) == len(ea.columns["frame_index"])
            np.testing.assert_array_equal(va, vb, err_msg=f"episode {ep} video {key}")


def test_single_pass_is_taken_and_matches_two_passes_with_chunks(tmp_path: Path) -> None:
    spec = SynthSpec(duration_s=2.0, cameras=CAMS, jitter_s=0.003, chunk_topic="/chunk", chunk_horizon=8, seed=3)
    one, two, passes = _convert_both(tmp_path, spec)
    assert passes[0].startswith("single") and passes[1].startswith("second")
    _assert_same_dataset(one, two)


def test_single_pass_with_next_state_actions_and_dropped_frames(tmp_path: Path) -> None:
    # next_state actions: the last grid frame is dropped, so the live grid runs one tick behind.
    # Dropped camera frames are held (the same frame encoded twice).
    spec = SynthSpec(duration_s=2.0, cameras=CAMS, jitter_s=0.004, drop={"/cam0/image": frozenset({5, 6, 17})}, seed=5)
    one, two, passes = _convert_both(tmp_path, spec, align_tolerance_s=0.2)
    assert passes[0].startswith("single")
    _assert_same_dataset(one, two)
    frames = DatasetReader(one).episode(0).columns["sync.video.view0.stamp_ns"]
    assert (np.diff(frames) == 0).any()  # a held frame really occurred


@pytest.mark.parametrize("case", ["backwards", "resized"])
def test_single_pass_on_irregular_bags_still_matches(tmp_path: Path, case: str) -> None:
    if case == "backwards":  # stamps going backwards are dropped by both paths
        spec = SynthSpec(duration_s=2.0, cameras=CAMS, backwards={"/cam1/image": frozenset({9})}, seed=7)
        overrides: dict[str, object] = {"align_tolerance_s": 0.2}
    else:  # two keys share one camera at different sizes: one decode, two writers
        spec = SynthSpec(duration_s=1.5, cameras=(Camera("/cam0/image", "jpeg", 64, 48),), seed=8)
        overrides = {
            "video": {
                "full": {"topic": "/cam0/image"},
                "half": {"topic": "/cam0/image", "width": 32, "height": 24},
            }
        }
    one, two, passes = _convert_both(tmp_path, spec, **overrides)
    assert passes == ["single (video and rows streamed while indexing)", "second (single pass turned off)"]
    _assert_same_dataset(one, two)


@pytest.mark.parametrize("chunks", [True, False], ids=["chunk-actions", "next-state-actions"])
def test_single_pass_emits_each_tick_as_soon_as_it_is_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: bool
) -> None:
    # Most messages cannot move the grid, so the full check waits until the stream that held it
    # back has moved far enough. That shortcut must never hold back a tick that is already final
    # (rows and frames would pile up): after every message, the full check finds nothing more.
    from dreamzero_policy.data.live import LiveConversion

    spec = SynthSpec(
        duration_s=2.0,
        cameras=CAMS,
        jitter_s=0.004,
        drop={"/cam0/image": frozenset({5, 6})},
        chunk_topic="/chunk" if chunks else None,
        seed=13,
    )
    write_bag(tmp_path / "bag", spec)
    late: list[int] = []
    shortcut = LiveConversion.advance

    def checked(self: LiveConversion) -> None:
        shortcut(self)
        before = self.ticks
        self._wait = None  # the full check
        shortcut(self)
        late.append(self.ticks - before)

    monkeypatch.setattr(LiveConversion, "advance", checked)
    mapping = mapping_from_dict(mapping_dict(spec, align_tolerance_s=0.2))
    res = convert([tmp_path / "bag"], mapping, tmp_path / "ds", ConvertOptions(progress=False, single_pass=True))
    assert res.report["bags"][0]["video_pass"].startswith("single")
    assert len(late) > 200 and sum(late) == 0


def test_single_pass_gives_way_to_pass_two_when_the_plan_differs(tmp_path: Path) -> None:
    # A late-starting joint stream makes the cameras buffer far more than MAX_BUFFERED frames
    # before the grid can start: the live path gives up and pass 2 produces the dataset.
    from dreamzero_policy.data import live

    spec = SynthSpec(duration_s=2.0, cameras=CAMS, drop={"/joint_states": frozenset(range(60))}, seed=9)
    old = live.MAX_BUFFERED
    live.MAX_BUFFERED = 4
    try:
        one, two, passes = _convert_both(tmp_path, spec)
    finally:
        live.MAX_BUFFERED = old
    assert passes[0].startswith("second (") and "waiting for another stream" in passes[0]
    _assert_same_dataset(one, two)
    assert not list((tmp_path / "one").glob("**/*.partial*"))


def test_single_pass_split_by_topic_uses_pass_two(tmp_path: Path) -> None:
    spec = SynthSpec(duration_s=3.0, cameras=CAMS[:1], instructions=((0.1, "pick"), (1.5, "place")), seed=11)
    _, _, passes = _convert_both(tmp_path, spec, episodes={"split": "instruction_topic", "topic": "/instruction"})
    assert passes[0] == "second (single pass needs episodes.split: bag)"


@pytest.mark.parametrize("single", [True, False])
def test_decode_pool_output_equals_in_order_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single: bool
) -> None:
    # With cores to spare, frames are decoded ahead in a pool. JPEGs larger than the video are
    # decoded at reduced DCT scale once the first frame gave the size; the result must not depend
    # on which thread decoded what, so it equals the pool-less conversion bit for bit.
    from dreamzero_policy.data import encode

    spec = SynthSpec(duration_s=1.5, cameras=(Camera("/cam0/image", "jpeg", 128, 96),), seed=12)
    write_bag(tmp_path / "bag", spec)
    overrides = {
        "video": {
            "view0": {"topic": "/cam0/image", "width": 32, "height": 24},
            "view1": {"topic": "/cam0/image", "width": 64, "height": 48},
        }
    }
    mapping = mapping_from_dict(mapping_dict(spec, **overrides))
    opts = ConvertOptions(progress=False, single_pass=single)
    pools: list[object] = []
    real_pool = encode.decode_pool

    def spy(cameras: int, cores: int | None = None) -> object:
        pools.append(real_pool(cameras, cores))
        return pools[-1]

    monkeypatch.setattr(encode.os, "cpu_count", lambda: 1)
    convert([tmp_path / "bag"], mapping, tmp_path / "serial", opts)
    monkeypatch.setattr(encode.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(encode, "decode_pool", spy)
    if single:
        from dreamzero_policy.data import live

        monkeypatch.setattr(live, "decode_pool", spy)
    convert([tmp_path / "bag"], mapping, tmp_path / "pooled", opts)
    assert pools and all(p is not None for p in pools)
    _assert_same_dataset(tmp_path / "serial", tmp_path / "pooled")


def test_single_pass_video_only_bag_and_rows_spilled_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No action topic recorded: a video-only episode (NaN actions). Tiny blocks force many spills.
    from dreamzero_policy.data import live

    monkeypatch.setattr(live, "BLOCK_ROWS", 7)
    spec = SynthSpec(duration_s=2.0, cameras=CAMS, jitter_s=0.003, seed=13)
    overrides = {"action": {"joint_position": {"topic": "/commanded", "names": list(spec.joints)}}}
    one, two, passes = _convert_both(tmp_path, spec, **overrides)
    assert passes[0].startswith("single")
    _assert_same_dataset(one, two)
    ep = DatasetReader(one).episode(0)
    assert np.isnan(np.asarray(ep.columns["action"].tolist())).all()
    assert json.loads((one / "meta" / "episodes.jsonl").read_text().splitlines()[0])["video_only"] is True
    assert not list(one.rglob(".rows-*"))


def _swap_two_messages(src: Path, dst: Path, topic: str, index: int) -> None:
    """Copy a bag, logging messages ``index`` and ``index + 1`` of ``topic`` in each other's place."""
    from rosbags.rosbag2 import Reader, Writer

    with Reader(src) as reader:
        msgs = [(c, t, bytes(raw)) for c, t, raw in reader.messages()]
        conns = list(reader.connections)
    on_topic = [i for i, (c, _, _) in enumerate(msgs) if c.topic == topic]
    a, b = on_topic[index], on_topic[index + 1]
    msgs[a], msgs[b] = (msgs[a][0], msgs[a][1], msgs[b][2]), (msgs[b][0], msgs[b][1], msgs[a][2])
    with Writer(dst, version=9) as writer:
        out = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest) for c in conns}
        for c, t, raw in msgs:
            writer.write(out[c.id], t, raw)


def test_single_pass_hands_chunks_out_of_issue_order_to_two_passes(tmp_path: Path) -> None:
    spec = SynthSpec(duration_s=2.0, cameras=CAMS[:1], chunk_topic="/chunk", chunk_horizon=8, seed=14)
    write_bag(tmp_path / "bag", spec)
    _swap_two_messages(tmp_path / "bag", tmp_path / "swapped", "/chunk", 3)
    mapping = mapping_from_dict(mapping_dict(spec))
    passes = []
    for name, single in (("one", True), ("two", False)):
        opts = ConvertOptions(progress=False, single_pass=single)
        passes.append(convert([tmp_path / "swapped"], mapping, tmp_path / name, opts).report["bags"][0]["video_pass"])
    assert passes[0] == "second (/chunk: chunks arrive out of issue order)"
    _assert_same_dataset(tmp_path / "one", tmp_path / "two")
