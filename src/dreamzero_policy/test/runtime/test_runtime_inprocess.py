"""In-process backend with the REAL tiny model, ``dreamzero serve`` around it, and the
PolicyRuntime facade end to end (buffers -> worker -> backend -> ChunkData)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from dreamzero_policy.backends.inprocess import InProcessBackend
from dreamzero_policy.backends.serve import PolicyServer
from dreamzero_policy.backends.websocket import WebsocketBackend
from dreamzero_policy.core.errors import BackendError, IoSpecError
from dreamzero_policy.runtime import BufferLimits, PolicyRuntime, load_io_spec
from openpi_client.websocket_client_policy import WebsocketClientPolicy

SPEC = load_io_spec("droid_sim")
NS = 1_000_000_000
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["gripper"]


@pytest.fixture(scope="module")
def backend() -> InProcessBackend:
    return InProcessBackend.from_preset(SPEC, "tiny", seed=0)


def request(session: str, frames: int = 1) -> dict:
    rng = np.random.default_rng(1)
    req = {c.request_key: rng.integers(0, 255, (frames, 180, 320, 3), dtype=np.uint8) for c in SPEC.cameras}
    req.update(
        {
            "observation/joint_position": np.full(7, 0.3, np.float32),
            "observation/gripper_position": np.array([0.5], np.float32),
            "prompt": "pick",
            "session_id": session,
        }
    )
    return req


def test_inprocess_actions_are_absolute(backend: InProcessBackend) -> None:
    out = backend.infer(request("a"))
    a = out["actions"]
    assert out["first_call"] is True
    assert a.shape == (backend.pipeline.action_horizon, 8) and a.dtype == np.float32 and np.all(np.isfinite(a))
    assert np.all((a[:, 7] >= 0) & (a[:, 7] <= 1))  # gripper convention 0..1
    assert backend.infer(request("a", frames=4))["first_call"] is False
    assert backend.infer(request("b", frames=4))["first_call"] is True  # new session id -> model reset
    # same inputs in a fresh session with the same seed reproduce the first chunk
    np.testing.assert_allclose(backend.infer(request("c"))["actions"], a, rtol=1e-5, atol=1e-6)
    meta = backend.metadata()
    assert meta["backend"] == "inprocess" and meta["model_image_size"] == tuple(backend.pipeline.image_size)
    with pytest.raises(BackendError, match="prompt"):
        backend.infer({**request("b"), "prompt": " "})


def test_inprocess_needs_stats(backend: InProcessBackend) -> None:
    with pytest.raises(IoSpecError, match="normalization"):
        InProcessBackend(load_io_spec("droid"), backend.pipeline)


def test_serve_tiny_with_openpi_client_and_our_backend(backend: InProcessBackend) -> None:
    srv = PolicyServer(backend, [c.request_key for c in SPEC.cameras], port=0).start()
    try:
        client = WebsocketClientPolicy(host="127.0.0.1", port=srv.port)
        assert client.get_server_metadata()["model_id"] == "preset:tiny"
        obs = request("x")
        del obs["session_id"]  # stock openpi clients send none
        out = client.infer(obs)
        assert out["actions"].shape == (backend.pipeline.action_horizon, 8)
        with pytest.raises(RuntimeError, match="bad request"):
            client.infer({k: v for k, v in obs.items() if "wrist" not in k})
        ws = WebsocketBackend("127.0.0.1", srv.port, action_dim=8)
        assert ws.infer(request("y"))["actions"].shape[1] == 8
        ws.close()
    finally:
        srv.stop()


def image_msg(value: int) -> SimpleNamespace:
    h, w = 48, 64
    return SimpleNamespace(
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=np.full((h, w, 3), value, np.uint8).tobytes(),
    )


def test_policy_runtime_end_to_end(backend: InProcessBackend) -> None:
    rt = PolicyRuntime(SPEC, backend, limits=BufferLimits(max_age_s=0.5), timeout_s=30.0)
    try:
        t = 100.0

        def feed(n: int) -> None:
            nonlocal t
            for _ in range(n):
                t += 1 / 15
                for cam in SPEC.cameras:
                    assert rt.add_image(cam.name, round(t * NS), image_msg(int(t * 10) % 255)) is None
                assert rt.add_joint_state(round(t * NS), JOINTS, [0.1] * 8) is None

        feed(5)
        assert rt.tick(round(t * NS)).reason == "no_instruction"
        sid = rt.set_instruction("pick the cube")
        feed(10)
        assert rt.tick(round(t * NS)).submitted
        chunks = []
        deadline = time.monotonic() + 60
        while len(chunks) < 3 and time.monotonic() < deadline:
            feed(1)
            rt.tick(round(t * NS))
            chunks += [e.chunk for e in rt.poll() if e.kind == "chunk"]
            time.sleep(0.01)
        assert [c.chunk_id for c in chunks] == [0, 1, 2]
        assert all(c.session_id == sid for c in chunks)
        assert chunks[0].stamp_ns <= chunks[1].stamp_ns and chunks[0].names == SPEC.action_names
        assert chunks[0].data.shape == (chunks[0].horizon, 8)
        # bad input is rejected and counted, not raised
        assert "missing joints" in rt.add_joint_state(round(t * NS), JOINTS[:3], [0.0] * 3)
        assert rt.rejected_inputs == 1
        deadline = time.monotonic() + 60
        while rt.worker.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        rt.poll()
        # stale inputs: no frames for a while -> reason, counted
        assert rt.tick(round((t + 2.0) * NS)).reason == "stale" and rt.stale_inputs >= 1
        # time going backwards starts a new session
        rt.add_image("wrist", round(1.0 * NS), image_msg(1))
        rt.tick(round(1.0 * NS))
        assert rt.session.session_id != sid
    finally:
        assert rt.close(timeout_s=30.0)
