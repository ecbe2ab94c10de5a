"""Closed-loop evaluation in the simulator without ROS: a policy drives ``SimRobot`` chunk by chunk.

Every policy returns absolute action chunks (H, 8) in robot units (7 joint targets in rad + gripper 0..1), the
layout of ``ActionChunk`` for the sim embodiment. The executor runs on the sim clock at ``spec.fps``:

1. at a decision tick it asks the policy for a chunk, passing the measured joint state and the camera images
   of the current and earlier ticks (rendered on demand);
2. it executes the first ``execute_horizon`` rows open loop: one arm trajectory with a point every 1/fps
   (targets clipped to the joint limits), the gripper command switched per row (binarised at 0.5, like the
   DROID sim client);
3. success is judged on ground truth (``sim_tasks.SuccessTracker``) after every tick.

Sim time only advances when the executor steps it, so CPU inference latency does not matter. A chunk with the
wrong shape or non-finite values (or a failed inference) is not executed: the arm holds its last target and the
episode ends as a failure with the reason recorded (a robot holds on bad input).

Policies: :class:`ModelPolicy` (a checkpoint through the in-process backend, i.e. the policy node's request
path ``runtime.observation.build_request`` -> ``InProcessBackend.infer``), :class:`RandomPolicy` (uniform in
the normalised action space, through the same post-processing), :class:`ExpertPolicy` (the scripted expert's
plan replayed in chunks: it checks that the harness and its success tests can succeed).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from dreamzero_sim.sim_core import ARM_JOINT_NAMES, CameraRenderer, SimRobot
from dreamzero_sim.trajectory_follower import TrajectoryPoint

from dreamzero_policy.core.errors import DreamZeroError
from dreamzero_policy.runtime.io_spec import IoSpec
from dreamzero_policy.runtime.observation import build_request
from dreamzero_policy.runtime.postprocess import actions_from_model

from .sim_experts import load_chain, plan_episode
from .sim_tasks import Placement, SuccessTracker, TaskSpec, apply_placement

__all__ = ["EpisodeResult", "ExpertPolicy", "FrameHistory", "ModelPolicy", "Policy", "RandomPolicy", "run_episode"]


class PolicyOutputError(ValueError):
    """A policy returned a chunk that must not reach the robot."""


class FrameHistory:
    """Sim snapshots of every tick so far; camera images are rendered only when a policy asks for them
    (offscreen rendering is most of a tick's cost, and the expert / random policies never look)."""

    def __init__(self, renderer: CameraRenderer) -> None:
        self.renderer = renderer
        self.snapshots: list[Any] = []
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.snapshots)

    def images(self, tick: int) -> dict[str, np.ndarray]:
        """Camera name -> (h, w, 3) uint8 RGB at ``tick`` (0 <= tick < len)."""
        hit = self._cache.get(tick)
        if hit is None:
            hit = self._cache[tick] = self.renderer.render(self.snapshots[tick])
        return hit


@dataclass
class Observation:
    """What a policy may use at tick ``tick``: ``history`` (camera images of any earlier tick) and ``state``
    (8,) measured joints + gripper (0..1)."""

    tick: int
    history: FrameHistory
    state: np.ndarray


class Policy(Protocol):
    name: str

    def reset(self, task: TaskSpec, placement: Placement, sim: SimRobot) -> None: ...

    def act(self, obs: Observation) -> np.ndarray: ...


class ModelPolicy:
    """A trained checkpoint through a backend (``create_backend('inprocess', spec, checkpoint=...)``).

    First call of an episode: the newest frame; later calls: ``spec.frames_per_call`` frames spaced
    ``spec.frame_interval_s`` ending now (older ticks clamp to the first frame). A new session id per episode
    resets the model's context.
    """

    def __init__(self, name: str, spec: IoSpec, backend: Any) -> None:
        self.name, self.spec, self.backend = name, spec, backend
        self.stride = max(1, round(spec.frame_interval_s * spec.fps))
        self.model_seconds = 0.0
        self.calls = 0

    def reset(self, task: TaskSpec, placement: Placement, sim: SimRobot) -> None:
        self.prompt = self.spec.format_prompt(task.instruction)
        self.session = uuid.uuid4().hex[:12]
        self.first = True

    def act(self, obs: Observation) -> np.ndarray:
        n = self.spec.frames_first_call if self.first else self.spec.frames_per_call
        ticks = [max(0, obs.tick - self.stride * i) for i in reversed(range(n))]
        images = [obs.history.images(t) for t in ticks]
        frames = {cam.name: [im[cam.name] for im in images] for cam in self.spec.cameras}
        request = build_request(self.spec, frames, obs.state, self.prompt, self.session)
        t0 = time.perf_counter()
        out = self.backend.infer(request)
        self.model_seconds += time.perf_counter() - t0
        self.calls += 1
        self.first = False
        return np.asarray(out["actions"], np.float64)


