"""sim_robot_node over real ROS: joint states follow a JointTrajectory, images arrive, reset works.

Run with ``scripts/run_tests.sh src/dreamzero_sim/test`` (loopback-only network namespace).
"""

from __future__ import annotations

import threading

import numpy as np
from builtin_interfaces.msg import Duration
from dreamzero_sim.sim_core import ARM_JOINT_NAMES, CAMERA_NAMES, JOINT_NAMES
from dreamzero_sim.sim_robot_node import SimRobotNode
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

W, H = 64, 48


class Peer:
    """Test peer: records joint states, images and camera infos the node publishes."""

    def __init__(self, node) -> None:
        self.node = node
        self.lock = threading.Lock()
        self.joint_states: list[JointState] = []
        self.images: dict[str, list[Image]] = {c: [] for c in CAMERA_NAMES}
        self.infos: dict[str, list[CameraInfo]] = {c: [] for c in CAMERA_NAMES}
        node.create_subscription(JointState, "/joint_states", self._keep(self.joint_states), 10)
        for cam in CAMERA_NAMES:
            sensor = qos_profile_sensor_data
            node.create_subscription(Image, f"/sim/{cam}/image_raw", self._keep(self.images[cam]), sensor)
            node.create_subscription(CameraInfo, f"/sim/{cam}/camera_info", self._keep(self.infos[cam]), sensor)
        self.traj_pub = node.create_publisher(JointTrajectory, "/arm_controller/joint_trajectory", 10)
        self.grip_pub = node.create_publisher(Float64MultiArray, "/gripper_controller/commands", 10)
        self.reset = node.create_client(Trigger, "/sim_robot_node/reset")

    def _keep(self, store: list):
        def cb(msg) -> None:
            with self.lock:
                store.append(msg)

        return cb

    def latest_position(self) -> np.ndarray | None:
        with self.lock:
            if not self.joint_states:
                return None
            msg = self.joint_states[-1]
        return np.array([msg.position[list(msg.name).index(n)] for n in JOINT_NAMES])


def _trajectory(names, positions, seconds: float) -> JointTrajectory:
    point = JointTrajectoryPoint(
        positions=list(positions),
        time_from_start=Duration(sec=int(seconds), nanosec=int((seconds % 1) * 1e9)),
    )
    return JointTrajectory(joint_names=list(names), points=[point])  # header.stamp 0: start now


def test_node_follows_trajectories_publishes_images_and_resets(ros):
    sim_node = ros.add(
        SimRobotNode(
            context=ros.context,
            parameter_overrides=[
                Parameter("image_width", value=W),
                Parameter("image_height", value=H),
                Parameter("camera_rate_hz", value=10.0),
                Parameter("joint_state_rate_hz", value=50.0),
            ],
        )
    )
    peer = Peer(ros.node("sim_test_peer"))
    home = sim_node.sim.home_positions
    ros.wait_for(lambda: peer.latest_position() is not None, what="/joint_states")
    with peer.lock:
        first = peer.joint_states[-1]
    assert list(first.name) == list(JOINT_NAMES)
    assert len(first.position) == len(first.velocity) == len(first.effort) == 8
    np.testing.assert_allclose(peer.latest_position(), home, atol=1e-2)

    # Images of the configured size from all three cameras, with matching camera_info.
    ros.wait_for(lambda: all(peer.images[c] and peer.infos[c] for c in CAMERA_NAMES), what="images")
    for cam in CAMERA_NAMES:
        img = peer.images[cam][-1]
        assert (img.width, img.height, img.encoding, img.step) == (W, H, "rgb8", 3 * W)
        assert img.header.frame_id == f"{cam}_optical_frame"
        pixels = np.frombuffer(bytes(img.data), np.uint8).reshape(H, W, 3)
        assert pixels.std() > 10.0
        assert peer.infos[cam][-1].k[0] > 0.0

    # A stamp-0 trajectory (in shuffled joint order) and a gripper command are followed.
    goal = home[:7] + np.array([0.3, -0.2, 0.2, 0.3, -0.3, 0.2, -0.4])
    order = list(reversed(ARM_JOINT_NAMES))
    peer.traj_pub.publish(_trajectory(order, [goal[ARM_JOINT_NAMES.index(n)] for n in order], 0.8))
    peer.grip_pub.publish(Float64MultiArray(data=[1.0]))

    def reached() -> bool:
        pos = peer.latest_position()
        return pos is not None and np.abs(pos[:7] - goal).max() < 0.01 and pos[7] > 0.9

    ros.wait_for(reached, timeout=10.0, what="the arm to reach the goal and the gripper to close")

    # Malformed commands are rejected and the arm holds where it is.
    rejected = sim_node.rejected_commands
    peer.traj_pub.publish(_trajectory([*ARM_JOINT_NAMES[:6], "elbow"], [0.0] * 7, 0.5))
    peer.grip_pub.publish(Float64MultiArray(data=[0.5, 0.5]))
    ros.wait_for(lambda: sim_node.rejected_commands == rejected + 2, what="two rejections")
    ros.wait_for(lambda: np.abs(peer.latest_position()[:7] - goal).max() < 0.01, what="holding the goal")

    # ~/reset brings the arm home and opens the gripper.
    assert peer.reset.wait_for_service(timeout_sec=5.0)
    future = peer.reset.call_async(Trigger.Request())
    ros.wait_for(future.done, what="the reset response")
    assert future.result().success
    ros.wait_for(lambda: np.abs(peer.latest_position() - home).max() < 0.02, what="the home pose after reset")
