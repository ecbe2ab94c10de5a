"""ROS 2 node around :mod:`dreamzero_sim.sim_core`: a simulated robot with real-controller topics.

Publishes ``/joint_states`` (8 joints), ``/sim/<camera>/image_raw`` (rgb8, sensor-data QoS) and
``/sim/<camera>/camera_info`` for ``exterior_1``, ``exterior_2``, ``wrist``, and optionally
``/clock``. Subscribes ``/arm_controller/joint_trajectory`` (joint_trajectory_controller time
semantics) and ``/gripper_controller/commands`` (one value, 0 = open .. 1 = closed). Service
``~/reset`` (std_srvs/Trigger). These names are a contract with the ``droid_franka_sim`` adapter
profile and the ``droid_sim`` embodiment spec.

Threads: physics and joint states run in an executor timer on the steady clock; rendering runs on
its own thread at the camera rate in sim time (MuJoCo releases the GIL while drawing) so slow frames
never delay joint states. ``self._lock`` serialises every touch of the ``SimRobot``.

Sim time: with ``publish_clock`` the node is the clock source of the graph and may itself run with
``use_sim_time:=true`` (its pacing never waits on ``/clock``); ``realtime_factor`` < 1 runs the
world slower than the wall clock, so that a slow policy (a CPU model) fits its chunks' horizon in
sim time. Every rate (physics, joint states, cameras) is in sim time.

Shutdown (Ctrl-C at any moment, also while the renderer starts): the render thread is stopped and
joined before the node's publishers are destroyed and before the process exits, because a thread
still inside an EGL call or a publish at interpreter exit crashes the process (SIGSEGV).
"""

from __future__ import annotations

import threading
import time

from embodiment_adapters.nodes.process import run_node
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock as RclClock
from rclpy.clock import ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dreamzero_sim import ros_messages as conv
from dreamzero_sim.dds_config import configure_camera_transport
from dreamzero_sim.errors import CommandRejected, SimError
from dreamzero_sim.sim_core import CAMERA_NAMES, CameraRenderer, SimRobot

TRAJECTORY_TOPIC = "/arm_controller/joint_trajectory"
GRIPPER_TOPIC = "/gripper_controller/commands"
JOINT_STATES_TOPIC = "/joint_states"
# If physics falls further behind real time than this, drop the backlog instead of racing.
_MAX_LAG_S = 0.1
_RENDER_START_TIMEOUT_S = 60.0
_RENDER_JOIN_TIMEOUT_S = 30.0  # creating a GL context on a loaded CPU can take seconds

_PARAMETERS: dict[str, tuple[object, str]] = {
    "scene": ("", "MJCF scene path; empty = the packaged droid_scene.xml (read at start)"),
    "physics_rate_hz": (100.0, "rate of the timer that advances physics (each tick runs several 2 ms steps)"),
    "joint_state_rate_hz": (100.0, "rate of /joint_states in sim time"),
    "camera_rate_hz": (15.0, "rate of camera images in sim time; 0 disables rendering"),
    "image_width": (320, "camera image width in pixels"),
    "image_height": (240, "camera image height in pixels"),
    "cameras": (list(CAMERA_NAMES), "cameras to render; topics /sim/<camera>/image_raw"),
    "publish_camera_info": (True, "also publish /sim/<camera>/camera_info with each image"),
    "publish_clock": (False, "publish /clock from the sim clock and stamp everything with sim time"),
    "realtime_factor": (1.0, "sim seconds per wall second"),
    "interpolate_from_desired_state": (True, "JTC: start new trajectories from the last command (else measured)"),
    "allow_nonzero_velocity_at_trajectory_end": (False, "JTC (Jazzy default false): accept a moving last point"),
}


