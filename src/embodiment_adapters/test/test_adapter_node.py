"""Real rclpy tests of the adapter node with a controller-like peer (run: scripts/run_tests.sh <this dir>).

The peer publishes /joint_states at 100 Hz and records JointTrajectory / gripper commands like a controller.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from embodiment_adapters.nodes.adapter_node import AdapterNode
from embodiment_adapters.nodes.converters import sec_to_duration, time_to_sec
from embodiment_adapters.profile import load_profile
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from dreamzero_msgs.msg import ActionChunk

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


class ControllerPeer:
    """Publishes joint states of a static arm; records what a controller would receive."""

    def __init__(self, ros, robot: str) -> None:
        self.profile = load_profile(robot)
        self.node = ros.node("controller_peer")
        self.lock = threading.Lock()
        self.trajectories: list[tuple[float, JointTrajectory]] = []
        self.grippers: list[Float64MultiArray] = []
        self.statuses: list[DiagnosticStatus] = []
        self.publish_states = True
        ctrl = self.profile.controllers[0]
        self.node.create_subscription(JointTrajectory, ctrl.topic, self._on_traj, 10)
        for g in self.profile.grippers:
            if g.topic:
                self.node.create_subscription(Float64MultiArray, g.topic, self.grippers.append, 10)
        self.node.create_subscription(DiagnosticStatus, "/adapter_node/status", self.statuses.append, 10)
        self.js_pub = self.node.create_publisher(JointState, "/joint_states", 10)
        self.chunk_pub = self.node.create_publisher(ActionChunk, "/dreamzero/action_chunk", 10)
        self.estop_pub = self.node.create_publisher(Bool, "/adapter_node/e_stop", 10)
        self.enable_cli = self.node.create_client(SetBool, "/adapter_node/enable")
        self.reset_cli = self.node.create_client(Trigger, "/adapter_node/reset_e_stop")
        self.node.create_timer(0.01, self._tick)

    def _on_traj(self, msg: JointTrajectory) -> None:
        with self.lock:
            self.trajectories.append((time.monotonic(), msg))

    def _tick(self) -> None:
        if self.publish_states:
            msg = JointState(name=list(self.profile.joint_names), position=HOME.tolist())
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.js_pub.publish(msg)

    def chunk(self, chunk_id: int, data: np.ndarray, session: str = "s1", names=None) -> ActionChunk:
        names = list(names or [*self.profile.joint_names, "gripper"])
        msg = ActionChunk(session_id=session, chunk_id=chunk_id, embodiment="droid_franka", action_space=0)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.step_duration = sec_to_duration(1 / 15)
        msg.horizon, msg.execute_horizon = data.shape[0], 8
        msg.names = names
        msg.data = data.ravel().tolist()
        self.chunk_pub.publish(msg)
        return msg

    def call(self, client, request, ros):
        ros.wait_for(client.service_is_ready, 5.0, "adapter service")
        future = client.call_async(request)
        ros.wait_for(future.done, 5.0, "service response")
        return future.result()

    def count(self) -> int:
        with self.lock:
            return len(self.trajectories)


def motion(steps: int = 24, amplitude: float = 0.2) -> np.ndarray:
    arm = HOME + np.linspace(0.0, amplitude, steps)[:, None]
    return np.hstack([arm, np.full((steps, 1), 0.8)])


def start(ros, robot: str, **overrides) -> tuple[AdapterNode, ControllerPeer]:
    params = [Parameter("robot", value=robot), *(Parameter(k, value=v) for k, v in overrides.items())]
    # its own single-threaded executor, exactly as `adapter_node` runs it
    adapter = ros.add_isolated(AdapterNode(context=ros.context, parameter_overrides=params))
    peer = ControllerPeer(ros, robot)
    ros.wait_for(lambda: adapter.core.measured is not None, 5.0, "adapter to receive joint states")
    ros.wait_for(lambda: peer.chunk_pub.get_subscription_count() > 0, 5.0, "chunk subscription")
    # the controller side must be matched too, or the first trajectory is published to nobody
    traj_topic = peer.profile.controllers[0].topic
    ros.wait_for(lambda: peer.node.count_publishers(traj_topic) > 0, 5.0, "trajectory publisher discovery")
    ros.wait_for(lambda: peer.estop_pub.get_subscription_count() > 0, 5.0, "e-stop subscription")
    ros.wait_for(lambda: peer.node.count_publishers("/adapter_node/status") > 0, 5.0, "status publisher")
    return adapter, peer


def assert_trajectory_within_limits(traj: JointTrajectory, profile) -> None:
    lower, upper, vmax, _ = profile.limits_arrays()
    assert time_to_sec(traj.header.stamp) == 0.0  # "start now"
    assert traj.joint_names == list(profile.controllers[0].joints)
    times = np.array([time_to_sec(p.time_from_start) for p in traj.points])
    assert times[0] > 0 and np.all(np.diff(times) > 0)
    pos = np.array([p.positions for p in traj.points])
    vel = np.array([p.velocities for p in traj.points])
    assert np.all(pos >= lower - 1e-9) and np.all(pos <= upper + 1e-9)
    assert np.all(np.abs(vel) <= vmax + 1e-9)
    assert np.allclose(vel[-1], 0.0)


def test_disabled_by_default_then_enable_executes(ros):
    adapter, peer = start(ros, "droid_franka")  # a real robot profile: starts disabled
    assert not adapter.enabled
    peer.chunk(0, motion())
    time.sleep(0.5)
    assert peer.count() == 0
    assert "disabled" in adapter.reason
    assert peer.call(peer.enable_cli, SetBool.Request(data=True), ros).success
    peer.chunk(1, motion())
    ros.wait_for(lambda: peer.count() >= 1, 5.0, "trajectory after enable")
    assert_trajectory_within_limits(peer.trajectories[0][1], peer.profile)


def test_simulated_profile_publishes_trajectory_and_gripper(ros):
    adapter, peer = start(ros, "droid_franka_sim")
    assert adapter.enabled
    peer.chunk(0, motion())
    ros.wait_for(lambda: peer.count() >= 1 and len(peer.grippers) >= 1, 5.0, "trajectory + gripper")
    assert_trajectory_within_limits(peer.trajectories[0][1], peer.profile)
    assert peer.grippers[0].data[0] == pytest.approx(0.8)
    peer.chunk(1, motion(amplitude=0.21))  # same gripper value: not re-sent
    ros.wait_for(lambda: peer.count() >= 2, 5.0, "second trajectory")
    time.sleep(0.2)
    assert len(peer.grippers) == 1


def test_estop_latches_until_reset(ros):
    adapter, peer = start(ros, "droid_franka_sim")
    peer.estop_pub.publish(Bool(data=True))
    ros.wait_for(lambda: adapter.estopped, 5.0, "e-stop latch")
    peer.estop_pub.publish(Bool(data=False))  # releasing the button does not unlatch
    time.sleep(0.2)
    peer.chunk(0, motion())
    time.sleep(0.5)
    assert peer.count() == 0 and adapter.estopped and "e-stop" in adapter.reason
    assert not peer.call(peer.enable_cli, SetBool.Request(data=True), ros).success
    assert peer.call(peer.reset_cli, Trigger.Request(), ros).success
    peer.chunk(1, motion())
    ros.wait_for(lambda: peer.count() >= 1, 5.0, "trajectory after reset (simulated robot re-enables)")


def test_bad_chunks_rejected_with_reason(ros):
    adapter, peer = start(ros, "droid_franka_sim")
    bad = motion()
    bad[3, 2] = float("nan")
    peer.chunk(0, bad)
    ros.wait_for(lambda: "non-finite" in adapter.reason, 5.0, "non-finite rejection")
    peer.chunk(1, motion(), names=[*peer.profile.joint_names[:-1], "elbow_joint", "gripper"])
    ros.wait_for(lambda: "unknown column" in adapter.reason, 5.0, "unknown-name rejection")
    peer.chunk(2, np.zeros((0, 8)))
    ros.wait_for(lambda: "horizon is zero" in adapter.reason, 5.0, "zero-horizon rejection")
    ros.wait_for(lambda: any("rejected" in s.message for s in peer.statuses), 5.0, "status with reason")
    assert peer.count() == 0 and adapter.counts["rejected"] == 3


def test_watchdog_holds_when_joint_states_stop(ros):
    timeout = 0.2
    adapter, peer = start(ros, "droid_franka_sim", joint_state_timeout=timeout, lookahead=3.0)
    peer.chunk(0, motion(steps=40, amplitude=0.5))
    ros.wait_for(lambda: peer.count() >= 1, 5.0, "first trajectory")
    stopped = time.monotonic()
    peer.publish_states = False
    ros.wait_for(lambda: peer.count() >= 2, 5.0, "hold trajectory")
    reaction = peer.trajectories[1][0] - stopped
    hold = peer.trajectories[1][1]
    assert reaction < timeout + 0.3, f"watchdog reacted after {reaction:.3f} s"
    assert len(hold.points) == 1 and np.allclose(hold.points[0].velocities, 0.0)
    assert "joint_states stale" in adapter.reason
    peer.chunk(1, motion())
    time.sleep(0.3)
    assert peer.count() == 2  # chunks refused while joint states are stale


def test_degree_profiles_convert_on_the_wire():
    from embodiment_adapters.nodes.converters import joint_state_to_si, plan_to_trajectories, wire_scale
    from embodiment_adapters.safety.planner import AdapterCore
    from embodiment_adapters.safety.types import ChunkInput

    p = load_profile("so101")
    scale = wire_scale(p)
    assert scale == pytest.approx(np.full(5, 180.0 / np.pi))
    names, q = joint_state_to_si(JointState(name=list(p.joint_names), position=[10.0] * 5), p, scale)
    assert q == pytest.approx(np.radians(np.full(5, 10.0)))
    core = AdapterCore(p)
    core.update_joint_state(names, q, 100.0)
    data = np.tile(q + 0.05, (10, 1))
    plan = core.process_chunk(ChunkInput("s", 0, "so101", 0, 100.0, 1 / 30, 10, 10, p.joint_names, data), 100.0)
    ((_, traj),) = plan_to_trajectories(plan, p, scale)
    assert traj.points[-1].positions == pytest.approx(np.degrees(q + 0.05).tolist())
