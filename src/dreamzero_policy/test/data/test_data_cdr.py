"""The JointState CDR parser (cdr.py) reads what rclpy writes exactly as rosbags does, or declines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from dreamzero_policy.data import index as index_module
from dreamzero_policy.data.bagio import make_typestore
from dreamzero_policy.data.cdr import JointStateParser, joint_state_layout_is_standard
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.mapping import mapping_from_dict
from dreamzero_policy.data.reader import DatasetReader
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import Writer
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from sensor_msgs.msg import JointState
from std_msgs.msg import Header

JS = "sensor_msgs/msg/JointState"
ROSBAGS = get_typestore(Stores.ROS2_JAZZY)

# Every alignment case: frame_id lengths 0..8, empty and non-empty sequences in every position,
# names of every length mod 4, no names at all, non-ASCII names.
CASES = [
    ("", ["a"], [1.5], [], []),
    ("b", ["ab", "abc"], [1.0, -2.0], [0.5, 0.25], [3.0, 4.0]),
    ("ba", ["j1", "joint_2", "wrist"], [], [0.1, 0.2, 0.3], []),
    ("bas", ["x" * 7, "y" * 8, "z" * 9, "w"], [0.0, 1e300, -1e-300, np.pi], [], [1.0, 2.0, 3.0, 4.0]),
    ("base", [], [], [], []),
    ("base_", ["gripper"], [np.nan], [np.inf], [-np.inf]),
    ("base_li", ["épaule", "coude"], [1.0, 2.0], [3.0, 4.0], []),
    ("base_lin", ["a", "b", "c", "d", "e", "f", "g", "h"], list(np.arange(8.0)), [], list(np.arange(8.0))),
]


def _rclpy_bytes(frame_id: str, names: list[str], pos: list[float], vel: list[float], eff: list[float]) -> bytes:
    msg = JointState(
        header=Header(stamp=Time(sec=1_700_000_123, nanosec=987_654_321), frame_id=frame_id),
        name=names,
        position=pos,
        velocity=vel,
        effort=eff,
    )
    return serialize_message(msg)


def _rosbags_bytes(frame_id: str, names: list[str], pos: list[float], vel: list[float], eff: list[float]) -> bytes:
    T = ROSBAGS.types
    msg = T[JS](
        header=T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=1_700_000_123, nanosec=987_654_321), frame_id=frame_id
        ),
        name=names,
        position=np.array(pos, np.float64),
        velocity=np.array(vel, np.float64),
        effort=np.array(eff, np.float64),
    )
    return bytes(ROSBAGS.serialize_cdr(msg, JS))


@pytest.mark.parametrize("case", CASES, ids=[c[0] or "empty" for c in CASES])
def test_cdr_joint_state_reads_rclpy_and_rosbags_bytes(case: tuple) -> None:
    # rclpy's bytes (what a ROS 2 node publishes) may end in a few bytes of padding that rosbags'
    # strict size check rejects; the values are compared with what was put in.
    _frame_id, names, *values = case
    got = JointStateParser().parse(_rclpy_bytes(*case))
    assert got is not None
    assert got.stamp_ns == 1_700_000_123_987_654_321
    assert got.names == names
    for field, want in zip(("position", "velocity", "effort"), values, strict=True):
        np.testing.assert_array_equal(getattr(got, field), np.array(want, np.float64), err_msg=field)
        assert getattr(got, field).dtype == np.float64
    # rosbags' own bytes of the same message: both readers agree
    raw = _rosbags_bytes(*case)
    want_msg = ROSBAGS.deserialize_cdr(raw, JS)
    got = JointStateParser().parse(raw)
    assert got is not None and got.names == list(want_msg.name)
    assert got.stamp_ns == want_msg.header.stamp.sec * 10**9 + want_msg.header.stamp.nanosec
    for field in ("position", "velocity", "effort"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want_msg, field), err_msg=field)


def test_cdr_parser_reuses_the_name_list_until_it_changes() -> None:
    parser = JointStateParser()
    a = parser.parse(_rclpy_bytes("", ["j1", "j2"], [1.0, 2.0], [], []))
    b = parser.parse(_rclpy_bytes("other", ["j1", "j2"], [3.0, 4.0], [], []))
    c = parser.parse(_rclpy_bytes("", ["j2", "j1"], [5.0, 6.0], [], []))
    assert a is not None and b is not None and c is not None
    assert b.names is a.names  # unchanged names: one comparison, no decoding
    assert c.names == ["j2", "j1"] and c.names is not a.names
    np.testing.assert_array_equal(c.position, [5.0, 6.0])


def test_cdr_parser_declines_what_it_does_not_handle() -> None:
    parser = JointStateParser()
    raw = _rosbags_bytes("base", ["j1", "j2"], [1.0, 2.0], [0.5, 0.5], [])
    assert parser.parse(raw) is not None
    big_endian = bytes(ROSBAGS.serialize_cdr(ROSBAGS.deserialize_cdr(raw, JS), JS, little_endian=False))
    assert big_endian[1] == 0 and parser.parse(big_endian) is None
    assert ROSBAGS.deserialize_cdr(big_endian, JS).name == ["j1", "j2"]  # rosbags still reads it
    for cut in range(len(raw)):  # every truncation
        assert parser.parse(raw[:cut]) is None, cut
    bad_utf8 = raw.replace(b"j2\x00", b"\xff2\x00")
    assert JointStateParser().parse(bad_utf8) is None
    with pytest.raises(SerdeError, match="utf-8"):  # the fallback reports it
        ROSBAGS.deserialize_cdr(bad_utf8, JS)


def test_cdr_layout_check_accepts_ros_definitions_only() -> None:
    assert joint_state_layout_is_standard(make_typestore())
    assert joint_state_layout_is_standard(get_typestore(Stores.ROS2_HUMBLE))
    custom = get_typestore(Stores.EMPTY)
    custom.register(get_types_from_msg("float64[] position\nstring[] name", JS))
    assert not joint_state_layout_is_standard(custom)
    assert not joint_state_layout_is_standard(object())


def _write_mixed_bag(path: Path) -> None:
    """JointStates, every third big-endian, the name order changing mid-bag."""
    ts = make_typestore()
    t0 = 1_700_000_000 * 10**9
    with Writer(path, version=9) as w:
        js = w.add_connection("/joint_states", JS, typestore=ts)
        cam = w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts)
        img_t = ts.types["sensor_msgs/msg/Image"]
        for k in range(201):
            t = t0 + k * 10_000_000
            names = ["j1", "j2", "gripper"] if k < 100 else ["gripper", "j2", "j1", "extra"]
            q = [np.sin(0.01 * k + i) for i in range(len(names))]
            hdr = ts.types["std_msgs/msg/Header"](
                stamp=ts.types["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9), frame_id="base"
            )
            state = ts.types[JS](
                header=hdr, name=names, position=np.array(q), velocity=np.full(len(names), 0.1 * k), effort=np.zeros(0)
            )
            w.write(js, t, ts.serialize_cdr(state, JS, little_endian=k % 3 != 0))
            if k % 7 == 0:
                img = np.full((8, 8, 3), k % 250, np.uint8)
                msg = img_t(header=hdr, height=8, width=8, encoding="rgb8", is_bigendian=0, step=24, data=img.ravel())
                w.write(cam, t, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))


def test_cdr_conversion_equals_the_rosbags_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_mixed_bag(tmp_path / "bag")
    mapping = mapping_from_dict(
        {
            "name": "mixed",
            "fps": 10,
            "align_tolerance_s": 0.1,
            "video": {"cam": {"topic": "/cam/image"}},
            "state": {
                "arm": {"topic": "/joint_states", "names": ["j1", "j2"]},
                "arm_velocity": {"topic": "/joint_states", "names": ["j2", "j1"], "field": "velocity"},
                "gripper_position": {"topic": "/joint_states", "names": ["gripper"]},
            },
            "action": {"arm": {"next_state": "arm"}},
            "instruction": {"text": "mixed"},
        }
    )
    outs = {}
    for path_name, standard in (("parser", True), ("rosbags", False)):
        monkeypatch.setattr(index_module, "joint_state_layout_is_standard", lambda _types, s=standard: s)
        for single in (True, False):
            out = tmp_path / f"{path_name}-{single}"
            convert([tmp_path / "bag"], mapping, out, ConvertOptions(progress=False, single_pass=single))
            outs[(path_name, single)] = out
    for single in (True, False):
        a, b = DatasetReader(outs[("parser", single)]), DatasetReader(outs[("rosbags", single)])
        ea, eb = a.episode(0), b.episode(0)
        assert len(ea.columns["frame_index"]) >= 15
        for col in ea.columns:
            np.testing.assert_array_equal(np.asarray(ea.columns[col]), np.asarray(eb.columns[col]), err_msg=col)
        report = json.loads((outs[("parser", single)] / "meta" / "conversion_report.json").read_text())
        rosbags_report = json.loads((outs[("rosbags", single)] / "meta" / "conversion_report.json").read_text())
        assert report["episodes"] == rosbags_report["episodes"]
    # the values really come from both name orders and both byte orders
    state = np.asarray(DatasetReader(outs[("parser", True)]).episode(0).columns["observation.state"])
    assert np.isfinite(state).all() and len(np.unique(state[:, 0])) >= 15


def test_cdr_parser_never_raises_and_agrees_with_rosbags_on_damaged_bytes() -> None:
    # Random byte flips, insertions and cuts of valid messages: the parser either declines (None)
    # or returns what rosbags reads from the same bytes; it never raises. rosbags rejects some
    # buffers the parser accepts (bytes left over at the end), so agreement is checked where
    # rosbags reads them.
    rng = np.random.default_rng(7)
    originals = [_rosbags_bytes(*case) for case in CASES]
    agreed = declined = 0
    for _ in range(3000):
        raw = bytearray(originals[rng.integers(len(originals))])
        kind = rng.integers(3)
        if kind == 0:
            for at in rng.integers(len(raw), size=rng.integers(1, 4)):
                raw[at] = rng.integers(256)
        elif kind == 1:
            at = rng.integers(len(raw))
            raw[at:at] = rng.integers(0, 256, rng.integers(1, 9), dtype=np.uint8).tobytes()
        else:
            del raw[rng.integers(len(raw)) :]
        got = JointStateParser().parse(bytes(raw))
        if got is None:
            declined += 1
            continue
        try:
            want = ROSBAGS.deserialize_cdr(bytes(raw), JS)
        except SerdeError:
            continue
        assert got.names == list(want.name)
        assert got.stamp_ns == want.header.stamp.sec * 10**9 + want.header.stamp.nanosec
        for field in ("position", "velocity", "effort"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        agreed += 1
    assert agreed > 300 and declined > 300  # both outcomes really occurred


def _write_rclpy_bag(path: Path) -> list[np.ndarray]:
    """A bag whose payloads are rclpy's own bytes, as a rosbag2_py script writes them."""
    from sensor_msgs.msg import Image

    ts = make_typestore()
    t0 = 1_700_000_000 * 10**9
    positions = []
    with Writer(path, version=9) as w:
        js = w.add_connection("/joint_states", JS, typestore=ts)
        cam = w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts)
        for k in range(121):
            t = t0 + k * 10_000_000
            stamp = Time(sec=t // 10**9, nanosec=t % 10**9)
            q = [np.sin(0.02 * k), np.cos(0.02 * k)]
            positions.append(np.array(q))
            w.write(js, t, serialize_message(JointState(header=Header(stamp=stamp), name=["j1", "j2"], position=q)))
            if k % 5 == 0:
                img = Image(header=Header(stamp=stamp), height=4, width=4, encoding="rgb8", step=12)
                img.data = bytes([k % 250]) * 48
                w.write(cam, t, serialize_message(img))
    return positions


def test_rclpy_serialized_bag_converts_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # rclpy pads some messages past their data; rosbags alone rejects them ("size mismatch"),
    # ROS reads them, and so must the converter, with or without the JointState parser.
    positions = _write_rclpy_bag(tmp_path / "bag")
    raw = serialize_message(JointState(name=["j1", "j2"], position=[1.0, 2.0]))
    with pytest.raises(SerdeError, match="size mismatch"):
        ROSBAGS.deserialize_cdr(raw, JS)
    mapping = mapping_from_dict(
        {
            "name": "rclpy",
            "fps": 20,
            "align_tolerance_s": 0.05,
            "video": {"cam": {"topic": "/cam/image"}},
            "state": {"arm": {"topic": "/joint_states", "names": ["j1", "j2"]}},
            "action": {"arm": {"next_state": "arm"}},
            "instruction": {"text": "rclpy"},
        }
    )
    columns = {}
    for path_name, standard in (("parser", True), ("rosbags", False)):
        monkeypatch.setattr(index_module, "joint_state_layout_is_standard", lambda _types, s=standard: s)
        res = convert([tmp_path / "bag"], mapping, tmp_path / path_name, ConvertOptions(progress=False))
        assert res.exit_code == 0
        columns[path_name] = DatasetReader(tmp_path / path_name).episode(0).columns
    state = np.asarray(columns["parser"]["observation.state"])
    np.testing.assert_array_equal(state, np.asarray(columns["rosbags"]["observation.state"]))
    assert len(state) >= 20
    np.testing.assert_array_equal(state[0], positions[0])  # the grid starts on the first joint sample


def test_bag_deserialize_reads_padded_bytes_and_still_rejects_short_ones(tmp_path: Path) -> None:
    from dreamzero_policy.core.errors import BagReadError
    from dreamzero_policy.data.bagio import Bag

    _write_rclpy_bag(tmp_path / "bag")
    raw = serialize_message(JointState(name=["j1", "j2"], position=[1.0, 2.0], velocity=[3.0, 4.0]))
    with Bag(tmp_path / "bag", make_typestore()) as bag:
        msg = bag.deserialize(raw, JS)
        assert list(msg.name) == ["j1", "j2"]
        np.testing.assert_array_equal(msg.velocity, [3.0, 4.0])
        with pytest.raises(BagReadError, match="cannot deserialise a sensor_msgs/msg/JointState"):
            bag.deserialize(raw[:30], JS)