class SimRobotNode(Node):
    """The simulated robot node; see the module docstring for its interface."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sim_robot_node", **kwargs)
        for name, (default, text) in _PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text, read_only=True))
        p = {name: self.get_parameter(name).value for name in _PARAMETERS}
        for rate in ("physics_rate_hz", "joint_state_rate_hz", "realtime_factor"):
            if not p[rate] > 0.0:
                raise ValueError(f"parameter {rate} must be > 0, got {p[rate]}")
        if p["camera_rate_hz"] < 0.0:
            raise ValueError(f"parameter camera_rate_hz must be >= 0, got {p['camera_rate_hz']}")
        if self.get_parameter("use_sim_time").value and not p["publish_clock"]:
            raise ValueError("use_sim_time:=true needs publish_clock:=true: this node is the source of /clock")
        self._p = p
        self._lock = threading.Lock()
        self.sim = SimRobot(
            p["scene"] or None,
            interpolate_from_desired_state=p["interpolate_from_desired_state"],
            allow_nonzero_velocity_at_trajectory_end=p["allow_nonzero_velocity_at_trajectory_end"],
        )
        self.rejected_commands = 0
        # ROS time = sim time + offset; 0 with /clock, else re-measured every physics tick so that
        # stamps track the wall clock even when physics lags.
        self._offset_ns = 0 if p["publish_clock"] else self.get_clock().now().nanoseconds - self._sim_ns()
        # (wall, sim) time pair that paces physics; set on the first tick so that start-up work
        # (the renderer's GL context) is not mistaken for physics lag.
        self._anchor: tuple[float, float] | None = None
        self._js_period = 1.0 / p["joint_state_rate_hz"]
        self._next_js = self.sim.time

        self._js_pub = self.create_publisher(JointState, JOINT_STATES_TOPIC, 10)
        self._clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=1)) if p["publish_clock"] else None
        self._image_pubs = {
            cam: self.create_publisher(Image, f"/sim/{cam}/image_raw", qos_profile_sensor_data) for cam in p["cameras"]
        }
        self._info_pubs = {
            cam: self.create_publisher(CameraInfo, f"/sim/{cam}/camera_info", qos_profile_sensor_data)
            for cam in p["cameras"]
            if p["publish_camera_info"]
        }
        self.create_subscription(JointTrajectory, TRAJECTORY_TOPIC, self._on_trajectory, 10)
        self.create_subscription(Float64MultiArray, GRIPPER_TOPIC, self._on_gripper, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)

        self._stop = threading.Event()
        self._render_thread: threading.Thread | None = None
        try:
            if p["camera_rate_hz"] > 0.0 and p["cameras"]:
                self.get_logger().info("starting the camera renderer (offscreen GL context)")
                self._start_renderer()
            # The steady clock paces physics: with use_sim_time the node clock follows /clock, which
            # only this timer advances.
            self.create_timer(
                1.0 / p["physics_rate_hz"], self._on_physics_tick, clock=RclClock(clock_type=ClockType.STEADY_TIME)
            )
        except BaseException:  # also Ctrl-C while the GL context is created: never leave the thread behind
            self._shutdown_renderer()
            raise
        self.get_logger().info(
            f"sim robot up: scene {self.sim.scene_path}, cameras {list(self._image_pubs)} at "
            f"{p['camera_rate_hz']} Hz {p['image_width']}x{p['image_height']}, "
            f"clock={'sim' if p['publish_clock'] else 'wall'}"
        )

    # --- time ---------------------------------------------------------------------------------

    def _sim_ns(self) -> int:
        return round(self.sim.time * 1e9)

    def _ros_ns(self, sim_time: float) -> int:
        return round(sim_time * 1e9) + self._offset_ns

    # --- physics ------------------------------------------------------------------------------

    def _on_physics_tick(self) -> None:
        rtf = self._p["realtime_factor"]
        wall = time.monotonic()
        with self._lock:
            if self._anchor is None:
                self._anchor = (wall, self.sim.time)
            wall0, sim0 = self._anchor
            target = sim0 + rtf * (wall - wall0)
            max_steps = int(_MAX_LAG_S * rtf / self.sim.timestep) + 1
            self.sim.advance_to(target, max_steps=max_steps)
            if target - self.sim.time > _MAX_LAG_S * rtf:
                self.get_logger().warning(
                    "physics cannot keep up with real time; dropping backlog", throttle_duration_sec=5.0
                )
                self._anchor = (wall, self.sim.time)
            # Physics advances in whole 2 ms steps on a jittery timer, so a strict "due" test would
            # skip instants; half a period of slack keeps the nominal rate, and the debt is capped
            # at one period so a stall never produces a burst of stale samples.
            sample = None
            if self.sim.time + 0.5 * self._js_period >= self._next_js:
                sample = self.sim.joint_state()
                self._next_js = max(self._next_js + self._js_period, self.sim.time)
            sim_ns = self._sim_ns()
        if self._clock_pub is None:
            self._offset_ns = self.get_clock().now().nanoseconds - sim_ns
        else:
            self._clock_pub.publish(Clock(clock=conv.time_msg(sim_ns)))
        if sample is not None:
            self._js_pub.publish(conv.joint_state_msg(sample, self._ros_ns(sample.time)))

    # --- commands -----------------------------------------------------------------------------

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        names, points, stamp_ns = conv.trajectory_from_msg(msg)
        # Stamp 0 keeps its "start now" meaning; other stamps move onto the sim clock.
        stamp = 0.0 if stamp_ns == 0 else (stamp_ns - self._offset_ns) * 1e-9
        try:
            with self._lock:
                self.sim.submit_trajectory(names, points, stamp)
        except CommandRejected as exc:
            self.rejected_commands += 1
            self.get_logger().warning(f"trajectory rejected ({exc.reason}): {exc}; holding the previous command")

    def _on_gripper(self, msg: Float64MultiArray) -> None:
        try:
            if len(msg.data) != 1:
                raise CommandRejected(f"expected exactly one gripper value, got {len(msg.data)}", "size_mismatch")
            with self._lock:
                self.sim.command_gripper(msg.data[0])
        except CommandRejected as exc:
            self.rejected_commands += 1
            self.get_logger().warning(f"gripper command rejected ({exc.reason}): {exc}")

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self.sim.reset()
        response.success = True
        response.message = "reset to the home pose, gripper open, objects restored"
        self.get_logger().info(response.message)
        return response

    # --- rendering ----------------------------------------------------------------------------

    def _start_renderer(self) -> None:
        ready = threading.Event()
        errors: list[BaseException] = []
        self._render_thread = threading.Thread(
            target=self._render_loop, args=(ready, errors), name="sim_render", daemon=True
        )
        self._render_thread.start()
        if not ready.wait(_RENDER_START_TIMEOUT_S):
            errors.append(SimError(f"the renderer did not start within {_RENDER_START_TIMEOUT_S} s"))
        if errors:
            self._shutdown_renderer()
            raise errors[0]

    def _render_loop(self, ready: threading.Event, errors: list[BaseException]) -> None:
        p = self._p
        try:
            # GL contexts belong to the thread that made them: create, use and free it here.
            renderer = CameraRenderer(self.sim.model, p["image_width"], p["image_height"], list(self._image_pubs))
        except (SimError, ValueError) as exc:
            errors.append(exc)
            ready.set()
            return
        ready.set()
        period = 1.0 / p["camera_rate_hz"]  # sim seconds
        rtf = p["realtime_factor"]
        next_frame: float | None = None  # sim time of the next frame
        try:
            while not self._stop.is_set() and self.context.ok():
                with self._lock:
                    snap = self.sim.snapshot()
                if next_frame is None:
                    next_frame = snap.time
                if snap.time < next_frame - 1e-9:
                    # Sleep the wall time that the sim needs to get there (re-checked: physics may lag).
                    self._stop.wait(min(max((next_frame - snap.time) / rtf, 0.001), 0.1))
                    continue
                images = renderer.render(snap)
                stamp = self._ros_ns(snap.time)
                for cam, image in images.items():
                    frame = f"{cam}_optical_frame"
                    self._image_pubs[cam].publish(conv.image_msg(image, stamp, frame))
                    if cam in self._info_pubs:
                        self._info_pubs[cam].publish(conv.camera_info_msg(renderer.intrinsics(cam), stamp, frame))
                # Skip frames rather than queue them when rendering is slower than the rate.
                next_frame = max(next_frame + period, snap.time)
        except Exception as exc:
            # A publish racing rclpy's shutdown (Ctrl-C) is not an error; anything else is, and
            # physics keeps running, so say loudly why images stopped.
            if self.context.ok() and not self._stop.is_set():
                self.get_logger().error(f"camera rendering stopped: {type(exc).__name__}: {exc}")
        finally:
            renderer.close()

    def _shutdown_renderer(self) -> None:
        self._stop.set()
        thread = self._render_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_RENDER_JOIN_TIMEOUT_S)
            if thread.is_alive():
                self.get_logger().error(f"the render thread did not stop within {_RENDER_JOIN_TIMEOUT_S} s")

    def destroy_node(self) -> None:
        """Stop the render thread before the publishers it uses go away."""
        self._shutdown_renderer()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``sim_robot_node``; Ctrl-C / SIGTERM exit 0, also during start-up.

    Stopping (embodiment_adapters.nodes.process): executor, node (joins the render thread first), context.
    """
    transport = configure_camera_transport()  # before the DDS participant exists
    return run_node(
        SimRobotNode, SingleThreadedExecutor, args, on_started=lambda node: node.get_logger().info(transport)
    )


if __name__ == "__main__":
    raise SystemExit(main())
