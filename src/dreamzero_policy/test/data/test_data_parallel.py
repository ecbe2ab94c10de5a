"""``convert --jobs N``: bags converted in worker processes and joined equal a sequential conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.core.errors import AlignmentError, BagReadError, MappingError
from dreamzero_policy.data.convert import EXIT_PARTIAL, ConvertOptions, ConvertResult, convert
from dreamzero_policy.data.mapping import Mapping, mapping_from_dict
from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.data.synth import Camera, SynthSpec, mapping_dict, write_bag

CAMS = (Camera("/cam0/image", "rgb8"), Camera("/cam1/image", "jpeg", phase_s=0.02))
META = ("info.json", "modality.json", "stats.json", "relative_stats_dreamzero.json", "tasks.jsonl", "episodes.jsonl")


def _assert_same_dataset(a: Path, b: Path) -> None:
    """Same episodes, columns, decoded videos and meta files; the reports differ only in timings and jobs."""
    da, db = DatasetReader(a), DatasetReader(b)
    assert len(da) == len(db) >= 2
    for i in range(len(da)):
        ca, cb = da.episode(i).columns, db.episode(i).columns
        assert list(ca) == list(cb)
        for name in ca:
            np.testing.assert_array_equal(ca[name], cb[name], err_msg=f"episode {i} {name}")
        for key in da.video_keys:
            np.testing.assert_array_equal(da.video(i, key), db.video(i, key), err_msg=f"episode {i} {key}")
    for name in META:
        assert (a / "meta" / name).read_text() == (b / "meta" / name).read_text(), name
    ra, rb = da.report, db.report
    assert rb["jobs"] > 1 and "jobs" not in ra
    for key in ("bags", "episodes", "skipped_episodes", "status"):
        assert json.dumps(ra[key], sort_keys=True) == json.dumps(rb[key], sort_keys=True), key


def _bags(tmp_path: Path, specs: list[SynthSpec], storage: str = "mcap") -> list[Path]:
    paths = []
    for i, spec in enumerate(specs):
        write_bag(tmp_path / f"bag{i}", spec, storage)
        paths.append(tmp_path / f"bag{i}")
    return paths


def _both(bags: list[Path], mapping: Mapping, tmp_path: Path, **opts: object) -> tuple[ConvertResult, ConvertResult]:
    seq = convert(bags, mapping, tmp_path / "seq", ConvertOptions(progress=False, **opts))  # type: ignore[arg-type]
    par = convert(bags, mapping, tmp_path / "par", ConvertOptions(progress=False, jobs=3, **opts))  # type: ignore[arg-type]
    return seq, par


def test_parallel_one_episode_bags_equal_the_sequential_conversion(tmp_path: Path) -> None:
    # Bags of different lengths, one without the chunk topic (a video-only episode in the middle).
    specs = [SynthSpec(duration_s=1.0 + 0.3 * i, cameras=CAMS, chunk_topic="/chunk", seed=i) for i in range(4)]
    specs[2] = SynthSpec(duration_s=1.2, cameras=CAMS, seed=9)
    bags = _bags(tmp_path, specs)
    seq, par = _both(bags, mapping_from_dict(mapping_dict(specs[0])), tmp_path)
    assert (seq.episodes, seq.frames) == (par.episodes, par.frames) == (4, seq.frames)
    _assert_same_dataset(tmp_path / "seq", tmp_path / "par")
    assert DatasetReader(tmp_path / "par").info["video_only_episodes"] == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag0", "bag1", "bag2", "bag3", "par", "seq"]  # no scratch


def test_parallel_renumbers_episodes_and_tasks_across_bags(tmp_path: Path) -> None:
    # Several episodes per bag, instructions shared and not shared between bags (sqlite3: the two-pass path).
    texts = [("pick", "place"), ("place", "stack"), ("wipe", "pick")]
    specs = [
        SynthSpec(duration_s=2.0, gripper_joint=None, instructions=((0.0, a), (1.0, b), (1.7, "idle")), seed=i)
        for i, (a, b) in enumerate(texts)
    ]
    bags = _bags(tmp_path, specs, "sqlite3")
    mapping = mapping_from_dict(
        mapping_dict(specs[0], episodes={"split": "instruction_topic", "topic": "/instruction"}, instruction={})
    )
    _, par = _both(bags, mapping, tmp_path)
    assert par.episodes == 6
    _assert_same_dataset(tmp_path / "seq", tmp_path / "par")
    ds = DatasetReader(tmp_path / "par")
    assert ds.tasks == {0: "pick", 1: "place", 2: "stack", 3: "wipe"}
    assert [e["tasks"][0] for e in ds.episodes] == ["pick", "place", "place", "stack", "wipe", "pick"]
    assert [e["source_bag"] for e in ds.episodes] == [str(b) for b in bags for _ in range(2)]
    index = np.concatenate([ds.episode(i).columns["index"] for i in range(len(ds))])
    np.testing.assert_array_equal(index, np.arange(ds.info["total_frames"]))  # global frame index runs on


def test_parallel_a_bad_bag_fails_the_run_by_name_and_publishes_nothing(tmp_path: Path) -> None:
    bags = _bags(tmp_path, [SynthSpec(duration_s=1.0, seed=i) for i in range(3)])
    data = next(bags[1].glob("*.mcap"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    mapping = mapping_from_dict(mapping_dict(SynthSpec()))
    with pytest.raises(BagReadError, match=str(bags[1])):
        convert(bags, mapping, tmp_path / "ds", ConvertOptions(progress=False, jobs=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag0", "bag1", "bag2"]  # no dataset, no staging


def test_parallel_skipped_episodes_are_collected_from_every_worker(tmp_path: Path) -> None:
    good = SynthSpec(duration_s=1.0, cameras=(Camera("/cam0/image"),), gripper_joint=None)
    bad = SynthSpec(
        duration_s=1.0, cameras=(Camera("/cam0/image"),), gripper_joint=None, drop={"/cam0/image": frozenset({7})}
    )
    bags = _bags(tmp_path, [good, bad, good])
    mapping = mapping_from_dict(mapping_dict(good))
    with pytest.raises(AlignmentError, match="beyond"):  # without the flag, the bad bag fails the run
        convert(bags, mapping, tmp_path / "ds", ConvertOptions(progress=False, jobs=3))
    seq, par = _both(bags, mapping, tmp_path, skip_bad_episodes=True)
    assert par.exit_code == EXIT_PARTIAL and par.episodes == 2
    assert [s["bag"] for s in par.skipped] == [str(bags[1])] and par.skipped == seq.skipped
    _assert_same_dataset(tmp_path / "seq", tmp_path / "par")
    with pytest.raises(AlignmentError, match="no episode could be converted; skipped"):
        convert(
            [bags[1], bags[1]],
            mapping,
            tmp_path / "none",
            ConvertOptions(progress=False, skip_bad_episodes=True, jobs=2),
        )


def test_parallel_options_are_checked_and_shared_out(tmp_path: Path) -> None:
    bags = _bags(tmp_path, [SynthSpec(duration_s=1.0, seed=i) for i in range(2)])
    mapping = mapping_from_dict(mapping_dict(SynthSpec()))
    with pytest.raises(MappingError, match="jobs must be >= 1"):
        convert(bags, mapping, tmp_path / "ds", ConvertOptions(progress=False, jobs=0))
    result = convert(bags, mapping, tmp_path / "ds", ConvertOptions(progress=False, jobs=8, cores=12))
    assert result.report["jobs"] == 2  # never more workers than bags
    assert result.report["cores_per_job"] == 6 and result.report["encoder_threads_per_camera"] == 5
    from dreamzero_policy.data.encode import decode_pool

    assert decode_pool(3, cores=4) is None  # the reader and 3 camera threads take every core
    pool = decode_pool(3, cores=8)
    assert pool is not None
    pool.shutdown()


def test_parallel_ctrl_c_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C in the parent while workers run: they finish or stop, and neither the dataset nor the
    # staging tree (with the workers' one-bag datasets in it) remains.
    from dreamzero_policy.data import parallel

    bags = _bags(tmp_path, [SynthSpec(duration_s=1.0, seed=i) for i in range(3)])
    real = parallel._results_in_order

    def interrupted(futures: list) -> list:
        real(futures[:1])  # one part is complete on disk
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel, "_results_in_order", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(
            bags, mapping_from_dict(mapping_dict(SynthSpec())), tmp_path / "ds", ConvertOptions(progress=False, jobs=2)
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag0", "bag1", "bag2"]
