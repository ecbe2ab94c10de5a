"""One demo episode: rclpy context + recorder + monitor in this process, the graph as children.

:meth:`DemoSession.run_episode` raises :class:`~dreamzero_policy.demo.DemoError` naming the stage
that failed; :meth:`DemoSession.shutdown` always runs afterwards (bag closed first, then the
children, then this process's ROS objects in the order environment.md §3.3 requires) and returns
the shutdown problems as error lines.

Clock: the whole graph runs on sim time (``args.realtime_factor`` sim seconds per wall second; the
sim publishes ``/clock``; every node, the recorder and the monitor use it). The episode lasts
``args.duration`` sim seconds, ended by the demo itself: the policy node measures a RunTask
``time_limit`` on the wall clock, so the goal carries only a generous wall-clock backstop.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException

from dreamzero_policy.bringup import sim_nodes
from dreamzero_policy.demo_tools.monitor import DemoMonitor
from dreamzero_policy.demo_tools.processes import ProcessGroup, executable_path
from dreamzero_policy.demo_tools.recorder import BagRecorder
from dreamzero_policy.nodes.executor import PoolExecutor

_ACTIVE = ("WAITING_FOR_INPUT", "RUNNING")


class DemoError(Exception):
    """A demo stage failed; ``str()`` is the line printed to the user."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"ERROR [{stage}]: {message}")
        self.stage = stage


def say(text: str) -> None:
    print(f"==> [demo] {text}", flush=True)


_PROGRESS_PERIOD_S = 5.0
_BACKSTOP_FACTOR = 2.0  # the goal's own (wall-clock) time limit, in units of the episode's wall time