class RandomPolicy:
    """Uniform random actions in the model's normalised space [-1, 1], post-processed like model output
    (de-normalised with the dataset statistics, relative joints added to the current state)."""

    def __init__(self, spec: IoSpec, seed: int) -> None:
        self.name, self.spec = "random", spec
        self.rng = np.random.default_rng(seed)

    def reset(self, task: TaskSpec, placement: Placement, sim: SimRobot) -> None:
        pass

    def act(self, obs: Observation) -> np.ndarray:
        raw = self.rng.uniform(-1.0, 1.0, size=(self.spec.action_horizon, self.spec.action_dim))
        return actions_from_model(self.spec, raw, obs.state)


class ExpertPolicy:
    """The scripted expert (privileged object positions) answering in chunks of ``horizon`` rows."""

    def __init__(self, horizon: int, fps: float) -> None:
        self.name, self.horizon, self.fps = "scripted expert", horizon, fps
        self.chain = load_chain()

    def reset(self, task: TaskSpec, placement: Placement, sim: SimRobot) -> None:
        self.plan = plan_episode(task, placement, self.chain, sim.home_positions, self.fps).actions()

    def act(self, obs: Observation) -> np.ndarray:
        rows = np.minimum(np.arange(obs.tick, obs.tick + self.horizon), len(self.plan) - 1)
        return self.plan[rows]


@dataclass
class EpisodeResult:
    task: str
    success: bool
    metrics: dict[str, Any]
    calls: int
    ticks: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "success": self.success,
            **self.metrics,
            "calls": self.calls,
            "ticks": self.ticks,
            "error": self.error,
        }


def _validate(actions: np.ndarray, horizon_needed: int) -> np.ndarray:
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 8 or a.shape[0] < 1:
        raise PolicyOutputError(f"policy returned actions of shape {a.shape}, expected (H, 8)")
    if not np.all(np.isfinite(a[:horizon_needed])):
        raise PolicyOutputError("policy returned non-finite actions")
    return a


def run_episode(
    sim: SimRobot,
    renderer: CameraRenderer,
    task: TaskSpec,
    placement: Placement,
    policy: Policy,
    fps: float,
    execute_horizon: int,
) -> EpisodeResult:
    """One closed-loop episode of ``task.duration_s`` (see module doc)."""
    apply_placement(sim, placement)
    policy.reset(task, placement, sim)
    tracker = SuccessTracker(sim, task)
    lower, upper = sim.position_limits
    n_ticks = round(task.duration_s * fps)
    history = FrameHistory(renderer)
    t0 = sim.time
    pending: list[np.ndarray] = []
    calls, error = 0, None
    for k in range(n_ticks):
        sim.advance_to(t0 + k / fps)
        tracker.update()
        history.snapshots.append(sim.snapshot())
        if not pending:
            try:
                chunk = _validate(
                    policy.act(Observation(k, history, sim.joint_state().position.copy())), execute_horizon
                )
            except (PolicyOutputError, DreamZeroError) as exc:
                # Bad chunk or failed inference: hold (no new trajectory, the follower keeps its last target).
                error = f"{type(exc).__name__}: {exc}"
                break
            calls += 1
            chunk = chunk[:execute_horizon].copy()
            chunk[:, :7] = np.clip(chunk[:, :7], lower[:7], upper[:7])
            chunk[:, 7] = (np.clip(chunk[:, 7], 0.0, 1.0) >= 0.5).astype(np.float64)
            sim.submit_trajectory(
                ARM_JOINT_NAMES, [TrajectoryPoint((i + 1) / fps, row[:7].tolist()) for i, row in enumerate(chunk)]
            )
            pending = list(chunk)
        sim.command_gripper(float(pending.pop(0)[7]))
    sim.advance_to(t0 + n_ticks / fps)
    tracker.update()
    res = tracker.result()
    return EpisodeResult(task.name, bool(res.pop("success")) and error is None, res, calls, n_ticks, error)
