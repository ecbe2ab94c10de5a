"""``policy_node``: the rclpy lifecycle node around :class:`~dreamzero_policy.runtime.PolicyRuntime`.

The node only translates: parameters -> :class:`NodeParams`, messages -> runtime calls, runtime
events -> messages. Resource plan (style habit 4): configure loads the spec, builds the backend
(model load) and warms it up; activate opens subscriptions and the decision timer and enables the
lifecycle publishers; deactivate stops them and drains the worker but keeps the model; cleanup
frees the model. A failure is logged with its reason, shown on /dreamzero/status, and the
transition returns FAILURE; the node stays alive.

Subscriptions live in ``inputs.py``, publishers in ``outputs.py``.

Threads (a thread-pool executor, nodes/executor.py; which callbacks may run at the same time):
* default group (mutually exclusive): lifecycle transitions, parameter services, ``~/reset``,
  ``~/set_instruction``, ``~/instruction`` and the decision timer. They all change the session or
  the runtime, so serialising them removes every race between a transition and a tick.
* one mutually exclusive group per sensor subscription (``inputs.py``): camera and joint-state
  callbacks only append to the runtime's locked buffers, so they run concurrently with everything,
  including a long transition, while each topic's messages stay in order.
* ``_status_group`` (mutually exclusive): the status/diagnostics timer (reads a locked snapshot).
* the ``~/run_task`` action server has its own reentrant group (its execute callback waits).
The model runs only on the runtime's worker thread, never in a callback.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from dataclasses import replace
from typing import Any

from embodiment_adapters.nodes.process import run_node
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_srvs.srv import Trigger

from dreamzero_msgs.srv import SetInstruction
from dreamzero_policy.backends.base import PolicyBackend
from dreamzero_policy.core.errors import DreamZeroError
from dreamzero_policy.nodes.backend_factory import BackendFactory, default_backend_factory, warm_up
from dreamzero_policy.nodes.executor import PoolExecutor
from dreamzero_policy.nodes.inputs import PolicyInputs
from dreamzero_policy.nodes.outputs import PolicyOutputs
from dreamzero_policy.nodes.params import NodeParams, ParameterError, check_update, declare_all, read_all
from dreamzero_policy.nodes.run_task import RunTaskServer
from dreamzero_policy.nodes.status import PolicyState, StatusReport, StatusTracker
from dreamzero_policy.nodes.tuning import freeze_heap, unfreeze_heap
from dreamzero_policy.runtime import BufferLimits, PolicyRuntime, RuntimeEvent, load_io_spec

NODE_NAME = "dreamzero_policy"


def _limits(p: NodeParams) -> BufferLimits:
    return BufferLimits(
        max_age_s=p.max_age_s,
        max_skew_s=p.max_skew_s,
        max_joint_gap_s=p.max_joint_gap_s,
        backwards_tolerance_s=p.backwards_tolerance_s,
        reject_extra_joints=p.reject_extra_joints,
    )


class PolicyNode(LifecycleNode):
    """See module docstring. ``backend_factory`` replaces :func:`default_backend_factory` (tests)."""

    def __init__(
        self, node_name: str = NODE_NAME, *, backend_factory: BackendFactory | None = None, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        declare_all(self)
        # Registered after declaring: rclpy runs on-set callbacks for declarations too, and a bad
        # YAML value must fail configure with a reason, not raise from this constructor.
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._backend_factory = backend_factory or default_backend_factory
        self.params: NodeParams | None = None
        self.runtime: PolicyRuntime | None = None
        self.status = StatusTracker()
        self._active = False
        self._retry_after_ns = 0
        self._status_group = MutuallyExclusiveCallbackGroup()
        self._tick_timer: Any = None
        self.inputs = PolicyInputs(self, self._on_instruction)
        # Arrival delay of sensor messages (node clock now - header stamp), for diagnostics/bench.
        self.arrival_delays_s = self.inputs.arrival_delays_s
        self.outputs = PolicyOutputs(self)
        period = self.get_parameter("status_period_s").value
        period = float(period) if isinstance(period, (int, float)) and 0.01 <= period <= 10.0 else 0.5
        self.create_timer(period, self._publish_status, callback_group=self._status_group)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(SetInstruction, "~/set_instruction", self._on_set_instruction)
        self.run_task = RunTaskServer(self)
        self._autostart_timer = None
        if self.get_parameter("autostart").value is True:
            # For running without launch/lifecycle manager only (demo runner, quick bring-up):
            # configure + activate once, from the executor, after the constructor returned.
            self._autostart_timer = self.create_timer(0.01, self._autostart)

    # ------------------------------------------------------------------ lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """unconfigured -> inactive: params, spec, backend (model load), warm-up, publishers."""
        try:
            return self._configure()
        except Exception as exc:  # a bug must still leave a reason behind, not a silent ERROR
            self.get_logger().error(traceback.format_exc())
            return self._configure_failed(exc)

    def _configure(self) -> TransitionCallbackReturn:
        self.status.set_state(PolicyState.WARMING_UP, "configuring: loading the model")
        try:
            params = read_all(self)
            spec = load_io_spec(params.embodiment, params.embodiment_dir or None)
            if params.publish_joint_trajectory and spec.action_space != "joint_position":
                raise ParameterError(
                    f"publish_joint_trajectory: embodiment {spec.name!r} has action space "
                    f"{spec.action_space!r}; JointTrajectory needs joint_position"
                )
            t0 = time.monotonic()
            backend = self._backend_factory(params, spec)
            if not isinstance(backend, PolicyBackend):
                raise TypeError(f"backend factory returned {type(backend).__name__}, not a PolicyBackend")
        except Exception as exc:  # any failure becomes a FAILURE with its reason
            return self._configure_failed(exc)
        try:
            if params.warmup:
                warm_up(backend, spec)
            runtime = PolicyRuntime(
                spec,
                backend,
                limits=_limits(params),
                timeout_s=params.inference_timeout_s,
                joint_state_topic=params.joint_state_topic,
                frame_id=params.frame_id,
                clock_ns=self._now_ns,
            )
        except Exception as exc:  # same: FAILURE with the reason
            with contextlib.suppress(Exception):
                backend.close()
            return self._configure_failed(exc)
        meta = _metadata(backend)
        self.params, self.runtime = params, runtime
        runtime.return_video = params.publish_predicted_video
        self.status.backend, self.status.model_id = params.backend, str(meta.get("model_id", params.checkpoint))
        if params.instruction.strip():
            runtime.set_instruction(params.instruction)
        self.status.new_session(runtime.session.session_id)
        self.outputs.open(spec.state_joints if params.publish_joint_trajectory else None)
        msg = (
            f"configured: {params.backend} backend, model {self.status.model_id}, "
            f"embodiment {spec.name} ({time.monotonic() - t0:.1f} s)"
        )
        freeze_heap()  # the model is loaded: keep full GC runs from stalling callbacks (tuning.py)
        self.status.set_state(PolicyState.INACTIVE, msg)
        self.get_logger().info(msg)
        return TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, exc: BaseException) -> TransitionCallbackReturn:
        reason = f"configure failed: {type(exc).__name__}: {exc}"
        self.get_logger().error(reason)
        self.status.set_state(PolicyState.ERROR, reason)
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """inactive -> active: subscriptions, decision timer, lifecycle publishers on. New session:
        the model context from before a pause no longer matches the scene."""
        assert self.runtime is not None and self.params is not None
        p = self.params
        self.inputs.open(self.runtime, self.runtime.spec, p.joint_state_topic)
        self._sync_session(self.runtime.reset("activated"))
        self._retry_after_ns = 0
        self._tick_timer = self.create_timer(p.query_period_s, self._on_tick)
        self._active = True
        self.status.set_state(PolicyState.WAITING_FOR_INPUT, "active: waiting for inputs")
        self.get_logger().info("activated")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """active -> inactive: timer and subscriptions gone, the running inference drained and its
        result dropped (output is off), model kept."""
        self._stop_io()
        self.status.set_state(PolicyState.INACTIVE, "inactive (model loaded)")
        self.get_logger().info("deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """inactive -> unconfigured: model and publishers freed."""
        self._release()
        self.status.set_state(PolicyState.UNCONFIGURED, "not configured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_io()
        self._release()
        self.status.set_state(PolicyState.UNCONFIGURED, "shut down")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_io()
        self._release()
        self.status.set_state(PolicyState.ERROR, "error during a transition; reconfigure")
        return TransitionCallbackReturn.SUCCESS

    def _stop_io(self) -> None:
        self._active = False
        if self._tick_timer is not None:
            self.destroy_timer(self._tick_timer)
            self._tick_timer = None
        self.inputs.close()
        if self.runtime is not None:
            deadline = time.monotonic() + min(10.0, self.params.inference_timeout_s if self.params else 10.0)
            while self.runtime.worker.busy and time.monotonic() < deadline:
                time.sleep(0.01)
            self.runtime.poll()  # results of a deactivated node are never published

    def _release(self) -> None:
        if self.runtime is not None:
            if not self.runtime.close():
                self.get_logger().warning("inference worker did not stop in time; backend left open")
            self.runtime = None
            unfreeze_heap()  # the model's objects may now be garbage
        self.outputs.close()
        if "torch" in sys.modules:  # free cached GPU memory only if torch was ever loaded
            torch = sys.modules["torch"]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def shutdown_resources(self) -> None:
        """Stop I/O and the worker, free the model (process exit; any lifecycle state)."""
        self._stop_io()
        self._release()

    def _autostart(self) -> None:
        if self._autostart_timer is not None:
            self.destroy_timer(self._autostart_timer)
            self._autostart_timer = None
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def _on_instruction(self, text: str) -> None:
        ok, message, _ = self.set_instruction(text, reset_session=False)
        if not ok:
            self.get_logger().warning(f"~/instruction: {message}")

    # ------------------------------------------------------------------ instruction / session API

    def set_instruction(self, text: str, reset_session: bool) -> tuple[bool, str, str]:
        """Set (or, with an empty text, clear) the instruction. Returns (ok, message, session_id).
        An empty instruction stops inference (the robot holds) until a non-empty one arrives."""
        rt = self.runtime
        if rt is None:
            return False, "not configured", ""
        if not text.strip():
            self.clear_instruction()
            self.status.input_rejected("empty instruction: no chunks until a non-empty one is set")
            return False, "instruction must not be empty; inference stopped", rt.session.session_id
        try:
            sid = rt.set_instruction(text, reset_session=reset_session)
        except DreamZeroError as exc:
            return False, str(exc), rt.session.session_id
        self._sync_session(sid)
        return True, f"instruction set; session {sid}", sid

    def clear_instruction(self) -> None:
        """Stop inference; a result still in flight belongs to the old session and is dropped."""
        if self.runtime is not None:
            self._sync_session(self.runtime.clear_instruction())

    @property
    def is_active(self) -> bool:
        return self._active

    def _sync_session(self, session_id: str) -> None:
        if session_id != self.status.session_id:
            self.status.new_session(session_id)

    def _on_reset(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        if self.runtime is None:
            resp.success, resp.message = False, "not configured"
            return resp
        sid = self.runtime.reset("reset service")
        self._sync_session(sid)
        self._retry_after_ns = 0
        resp.success, resp.message = True, f"new session {sid}; buffers cleared"
        return resp

    def _on_set_instruction(
        self, req: SetInstruction.Request, resp: SetInstruction.Response
    ) -> SetInstruction.Response:
        resp.success, resp.message, resp.session_id = self.set_instruction(req.instruction, req.reset_session)
        return resp

    def _on_set_parameters(self, changes: list[Any]) -> SetParametersResult:
        current = self.params or NodeParams()
        try:
            new = check_update(current, {c.name: c.value for c in changes})
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if self.params is not None:
            self.params = new
            if self.runtime is not None:
                self.runtime.buffers.limits = _limits(new)
                self.runtime.return_video = new.publish_predicted_video
                if any(c.name == "instruction" for c in changes):
                    self.set_instruction(new.instruction, reset_session=False)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ decision timer

    def _now_ns(self) -> int:
        """The node clock (sim time with ``use_sim_time``), ns; the runtime's worker calls it too."""
        return self.get_clock().now().nanoseconds

    def _on_tick(self) -> None:
        rt = self.runtime
        if rt is None or not self._active:
            return
        for event in rt.poll():
            self._handle_event(event)
        now = self.get_clock().now().nanoseconds
        if now < self._retry_after_ns and rt.instruction:
            return  # backing off after a backend failure
        outcome = rt.tick(now)
        if outcome.new_session:  # e.g. time went backwards: remember why for the status
            self.inputs.note_rejection(outcome.new_session)
        self._sync_session(rt.session.session_id)
        if outcome.reason == "no_instruction":
            self.status.set_state(
                PolicyState.WAITING_FOR_INPUT,
                "no instruction (set ~/instruction, ~/set_instruction or send a ~/run_task goal)",
            )
        elif not outcome.submitted and outcome.reason not in ("busy", "no_new_observation"):
            recent = self.inputs.recent_rejection()
            self.status.input_not_ready(
                f"{outcome.message} (last input problem: {recent})" if recent else outcome.message
            )

    def _handle_event(self, ev: RuntimeEvent) -> None:
        if ev.kind == "chunk" and ev.chunk is not None:
            p = self.params or NodeParams()
            self.outputs.publish_chunk(
                ev,
                frame_id=p.frame_id,
                video_rate_hz=p.predicted_video_max_rate_hz if p.publish_predicted_video else None,
            )
            self.status.chunk_published(ev.chunk.chunk_id, ev.latency_s)
        elif ev.kind == "bad_input":
            self.inputs.note_rejection(ev.message)
            self.status.input_rejected(ev.message)
        elif ev.kind in ("error", "timeout"):
            p = self.params or NodeParams()
            self._retry_after_ns = self.get_clock().now().nanoseconds + int(p.backend_retry_s * 1e9)
            self.status.backend_failed(
                f"backend {ev.kind}: {ev.message}; new session, retrying in {p.backend_retry_s:.1f} s"
            )
            self.get_logger().error(f"backend {ev.kind}: {ev.message}", throttle_duration_sec=2.0)
        # "discarded": a result of an earlier session (reset while it ran); dropping it is correct.

    # ------------------------------------------------------------------ status

    def report(self) -> StatusReport:
        """Status with the runtime's counters merged in."""
        rep = self.status.report()
        rt = self.runtime
        if rt is None:
            return rep
        return replace(
            rep,
            dropped_observations=rt.worker.stats.dropped,
            stale_inputs=rt.stale_inputs,
            rejected_inputs=rt.rejected_inputs + self.inputs.precheck_rejected + rep.rejected_inputs,
        )

    def _publish_status(self) -> None:
        self.outputs.publish_status(self.report(), self.get_clock().now().nanoseconds)


def _metadata(backend: Any) -> dict[str, Any]:
    try:
        meta = backend.metadata()
        return meta if isinstance(meta, dict) else {}
    except Exception:  # metadata is informative only
        return {}


def main(args: list[str] | None = None) -> int:
    """Spin one PolicyNode on a :class:`PoolExecutor` (4 threads) until Ctrl-C / SIGTERM; returns 0.

    After the last callback: stop the worker and free the model, then destroy the node
    (:mod:`embodiment_adapters.nodes.process` has the order and why).
    """
    return run_node(
        PolicyNode, lambda: PoolExecutor(num_threads=4), args, before_destroy=lambda node: node.shutdown_resources()
    )


if __name__ == "__main__":
    sys.exit(main())
