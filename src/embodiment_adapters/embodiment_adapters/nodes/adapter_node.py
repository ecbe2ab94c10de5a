"""Embodiment adapter node: ActionChunks -> the robot's controllers, through the pure safety core.

Topics: subscribes ``/dreamzero/action_chunk`` (ActionChunk), ``/joint_states``, ``~/e_stop`` (Bool, latching on
true); publishes a JointTrajectory per profile controller (stamp 0), gripper commands, ``~/commanded``
(JointState), ``~/status`` (DiagnosticStatus) and ``/diagnostics``. Services: ``~/enable`` (SetBool; disabled at
start unless the profile is simulated) and ``~/reset_e_stop`` (Trigger). An e-stop also disables; after a reset
a real robot must be enabled again, a simulated one re-enables itself.

All decisions are in :class:`AdapterCore`; this node translates and keeps the interlocks. Every callback is in
one mutually exclusive group, so the core is never entered concurrently.
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from dreamzero_msgs.msg import ActionChunk
from embodiment_adapters.nodes import action_sinks, converters
from embodiment_adapters.nodes.params import declare_and_read
from embodiment_adapters.nodes.process import run_node
from embodiment_adapters.profile import load_profile
from embodiment_adapters.safety.gripper import GripperGate
from embodiment_adapters.safety.planner import AdapterCore
from embodiment_adapters.safety.types import ChunkRejected, TrajectoryPlan
from embodiment_adapters.safety.watchdog import Watchdog

_OK, _WARN, _ERROR = DiagnosticStatus.OK[0], DiagnosticStatus.WARN[0], DiagnosticStatus.ERROR[0]


class AdapterNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("adapter_node", **kwargs)
        self.params = declare_and_read(self)
        self.profile = load_profile(self.params.robot)
        self.core = AdapterCore(self.profile, self.params.safety)
        self.watchdog = Watchdog(self.params.watchdog)
        self.scale = converters.wire_scale(self.profile)
        self.enabled = self.profile.simulated
        self.estopped = False
        self.reason = "waiting for joint_states"
        self.level = _WARN
        self.counts = {"accepted": 0, "rejected": 0, "holds": 0, "published": 0}
        self.gripper_values: dict[str, float] = {}
        self.gates = {g.name: GripperGate(g) for g in self.profile.grippers}

        group = MutuallyExclusiveCallbackGroup()
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.traj_pubs = {
            c.name: self.create_publisher(JointTrajectory, c.topic, reliable) for c in self.profile.controllers
        }
        self.gripper_pubs = {
            g.name: self.create_publisher(Float64MultiArray, g.topic, reliable)
            for g in self.profile.grippers
            if g.interface == "forward_command"
        }
        self.traj_actions, self.gripper_actions = self._action_sinks()
        self.commanded_pub = self.create_publisher(JointState, "~/commanded", 10)
        self.status_pub = self.create_publisher(DiagnosticStatus, "~/status", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self.create_subscription(ActionChunk, self.params.chunk_topic, self._on_chunk, reliable, callback_group=group)
        # BEST_EFFORT matches both reliable and best-effort joint state publishers.
        self.create_subscription(
            JointState,
            self.params.joint_states_topic,
            self._on_joint_state,
            qos_profile_sensor_data,
            callback_group=group,
        )
        self.create_subscription(Bool, "~/e_stop", self._on_estop, reliable, callback_group=group)
        self.create_service(SetBool, "~/enable", self._on_enable, callback_group=group)
        self.create_service(Trigger, "~/reset_e_stop", self._on_reset, callback_group=group)
        self.create_timer(1.0 / self.params.watchdog_rate, self._on_watchdog, callback_group=group)
        self.create_timer(1.0 / self.params.status_rate, self._publish_status, callback_group=group)
        self.get_logger().info(
            f"adapter for '{self.profile.name}' ({self.profile.source}); "
            f"{'enabled (simulated robot)' if self.enabled else 'DISABLED until ~/enable'}"
        )

    def _action_sinks(self) -> tuple[dict, dict]:
        traj, grip = {}, {}
        gripper_actions = any(g.interface != "forward_command" for g in self.profile.grippers)
        wants_actions = self.params.use_action_interface or gripper_actions
        if wants_actions and not action_sinks.AVAILABLE:
            self.get_logger().warning(
                "control_msgs not importable: action interfaces unavailable; using topics "
                "(grippers with action interfaces will not be commanded)"
            )
            return traj, grip
        if self.params.use_action_interface:
            traj = {
                c.name: action_sinks.TrajectoryActionSink(self, c.action) for c in self.profile.controllers if c.action
            }
        for g in self.profile.grippers:
            if g.interface != "forward_command" and g.action:
                grip[g.name] = action_sinks.GripperActionSink(
                    self, g.action, g.interface == "parallel_gripper_command", g.joint, g.max_effort
                )
        return traj, grip

    # ------------------------------------------------------------------------------------------ helpers

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _set(self, level: int, reason: str, publish: bool = False) -> None:
        self.level, self.reason = level, reason
        if publish:
            self._publish_status()

    def _send(self, plan: TrajectoryPlan) -> None:
        for ctrl, traj in converters.plan_to_trajectories(plan, self.profile, self.scale):
            sink = self.traj_actions.get(ctrl.name)
            if sink is None or not sink.send(traj):
                self.traj_pubs[ctrl.name].publish(traj)
        self.counts["published"] += 1
        for name, value in plan.gripper_targets.items():
            wire = self.gates[name].update(value)
            if wire is None:
                continue
            self.gripper_values[name] = value
            if name in self.gripper_pubs:
                self.gripper_pubs[name].publish(converters.gripper_command(wire))
            elif name in self.gripper_actions:
                self.gripper_actions[name].send(wire)

    def _hold(self, why: str) -> None:
        plan = self.core.hold_plan(self._now())
        if plan is not None:
            self._send(plan)
            self.counts["holds"] += 1
            self.get_logger().warning(f"holding: {why}")

    # ------------------------------------------------------------------------------------------ callbacks

    def _on_joint_state(self, msg: JointState) -> None:
        names, positions = converters.joint_state_to_si(msg, self.profile, self.scale)
        if names and self.core.update_joint_state(names, positions, self._now()):
            self.watchdog.joint_state_received(self._now())

    def _on_chunk(self, msg: ActionChunk) -> None:
        now = self._now()
        if self.estopped:
            return self._set(_ERROR, f"chunk {msg.chunk_id} ignored: e-stop latched (call ~/reset_e_stop)")
        if not self.enabled:
            return self._set(_WARN, f"chunk {msg.chunk_id} ignored: disabled (call ~/enable)")
        fault = self.watchdog.joint_state_fault(now)
        if fault is not None:
            self.counts["rejected"] += 1
            return self._set(_ERROR, f"chunk {msg.chunk_id} rejected: {fault}", publish=True)
        try:
            plan = self.core.process_chunk(converters.chunk_from_msg(msg), now)
        except ChunkRejected as exc:
            self.counts["rejected"] += 1
            self.get_logger().warning(f"chunk {msg.session_id}/{msg.chunk_id} rejected: {exc.reason}")
            return self._set(_WARN, f"chunk {msg.chunk_id} rejected: {exc.reason}", publish=True)
        self.watchdog.chunk_received(now)
        self._send(plan)
        self.counts["accepted"] += 1
        note = f" ({'; '.join(plan.notes)})" if plan.notes else ""
        self._set(
            _OK,
            f"executing chunk {msg.session_id}/{msg.chunk_id}: {len(plan.times)} points, {plan.times[-1]:.2f} s{note}",
        )
        return None

    def _on_estop(self, msg: Bool) -> None:
        if msg.data and not self.estopped:
            self.estopped, self.enabled = True, False
            self._set(_ERROR, "e-stop latched")
            self._hold("e-stop")
            self._publish_status()

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if request.data and self.estopped:
            response.success, response.message = False, "e-stop latched: call ~/reset_e_stop first"
            return response
        was_enabled, self.enabled = self.enabled, bool(request.data)
        if was_enabled and not self.enabled:
            self._hold("disabled")
        if self.enabled:
            for gate in self.gates.values():
                gate.reset()
        response.success, response.message = True, "enabled" if self.enabled else "disabled"
        self._set(_OK if self.enabled else _WARN, response.message, publish=True)
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.estopped = False
        self.enabled = self.profile.simulated
        response.success = True
        response.message = "e-stop reset" + ("" if self.enabled else "; call ~/enable to move again")
        self._set(_WARN if not self.enabled else _OK, response.message, publish=True)
        return response

    def _on_watchdog(self) -> None:
        now = self._now()
        moving = self.core.moving(now)
        reason = self.watchdog.check(now, moving)
        already_holding = self.core.plan is not None and self.core.plan.notes == ("hold",)
        if reason is not None and moving and not already_holding:
            # state first, so anyone who sees the hold trajectory also sees why
            self._set(_ERROR, f"watchdog: {reason}")
            self._hold(reason)
            self._publish_status()
        cmd = self.core.commanded(now)
        if cmd is not None:
            self.commanded_pub.publish(
                converters.commanded_state(
                    self.profile, cmd[0], cmd[1], self.gripper_values, self.get_clock().now().to_msg()
                )
            )

    def _publish_status(self) -> None:
        values = {
            "robot": self.profile.name,
            "enabled": self.enabled,
            "e_stop": self.estopped,
            "session": self.core.sessions.session or "",
            **self.counts,
        }
        status = converters.diagnostic(f"{self.get_name()}: {self.profile.name}", self.level, self.reason, values)
        self.status_pub.publish(status)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    """Console script ``adapter_node``; Ctrl-C / SIGTERM exit 0 (see :mod:`embodiment_adapters.nodes.process`).

    A SingleThreadedExecutor: every callback is in one mutually exclusive group anyway, and callbacks then run on
    the main thread, so nothing runs once spinning has stopped.
    """
    return run_node(AdapterNode, SingleThreadedExecutor, args)
