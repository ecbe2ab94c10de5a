"""Replay backend (synthetic MCAP bag via rosbags), ``dreamzero serve`` with the real openpi client,
and our websocket backend against our server: handshake, infer, reset, error frames, timeouts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import websockets.sync.server
from dreamzero_policy.backends.replay import ReplayBackend, read_action_chunks
from dreamzero_policy.backends.serve import PolicyServer
from dreamzero_policy.backends.websocket import WebsocketBackend
from dreamzero_policy.core.errors import BackendConnectionError, BackendError, BackendTimeoutError
from dreamzero_policy.runtime.io_spec import load_io_spec
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy

SPEC = load_io_spec("droid_sim")
MSG_DIR = Path(__file__).resolve().parents[3] / "dreamzero_msgs" / "msg"
CHUNK_TYPE = "dreamzero_msgs/msg/ActionChunk"
# Recorded column order differs from the spec's: the backend must reorder by name.
BAG_NAMES = ["gripper", *[f"panda_joint{i}" for i in range(7, 0, -1)]]


def write_chunk_bag(path: Path, n: int = 3, horizon: int = 24, pad: bytes = b"") -> list[np.ndarray]:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    ts.register(get_types_from_msg((MSG_DIR / "ActionChunk.msg").read_text(), CHUNK_TYPE))
    T = ts.types
    datas = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/dreamzero/action_chunk", CHUNK_TYPE, typestore=ts)
        other = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        writer.write(other, 1, ts.serialize_cdr(T["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
        for i in range(n):
            data = np.random.default_rng(i).normal(size=(horizon, 8))
            datas.append(data)
            stamp = T["builtin_interfaces/msg/Time"](sec=100 + i, nanosec=5)
            msg = T[CHUNK_TYPE](
                header=T["std_msgs/msg/Header"](stamp=stamp, frame_id=""),
                session_id="rec",
                chunk_id=i,
                embodiment="droid_franka_sim",
                action_space=0,
                step_duration=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=66_666_667),
                horizon=horizon,
                execute_horizon=8,
                names=BAG_NAMES,
                data=data.reshape(-1),
                inference_started=stamp,
                inference_latency=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=0),
            )
            writer.write(conn, (100 + i) * 10**9, bytes(ts.serialize_cdr(msg, CHUNK_TYPE)) + pad)
    return datas


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("bags") / "chunks"
    return path, write_chunk_bag(path)


def expected(data: np.ndarray) -> np.ndarray:
    """Spec column order (panda_joint1..7, gripper) from the recorded order."""
    return data[:, [BAG_NAMES.index(n) for n in SPEC.action_names]].astype(np.float32)


def request(session: str = "s1") -> dict:
    req = {c.request_key: np.zeros((1, 180, 320, 3), np.uint8) for c in SPEC.cameras}
    req.update(
        {
            "observation/joint_position": np.zeros(7, np.float32),
            "observation/gripper_position": np.zeros(1, np.float32),
            "prompt": "pick",
            "session_id": session,
        }
    )
    return req


def test_replay_reads_bag_and_reorders(bag) -> None:
    path, datas = bag
    chunks = read_action_chunks(path)
    assert [c["chunk_id"] for c in chunks] == [0, 1, 2] and chunks[1]["stamp_ns"] == 101 * 10**9 + 5
    rb = ReplayBackend(SPEC, path)
    outs = [rb.infer({})["actions"] for _ in range(3)]
    for out, data in zip(outs, datas, strict=True):
        np.testing.assert_allclose(out, expected(data), rtol=1e-6)
    with pytest.raises(BackendError, match="played"):
        rb.infer({})
    rb.reset()
    np.testing.assert_allclose(rb.infer({})["actions"], expected(datas[0]), rtol=1e-6)
    looping = ReplayBackend(SPEC, path, loop=True)
    assert len([looping.infer({}) for _ in range(5)]) == 5 and looping.metadata()["action_horizon"] == 24


def test_replay_reads_chunks_padded_past_their_data(tmp_path) -> None:
    # rclpy's serialize_message (bags written with rosbag2_py) can leave bytes past a message's
    # data; ROS reads such messages, rosbags' own check rejects them, the replay reads them.
    datas = write_chunk_bag(tmp_path / "padded", pad=bytes(8))
    chunks = read_action_chunks(tmp_path / "padded")
    assert [c["chunk_id"] for c in chunks] == [0, 1, 2]
    for chunk, data in zip(chunks, datas, strict=True):
        np.testing.assert_array_equal(chunk["data"], data)


def test_replay_resets_on_session_change(bag) -> None:
    # Official server semantics (as the in-process backend): a new session_id starts the recording over.
    path, datas = bag
    rb = ReplayBackend(SPEC, path)
    a0 = rb.infer(request("s1"))["actions"]
    a1 = rb.infer(request("s1"))["actions"]
    np.testing.assert_allclose(a0, expected(datas[0]), rtol=1e-6)
    np.testing.assert_allclose(a1, expected(datas[1]), rtol=1e-6)
    out = rb.infer(request("s2"))
    assert out["replay_index"] == 0
    np.testing.assert_allclose(out["actions"], expected(datas[0]), rtol=1e-6)
    assert rb.infer(request("s2"))["replay_index"] == 1
    # Going back to an earlier id is a change too; an explicit reset restarts the same session.
    assert rb.infer(request("s1"))["replay_index"] == 0
    rb.reset()
    assert rb.infer(request("s1"))["replay_index"] == 0


def test_replay_errors(bag, tmp_path) -> None:
    path, _ = bag
    with pytest.raises(BackendError, match="no topic"):
        ReplayBackend(SPEC, path, topic="/nope")
    with pytest.raises(BackendError, match="expected dreamzero_msgs"):
        ReplayBackend(SPEC, path, topic="/chatter")
    with pytest.raises(BackendError, match="not found"):
        ReplayBackend(SPEC, tmp_path / "missing")
    droid = load_io_spec("droid")  # needs columns the recording lacks? same names -> ok; break one:
    import dataclasses

    with pytest.raises(BackendError, match="lacks action columns"):
        ReplayBackend(dataclasses.replace(droid, action_names=("elbow", *droid.action_names[1:])), path)


@pytest.fixture
def server(bag):
    srv = PolicyServer(
        ReplayBackend(SPEC, bag[0], loop=True), [c.request_key for c in SPEC.cameras], host="127.0.0.1", port=0
    ).start()
    yield srv, bag[1]
    srv.stop()


def test_openpi_client_against_serve(server) -> None:
    srv, datas = server
    client = WebsocketClientPolicy(host="127.0.0.1", port=srv.port)
    meta = client.get_server_metadata()
    assert meta["needs_wrist_camera"] is True and meta["n_external_cameras"] == 2
    assert meta["action_space"] == "joint_position" and meta["needs_session_id"] is True
    assert meta["backend"] == "replay" and meta["action_dim"] == 8
    out = client.infer(request())
    assert out["actions"].shape == (24, 8) and out["actions"].dtype == np.float32
    np.testing.assert_allclose(out["actions"], expected(datas[0]), rtol=1e-6)
    # an unknown endpoint is a bad request: error text frame, connection stays usable
    with pytest.raises(RuntimeError, match="unknown endpoint"):
        client.infer({"endpoint": "teleport"})
    np.testing.assert_allclose(client.infer(request())["actions"], expected(datas[1]), rtol=1e-6)


def test_array_response_format_and_reset(bag) -> None:
    srv = PolicyServer(
        ReplayBackend(SPEC, bag[0]), [c.request_key for c in SPEC.cameras], port=0, response_format="array"
    ).start()
    try:
        client = WebsocketClientPolicy(host="127.0.0.1", port=srv.port)
        arr = client.infer(request())
        assert isinstance(arr, np.ndarray) and arr.shape == (24, 8)  # official DreamZero shape
        ours = WebsocketBackend("127.0.0.1", srv.port, action_dim=8)
        np.testing.assert_allclose(ours.infer(request())["actions"], expected(bag[1][1]), rtol=1e-6)
        ours.reset()  # "reset successful" text frame; the replay restarts
        np.testing.assert_allclose(ours.infer(request())["actions"], expected(bag[1][0]), rtol=1e-6)
        ours.close()
    finally:
        srv.stop()


def test_websocket_backend_server_error_frame_and_reconnect(bag) -> None:
    srv = PolicyServer(ReplayBackend(SPEC, bag[0]), [c.request_key for c in SPEC.cameras], port=0).start()
    try:
        ws = WebsocketBackend("127.0.0.1", srv.port, action_dim=8)
        assert ws.metadata()["backend"] == "websocket" and ws.server_metadata["backend"] == "replay"
        for _ in range(3):
            ws.infer(request())
        with pytest.raises(BackendError, match="played"):  # backend failure: error frame + close 1011
            ws.infer(request())
        ws.reset()  # reconnects by itself, bounded
        assert ws.infer(request())["actions"].shape == (24, 8)
        ws.close()
    finally:
        srv.stop()


def test_websocket_backend_action_dim_mismatch(server) -> None:
    srv, _ = server
    ws = WebsocketBackend("127.0.0.1", srv.port, action_dim=7)
    with pytest.raises(BackendError, match="shape"):
        ws.infer(request())
    ws.close()


def test_websocket_backend_timeout_and_unreachable() -> None:
    release = threading.Event()

    def silent(conn) -> None:
        conn.send(msgpack_numpy.packb({"action_space": "joint_position"}))
        conn.recv()
        release.wait(5)  # never answers in time

    with websockets.sync.server.serve(silent, "127.0.0.1", 0) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        port = srv.socket.getsockname()[1]
        ws = WebsocketBackend("127.0.0.1", port, infer_timeout_s=0.3)
        t0 = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            ws.infer(request())
        assert time.monotonic() - t0 < 2.0
        release.set()
        ws.close()
        srv.shutdown()
    t0 = time.monotonic()
    with pytest.raises(BackendConnectionError, match="2 attempts"):
        WebsocketBackend("127.0.0.1", port, connect_timeout_s=0.5, max_connect_attempts=2, backoff_s=0.05)
    assert time.monotonic() - t0 < 3.0
