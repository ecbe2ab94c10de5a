"""Fixtures for the policy node tests: real rclpy test peers around a real PolicyNode.

* ``sensors``: a peer node publishing the droid_sim cameras (rgb8) and /joint_states at 15 Hz from
  a timer; its attributes switch on the bad inputs (encoding, truncated data, NaN, missing joint,
  silent camera, stamps going back).
* ``collector``: a peer node recording ActionChunk, PolicyStatus, DiagnosticArray, ObservationStamp
  and JointTrajectory messages.
* ``replay_bag``: a real rosbag2 (MCAP) with droid_sim-shaped ActionChunks for the replay backend.
* ``make_policy``: builds a PolicyNode in the harness's context with parameter overrides and an
  optional backend factory (test backends implement the PolicyBackend protocol).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DROID_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
DROID_CAMERAS = {
    "exterior_1": "/sim/exterior_1/image_raw",
    "exterior_2": "/sim/exterior_2/image_raw",
    "wrist": "/sim/wrist/image_raw",
}
ACTION_DIM = 8
HORIZON = 24


class SensorPeer:
    """Publishes synthetic cameras + joint states at ``rate_hz`` (see module docstring)."""

    def __init__(
        self, ros: Any, rate_hz: float = 15.0, width: int = 64, height: int = 48, cameras: dict[str, str] | None = None
    ) -> None:
        from dreamzero_policy.nodes import qos
        from sensor_msgs.msg import Image, JointState

        self.node = ros.node("test_sensor_peer")
        self.width, self.height = width, height
        self.cameras = dict(cameras or DROID_CAMERAS)
        self.cam_pubs = {
            name: self.node.create_publisher(Image, topic, qos.image_qos) for name, topic in self.cameras.items()
        }
        self.js_pub = self.node.create_publisher(JointState, "/joint_states", qos.joint_state_qos)
        self.lock = threading.Lock()
        self.encoding: dict[str, str] = {}  # camera -> encoding override
        self.truncate: set[str] = set()  # cameras sending too few data bytes
        self.silent: set[str] = set()  # cameras not publishing
        self.joint_names = [*DROID_JOINTS, "gripper", "some_other_joint"]
        self.joint_value: float | None = 0.1  # None -> NaN in panda_joint3
        self.stamp_offset_ns = 0  # added to every stamp (negative = back in time)
        self.published: list[int] = []  # stamps of published joint states
        self.enabled = True
        self.node.create_timer(1.0 / rate_hz, self._tick)

    def _tick(self) -> None:
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Header

        with self.lock:
            if not self.enabled:
                return
            ns = self.node.get_clock().now().nanoseconds + self.stamp_offset_ns
            header = Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9))
            for name, pub in self.cam_pubs.items():
                if name in self.silent:
                    continue
                enc = self.encoding.get(name, "rgb8")
                step = self.width * 3
                data = bytes(np.full(self.height * step, 90 + 40 * len(self.published) % 120, np.uint8))
                if name in self.truncate:
                    data = data[: len(data) // 2]
                pub.publish(
                    Image(
                        header=header,
                        height=self.height,
                        width=self.width,
                        encoding=enc,
                        is_bigendian=0,
                        step=step,
                        data=data,
                    )
                )
            q = [0.1 * (i + 1) for i in range(len(self.joint_names))]
            if self.joint_value is None:
                q[2] = math.nan
            self.js_pub.publish(JointState(header=header, name=list(self.joint_names), position=q))
            self.published.append(ns)


class Collector:
    """Records what the policy node publishes."""

    def __init__(self, ros: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from dreamzero_policy.nodes import qos
        from trajectory_msgs.msg import JointTrajectory

        from dreamzero_msgs.msg import ActionChunk, ObservationStamp, PolicyStatus

        self.node = ros.node("test_collector")
        self.chunks: list[Any] = []
        self.status: list[Any] = []
        self.diagnostics: list[Any] = []
        self.observations: list[Any] = []
        self.trajectories: list[Any] = []
        self.node.create_subscription(ActionChunk, "/dreamzero/action_chunk", self.chunks.append, qos.chunk_qos)
        self.node.create_subscription(PolicyStatus, "/dreamzero/status", self.status.append, qos.status_qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, qos.status_qos)
        self.node.create_subscription(
            ObservationStamp, "/dreamzero/observation_used", self.observations.append, qos.status_qos
        )
        self.node.create_subscription(
            JointTrajectory, "/dreamzero_policy/joint_trajectory", self.trajectories.append, qos.chunk_qos
        )

    def clear(self) -> None:
        for lst in (self.chunks, self.status, self.diagnostics, self.observations, self.trajectories):
            lst.clear()

    def status_since(self, t_mono: float) -> list[Any]:
        return list(self.status)

    def any_status(self, pred: Callable[[Any], bool]) -> bool:
        return any(pred(s) for s in list(self.status))


class ScriptedBackend:
    """A PolicyBackend for node tests: constant absolute actions after ``delay_s``; ``fail`` makes
    ``infer`` raise BackendError; counts calls and session ids seen."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.fail = False
        self.calls = 0
        self.sessions: list[str] = []
        self.resets = 0
        self.closed = False

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        from dreamzero_policy.core.errors import BackendError

        self.calls += 1
        self.sessions.append(obs["session_id"])
        time.sleep(self.delay_s)
        if self.fail:
            raise BackendError("test backend failure")
        return {"actions": np.tile(np.linspace(0.0, 0.7, ACTION_DIM, dtype=np.float32), (HORIZON, 1))}

    def reset(self) -> None:
        self.resets += 1

    def metadata(self) -> dict[str, Any]:
        return {"backend": "test", "model_id": "test-backend"}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def sensors(ros: Any) -> Callable[..., SensorPeer]:
    return lambda **kw: SensorPeer(ros, **kw)


@pytest.fixture
def collector(ros: Any) -> Collector:
    return Collector(ros)


@pytest.fixture(scope="session")
def replay_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dreamzero_policy.data.synth import SynthSpec, write_bag

    path = tmp_path_factory.mktemp("replay") / "chunks"
    write_bag(
        path,
        SynthSpec(
            duration_s=2.0,
            cameras=(),
            joint_topic=None,
            joints=tuple(DROID_JOINTS),
            gripper_joint="gripper",
            chunk_topic="/dreamzero/action_chunk",
            chunk_rate=5.0,
            chunk_horizon=HORIZON,
        ),
    )
    return path


@pytest.fixture
def make_policy(ros: Any) -> Callable[..., Any]:
    from dreamzero_policy.nodes.policy_node import PolicyNode
    from rclpy.parameter import Parameter

    def make(test_backend: ScriptedBackend | None = None, name: str = "dreamzero_policy", **params: Any) -> PolicyNode:
        base = {
            "sync.max_age_s": 0.5,
            "sync.max_skew_s": 0.1,
            "query_period_s": 0.02,
            "status_period_s": 0.1,
            "backend_retry_s": 0.2,
        }
        base.update({k.replace("__", "."): v for k, v in params.items()})
        overrides = [Parameter(k, value=v) for k, v in base.items()]
        factory = (lambda p, spec: test_backend) if test_backend is not None else None
        node = PolicyNode(name, backend_factory=factory, context=ros.context, parameter_overrides=overrides)
        return ros.add(node)

    return make


@pytest.fixture
def scripted_backend() -> type[ScriptedBackend]:
    return ScriptedBackend