class DemoSession:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.topics: tuple[str, ...] = ()  # what to record; set before run_episode
        self.run_task_action = "/dreamzero_policy/run_task"
        self.out = args.output_dir
        self.rtf = float(args.realtime_factor)
        self.specs = sim_nodes(backend=args.backend, checkpoint=args.checkpoint, realtime_factor=self.rtf)
        self.context: Any = None
        self.executor: Any = None
        self._thread: threading.Thread | None = None
        self.recorder: BagRecorder | None = None
        self.monitor: DemoMonitor | None = None
        self.procs = ProcessGroup(self.out / "logs", env)
        self.timings: dict[str, float] = {}
        self.task: dict[str, Any] = {}
        self.record_summary: Any = None
        self._shut = False

    # ------------------------------------------------------------------ stages
    def run_episode(self) -> None:
        try:
            for spec in self.specs:  # fail before starting anything when the install is incomplete
                executable_path(spec)
        except FileNotFoundError as exc:
            raise DemoError("start", str(exc)) from exc
        t0 = time.monotonic()
        self._start_ros()
        self._start_children()
        self._wait_ready()
        self.timings["ready_s"] = time.monotonic() - t0
        self._run_task()

    def _start_ros(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(self.env["ROS_DOMAIN_ID"]))
        self.executor = PoolExecutor(num_threads=3, context=self.context)
        self.recorder = BagRecorder(self.context, self.out / "bag", self.topics, use_sim_time=True)
        self.monitor = DemoMonitor(self.context, self.run_task_action, use_sim_time=True)
        self.executor.add_node(self.recorder.node)
        self.executor.add_node(self.monitor.node)
        self._thread = threading.Thread(target=self._spin, name="demo-executor", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(ExternalShutdownException):
            self.executor.spin()

    def _start_children(self) -> None:
        for spec in self.specs:
            extra: list[str] = []
            if spec.executable == "policy_node":
                # autostart: configure + activate without a lifecycle manager; predicted frames for the video.
                extra = ["-p", "autostart:=true", "-p", "predicted_video.enabled:=true"]
                if getattr(self.args, "device", ""):
                    extra += ["-p", f"device:={self.args.device}"]
            child = self.procs.start(spec, extra)
            say(f"started {spec.name} (pid {child.process.pid}, log {child.log_path})")

    def _check_children(self, stage: str) -> None:
        dead = self.procs.dead()
        if dead:
            c = dead[0]
            raise DemoError(
                stage, f"node {c.name} exited with code {c.returncode}; last lines of {c.log_path}:\n{c.log_tail()}"
            )

    def _wait_ready(self) -> None:
        assert self.monitor is not None
        say("waiting for the sim robot and the policy (model load + warm-up)...")
        deadline = time.monotonic() + self.args.startup_timeout
        while time.monotonic() < deadline:
            self._check_children("ready")
            state = self.monitor.state()
            if state == "ERROR":
                raise DemoError("ready", f"the policy reported ERROR: {self.monitor.last_status_text()}")
            if state in _ACTIVE and self.monitor.action_server_ready() and self.monitor.counts()[1] > 0:
                say(f"policy active ({self.monitor.last_status_text()})")
                return
            time.sleep(0.2)
        js = self.monitor.counts()[1]
        what = "no /joint_states from the sim robot" if js == 0 else f"policy: {self.monitor.last_status_text()}"
        raise DemoError("ready", f"the graph was not ready within {self.args.startup_timeout:.0f} s ({what})")

    def _run_task(self) -> None:
        assert self.monitor is not None
        mon, args, rtf = self.monitor, self.args, self.rtf
        wall_episode = args.duration / rtf
        say(
            f"RunTask: '{args.instruction}' for {args.duration:.1f} s of sim time (realtime factor {rtf:g}: "
            f"about {wall_episode:.0f} s of wall time)"
        )
        t_goal, sim_goal = time.monotonic(), mon.now_s()
        mon.send_goal(args.instruction, _BACKSTOP_FACTOR * wall_episode + 10.0)
        running_deadline = t_goal + args.running_timeout
        end_deadline = None
        ended_by_demo = False
        next_progress = t_goal + _PROGRESS_PERIOD_S
        while not mon.goal_done.wait(0.2):
            self._check_children("episode")
            now, sim_elapsed = time.monotonic(), mon.now_s() - sim_goal
            if end_deadline is None:
                if mon.state() == "RUNNING":
                    self.timings["running_after_goal_s"] = now - t_goal
                    # Wall-clock guard only: physics may run slower than the factor on a loaded machine.
                    end_deadline = now + 3.0 * wall_episode + 60.0
                    say(f"policy RUNNING after {now - t_goal:.1f} s")
                elif now > running_deadline:
                    mon.cancel_goal()
                    raise DemoError("episode", f"policy never reached RUNNING: {mon.last_status_text()}")
            elif now > end_deadline:
                mon.cancel_goal()
                raise DemoError(
                    "episode",
                    f"the episode did not reach {args.duration:.1f} s of sim time within "
                    f"{end_deadline - t_goal:.0f} s (sim time {sim_elapsed:.1f} s: is the sim robot "
                    "publishing /clock?)",
                )
            if not ended_by_demo and sim_elapsed >= args.duration:
                ended_by_demo = True
                self.timings["episode_sim_s"] = sim_elapsed
                mon.cancel_goal()  # the result (canceled) follows
            if now >= next_progress:
                chunks, _ = mon.counts()
                say(
                    f"t={now - t_goal:5.1f} s (sim {sim_elapsed:5.1f} s)  chunks={chunks}  "
                    f"policy {mon.last_status_text()}"
                )
                next_progress += _PROGRESS_PERIOD_S
        self.timings["episode_s"] = time.monotonic() - t_goal
        self.timings.setdefault("episode_sim_s", mon.now_s() - sim_goal)
        if mon.goal_error:
            raise DemoError("episode", mon.goal_error)
        result = mon.goal_result
        success, message = bool(result.success), result.message
        if ended_by_demo and not success and message == "canceled":
            success, message = True, f"sim time limit reached ({args.duration:.1f} s)"
        self.task = {
            "success": success,
            "message": message,
            "session_id": result.session_id,
            "chunks_published": int(result.chunks_published),
        }
        say(f"RunTask finished: success={success} ({message}), {result.chunks_published} chunks published")
        if not success:
            raise DemoError("episode", f"RunTask failed: {message} (policy {mon.last_status_text()})")
        if mon.counts()[0] == 0:
            raise DemoError("episode", "the task ended but no action chunk reached the demo")

    # ------------------------------------------------------------------ teardown
    def shutdown(self) -> list[str]:
        """Close the bag, stop the children, tear down ROS; returns error lines (empty = clean)."""
        if self._shut:
            return []
        self._shut = True
        errors: list[str] = []
        if self.monitor is not None:
            self.monitor.cancel_goal()
        if self.recorder is not None:
            try:
                self.record_summary = self.recorder.close()
            except Exception as exc:
                errors.append(f"ERROR [record]: {exc}")
        say("stopping the nodes (SIGINT)...")
        for c in self.procs.stop():
            if c.stop_signal == "exited by itself":
                errors.append(f"ERROR [shutdown]: node {c.name} had exited by itself (code {c.returncode})")
            elif not c.clean:
                how = f"exit code {c.returncode}" + (f" after {c.stop_signal}" if c.stop_signal else "")
                errors.append(
                    f"ERROR [shutdown]: node {c.name} did not stop cleanly ({how}); "
                    f"last lines of {c.log_path}:\n{c.log_tail(8)}"
                )
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=5.0)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for part in (self.recorder, self.monitor):
            if part is not None:
                part.node.destroy_node()
        if self.context is not None and self.context.ok():
            rclpy.shutdown(context=self.context)
        return errors

    def run_info(self) -> dict[str, Any]:
        rec = self.record_summary
        return {
            "instruction": self.args.instruction,
            "duration_s": self.args.duration,
            "clock": "sim",
            "realtime_factor": self.rtf,
            "episode_sim_s": self.timings.get("episode_sim_s", 0.0),
            "backend": self.args.backend,
            "device": getattr(self.args, "device", "") or "(config/nodes/policy_node.yaml)",
            "checkpoint": self.args.checkpoint or "(config/nodes/policy_node.yaml)",
            "ros_domain_id": int(self.env["ROS_DOMAIN_ID"]),
            "timings_s": self.timings,
            "episode_s": self.timings.get("episode_s", 0.0),
            "task": self.task,
            "task_message": self.task.get("message", ""),
            "nodes": [
                {
                    "name": c.name,
                    "returncode": c.returncode,
                    "stop_signal": c.stop_signal,
                    "clean": c.clean,
                    "log": str(c.log_path.relative_to(self.out)),
                }
                for c in self.procs.children
            ],
            "recording": None
            if rec is None
            else {
                "messages": rec.messages,
                "missing_topics": rec.missing,
                "skipped_topics": rec.skipped,
                "dropped_by_recorder": {t: s.dropped for t, s in rec.topics.items() if s.dropped},
            },
        }
