"""Corrupt, truncated and incomplete bags: a clear error naming the file, nothing written, exit code 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from dreamzero_policy.cli import main
from dreamzero_policy.core.errors import BagReadError, MappingError
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.mapping import mapping_from_dict
from dreamzero_policy.data.synth import SynthSpec, mapping_dict, write_bag

SPEC = SynthSpec(duration_s=1.0, gripper_joint=None)


def _bag(tmp_path: Path, storage: str) -> tuple[Path, Path]:
    bag = tmp_path / f"bag_{storage}"
    write_bag(bag, SPEC, storage)
    return bag, next(bag.glob("*.mcap" if storage == "mcap" else "*.db3"))


def _convert(bag: Path, out: Path) -> None:
    convert([bag], mapping_from_dict(mapping_dict(SPEC)), out, ConvertOptions(progress=False))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("keep", [0.3, 0.97])
def test_data_corrupt_truncated_bag_names_the_file(tmp_path: Path, storage: str, keep: float) -> None:
    bag, data = _bag(tmp_path, storage)
    raw = data.read_bytes()
    data.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(BagReadError, match=str(bag)):
        _convert(bag, tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == [bag.name]  # no dataset, no staging leftovers


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_data_corrupt_garbage_in_the_middle(tmp_path: Path, storage: str) -> None:
    bag, data = _bag(tmp_path, storage)
    raw = bytearray(data.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 4096] = bytes((i * 7919) % 251 for i in range(4096))
    data.write_bytes(bytes(raw))
    with pytest.raises(BagReadError, match=str(bag)):
        _convert(bag, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_data_corrupt_missing_messages_are_detected_by_count(tmp_path: Path) -> None:
    """A bag whose index promises more messages than its storage holds is not a short, valid bag."""
    bag, db = _bag(tmp_path, "sqlite3")
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM messages WHERE id % 7 = 0")
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    assert meta["rosbag2_bagfile_information"]["message_count"] > 0
    with pytest.raises(BagReadError, match=r"truncated or damaged.*read/indexed"):
        _convert(bag, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_data_corrupt_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag, data = _bag(tmp_path, "mcap")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping_dict(SPEC)))
    data.write_bytes(data.read_bytes()[:1000])
    argv = [
        "data",
        "convert",
        str(bag),
        "--mapping",
        str(tmp_path / "m.yaml"),
        "-o",
        str(tmp_path / "ds"),
        "--no-progress",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and str(bag) in err and not (tmp_path / "ds").exists()
    # Mapping problems are usage errors (exit 2) with a pointer to the fix.
    bad = mapping_dict(SPEC)
    bad["vidoe"] = bad.pop("video")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    argv[4] = str(tmp_path / "bad.yaml")
    assert main(argv) == 2
    assert "did you mean 'video'" in capsys.readouterr().err
    assert main(["data", "convert", str(tmp_path / "nope"), "-m", str(tmp_path / "m.yaml"), "-o", "x"]) == 2
    # An output that cannot be written: a clear error and exit code 1, not a traceback.
    good, _ = _bag(tmp_path / "good", "mcap")
    (tmp_path / "a_file").write_text("x")
    argv = ["data", "convert", str(good), "-m", str(tmp_path / "m.yaml"), "-o", str(tmp_path / "a_file" / "ds")]
    assert main([*argv, "--no-progress"]) == 1
    assert "FAILED, nothing written: [Errno 20] Not a directory" in capsys.readouterr().err


def test_data_corrupt_mapping_topic_not_in_bag(tmp_path: Path) -> None:
    bag, _ = _bag(tmp_path, "mcap")
    m = mapping_dict(SPEC)
    m["video"] = {"view0": {"topic": "/wrong/topic"}}
    with pytest.raises(MappingError, match=r"/wrong/topic is not in the bag \(topics: .*/cam/image_raw"):
        convert([bag], mapping_from_dict(m), tmp_path / "ds", ConvertOptions(progress=False))
    m = mapping_dict(SPEC)
    m["state"]["joint_position"]["names"] = ["j1", "elbow"]
    with pytest.raises(MappingError, match=r"joints \['elbow'\] not in /joint_states"):
        convert([bag], mapping_from_dict(m), tmp_path / "ds", ConvertOptions(progress=False))
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_data_bag_without_metadata_is_read_from_its_single_file(tmp_path: Path, storage: str) -> None:
    # ros2 bag record writes metadata.yaml when it stops: an interrupted recording has none, but its
    # single storage file still holds the topics, types and counts.
    from dreamzero_policy.data.reader import DatasetReader

    bag, _ = _bag(tmp_path, storage)
    _convert(bag, tmp_path / "with")
    (bag / "metadata.yaml").unlink()
    _convert(bag, tmp_path / "without")
    a, b = DatasetReader(tmp_path / "with").episode(0), DatasetReader(tmp_path / "without").episode(0)
    assert a.columns.keys() == b.columns.keys() and len(a.columns["frame_index"]) > 5
    for col in a.columns:
        assert (a.columns[col] == b.columns[col]).all(), col


def test_data_split_bag_without_metadata_says_how_to_rebuild_it(tmp_path: Path) -> None:
    bag, data = _bag(tmp_path, "mcap")
    (bag / "metadata.yaml").unlink()
    raw = data.read_bytes()
    data.unlink()
    for k in range(2):  # rosbag2's own names for the files of a split recording
        (bag / f"{bag.name}_{k}.mcap").write_bytes(raw)
    with pytest.raises(BagReadError, match=rf"{bag}: no metadata.yaml .*ros2 bag reindex {bag}"):
        _convert(bag, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
