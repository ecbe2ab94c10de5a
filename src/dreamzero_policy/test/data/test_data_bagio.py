"""Single-file MCAP bags are streamed with the mcap library, in exactly rosbags' order, with its checks."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.core.errors import BagReadError
from dreamzero_policy.data.bagio import Bag, make_typestore
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.mapping import mapping_from_dict
from dreamzero_policy.data.synth import SynthSpec, mapping_dict, write_bag
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

TOPICS = ("/a", "/b", "/c")


def _write(path: Path, times: list[tuple[str, int]], payload: int, storage: str = "mcap", zstd: bool = False) -> None:
    """std_msgs/String messages whose text names the write order, padded to ``payload`` bytes."""
    ts = make_typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(path, version=9, storage_plugin=plugin)
    if zstd:  # compressed MCAP chunks, as the zstd_fast preset and our recorder write them
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer as w:
        conns = {t: w.add_connection(t, "std_msgs/msg/String", typestore=ts) for t in TOPICS}
        for i, (topic, t) in enumerate(times):
            msg = ts.types["std_msgs/msg/String"](data=f"{i:06d}".ljust(payload, "x"))
            w.write(conns[topic], t, ts.serialize_cdr(msg, "std_msgs/msg/String"))


def _jittered(n: int, seed: int) -> list[tuple[str, int]]:
    """Log times that go backwards within and across chunks, with ties across topics and chunks."""
    rng = np.random.default_rng(seed)
    base = np.arange(n) * 1_000_000 + rng.integers(-6, 7, n) * 1_000_000  # +-6 ms on a 1 ms clock
    base[n // 2 : n // 2 + 5] = base[n // 2]  # ties
    return [(TOPICS[int(k)], 10**12 + int(t)) for k, t in zip(rng.integers(0, 3, n), base, strict=True)]


def _rosbags_order(path: Path, topics: tuple[str, ...]) -> list[tuple[str, int, bytes]]:
    with AnyReader([path], default_typestore=make_typestore()) as r:
        conns = [c for c in r.connections if c.topic in topics]
        return [(c.topic, t, bytes(raw)) for c, t, raw in r.messages(connections=conns)]


@pytest.mark.parametrize("zstd", [False, True])
@pytest.mark.parametrize("topics", [TOPICS, ("/b",), ("/a", "/c")])
def test_streamed_mcap_reads_exactly_what_rosbags_reads(tmp_path: Path, topics: tuple[str, ...], zstd: bool) -> None:
    written = _jittered(400, 1)
    _write(tmp_path / "bag", written, payload=60_000, zstd=zstd)  # ~17 messages per 1 MiB chunk: 24 chunks
    with Bag(tmp_path / "bag") as bag:
        assert bag.streamed
        got = [(c.topic, t, bytes(raw)) for c, t, raw in bag.read(topics)]
        for topic, t, raw in got:  # each payload comes with its own topic and log time
            assert written[int(bag.deserialize(raw, "std_msgs/msg/String").data[:6])] == (topic, t)
    assert sorted(int(t) for topic, t in written if topic in topics) == sorted(t for _, t, _ in got)
    expected = _rosbags_order(tmp_path / "bag", topics)
    assert len(expected) == len(got) > 0
    assert got == expected
    times = [t for _, t, _ in got]
    assert times == sorted(times)


def test_chunks_out_of_time_order_are_left_to_rosbags(tmp_path: Path) -> None:
    # 600 kB messages: two per chunk. The second chunk holds a message older than all of the first
    # chunk's, so releasing the first chunk before reading the second would break the order.
    t0 = 10**12
    written = [("/a", t0 + 100), ("/b", t0 + 101), ("/a", t0 + 50), ("/c", t0 + 102), ("/b", t0 + 103)]
    _write(tmp_path / "bag", written, payload=600_000)
    with Bag(tmp_path / "bag") as bag:
        assert not bag.streamed
        got = [(c.topic, t, bytes(raw)) for c, t, raw in bag.read(TOPICS)]
    assert [t for _, t, _ in got] == sorted(t for _, t in written)
    assert got == _rosbags_order(tmp_path / "bag", TOPICS)


def test_sqlite_bags_are_still_read_by_rosbags(tmp_path: Path) -> None:
    _write(tmp_path / "bag", _jittered(50, 2), payload=100, storage="sqlite3")
    with Bag(tmp_path / "bag") as bag:
        assert not bag.streamed
        got = [(c.topic, t, bytes(raw)) for c, t, raw in bag.read(TOPICS)]
    assert got == _rosbags_order(tmp_path / "bag", TOPICS)


def _first_chunk(data: bytes) -> int:
    """Offset of the first Chunk record (opcode 0x06) after the 8-byte magic."""
    pos = 8
    while data[pos] != 0x06:
        pos += 9 + struct.unpack_from("<Q", data, pos + 1)[0]
    return pos


def test_streamed_mcap_checks_chunk_crcs(tmp_path: Path) -> None:
    # rosbags writes no chunk CRC; rosbag2's recorder does. Give the first chunk a CRC, check that
    # the bag still reads, then damage one payload byte and expect an error that names the bag.
    _write(tmp_path / "bag", [("/a", 10**12 + k * 10**6) for k in range(40)], payload=100_000)
    mcap = next((tmp_path / "bag").glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    pos = _first_chunk(bytes(data))
    body = pos + 9  # opcode + record length
    size = struct.unpack_from("<Q", data, body + 16)[0]  # start, end, uncompressed size, crc
    comp_len = struct.unpack_from("<I", data, body + 28)[0]  # compression string length (empty)
    records = body + 28 + 4 + comp_len + 8
    struct.pack_into("<I", data, body + 24, zlib.crc32(bytes(data[records : records + size])))
    mcap.write_bytes(bytes(data))
    with Bag(tmp_path / "bag") as bag:
        assert sum(1 for _ in bag.read(["/a"])) == 40
    data[records + size // 2] ^= 0xFF
    mcap.write_bytes(bytes(data))
    with Bag(tmp_path / "bag") as bag, pytest.raises(BagReadError, match=str(tmp_path / "bag")):
        for _ in bag.read(["/a"]):
            pass


def test_conversion_report_names_the_reader(tmp_path: Path) -> None:
    spec = SynthSpec(duration_s=1.0, gripper_joint=None)
    for storage in ("mcap", "sqlite3"):
        write_bag(tmp_path / storage, spec, storage)
    res = convert(
        [tmp_path / "mcap", tmp_path / "sqlite3"],
        mapping_from_dict(mapping_dict(spec)),
        tmp_path / "ds",
        ConvertOptions(progress=False),
    )
    assert [b["reader"] for b in res.report["bags"]] == ["mcap (streamed)", "rosbags"]
    assert res.episodes == 2


def test_mcap_written_by_the_mcap_library_streams_like_rosbags_reads_it(tmp_path: Path) -> None:
    # The reference writer (as rosbag2's C++ storage plugin) puts schemas and channels inside the
    # chunks and writes chunk CRCs; here zstd chunks of ~200 kB, jittered log times, a bare .mcap file.
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter

    ts = make_typestore()
    path = tmp_path / "x.mcap"
    rng = np.random.default_rng(3)
    with path.open("wb") as f:
        w = McapWriter(f, chunk_size=200_000, compression=CompressionType.ZSTD)
        w.start(profile="ros2", library="test")
        schema = w.register_schema(name="std_msgs/msg/String", encoding="ros2msg", data=b"string data")
        channels = {t: w.register_channel(topic=t, message_encoding="cdr", schema_id=schema) for t in TOPICS}
        for i in range(500):
            t = 10**12 + (i + int(rng.integers(-3, 4))) * 10**6
            msg = ts.types["std_msgs/msg/String"](data=f"{i:06d}".ljust(5000, "x"))
            data = bytes(ts.serialize_cdr(msg, "std_msgs/msg/String"))
            w.add_message(channel_id=channels[TOPICS[i % 3]], log_time=t, publish_time=t, data=data)
        w.finish()
    with Bag(path) as bag:
        assert bag.streamed
        got = [(c.topic, t, bytes(raw)) for c, t, raw in bag.read(TOPICS)]
    assert len(got) == 500
    assert got == _rosbags_order(path, TOPICS)
