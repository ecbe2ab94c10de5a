"""ROS-free policy runtime: observations in, time-stamped action chunks out (no rclpy here).

The node uses one object, :class:`PolicyRuntime` (``runtime/policy_runtime.py``)::

    from dreamzero_policy.runtime import PolicyRuntime, BufferLimits, load_io_spec
    from dreamzero_policy.backends import create_backend

    spec = load_io_spec("droid_sim")                      # config/embodiments/droid_sim.yaml
    backend = create_backend("inprocess", spec, preset="tiny")   # or "websocket"/"replay"
    rt = PolicyRuntime(spec, backend, limits=BufferLimits(max_age_s=0.2, max_skew_s=0.05),
                       timeout_s=10.0)

    # callbacks (cheap, never decode; return an error string when the input was rejected):
    rt.add_image(camera_name, stamp_ns, msg)              # Image or CompressedImage message
    rt.add_joint_state(stamp_ns, msg.name, msg.position)
    rt.set_instruction(text, reset_session=False)         # IoSpecError if empty; returns session id
    rt.clear_instruction()                                # no instruction: no inference (robot holds)
    rt.reset()                                            # new session + cleared buffers
    # timer (never blocks):
    outcome = rt.tick(now_ns)      # TickOutcome(submitted, reason, message, new_session)
    if outcome.new_session: note(outcome.new_session)     # why the tick restarted the session (time jump)
    for ev in rt.poll():           # RuntimeEvent(kind=chunk|discarded|bad_input|error|timeout, ...)
        if ev.kind == "chunk": publish(ev.chunk)          # ChunkData: every ActionChunk field
    rt.close()

Counters for ``PolicyStatus``: ``rt.worker.stats.dropped`` (dropped observations),
``rt.stale_inputs``, ``rt.rejected_inputs``, ``rt.latency_stats()``, ``rt.session.session_id``,
``rt.session.last_chunk_id``, ``rt.session.chunks_published``, ``rt.last_problem``,
``rt.session_reason`` (why the current session started), ``rt.instruction`` ("" = none).
Image payloads are decoded on the worker; a frame that fails to decode comes back as a
``bad_input`` event (counted in ``rejected_inputs``; the session goes on). Callers can reject
malformed headers early with ``dreamzero_policy.core.images.check_image(msg)``.
Camera names are ``spec.cameras[i].name`` (topics in ``.topic``; ``.compressed`` says the type).

Modules: ``io_spec`` (YAML spec), ``buffers`` (frame rings, joint history, skew/staleness, time
jumps), ``observation`` (resize/mosaic/state), ``session`` (ids, chunk counter, frame rules),
``worker`` (single inference thread, bounded queue), ``postprocess`` (normalisation, relative ->
absolute, gripper, ``ChunkData``), ``policy_runtime`` (the facade above).
"""

from __future__ import annotations

from dreamzero_policy.runtime.buffers import BufferLimits, ObservationBuffers, Snapshot
from dreamzero_policy.runtime.io_spec import CameraSpec, IoSpec, NormStats, load_io_spec, parse_io_spec
from dreamzero_policy.runtime.policy_runtime import PolicyRuntime, RuntimeEvent, TickOutcome
from dreamzero_policy.runtime.postprocess import ChunkData, make_chunk
from dreamzero_policy.runtime.session import CallPlan, Session
from dreamzero_policy.runtime.worker import InferenceWorker, WorkResult

__all__ = [
    "BufferLimits",
    "CallPlan",
    "CameraSpec",
    "ChunkData",
    "InferenceWorker",
    "IoSpec",
    "NormStats",
    "ObservationBuffers",
    "PolicyRuntime",
    "RuntimeEvent",
    "Session",
    "Snapshot",
    "TickOutcome",
    "WorkResult",
    "load_io_spec",
    "make_chunk",
    "parse_io_spec",
]
