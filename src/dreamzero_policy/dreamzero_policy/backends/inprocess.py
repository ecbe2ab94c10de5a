"""In-process backend: the world action model (``WorldActionPipeline``) in this process.

It plays the server's part of the DROID protocol: it mosaics the per-camera request images into
the model frame, normalises the state with the spec's q01/q99 statistics, calls the pipeline,
and turns the normalised (relative) actions back into absolute robot-unit actions. Like the
official server it resets the model when the request's ``session_id`` changes, conditions the
first call of a context on ``frames_first_call`` frames (the newest ones) and left-pads short
histories with their first frame.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_policy.core.errors import BackendError, IoSpecError
from dreamzero_policy.runtime.io_spec import IoSpec, stats_from_metadata
from dreamzero_policy.runtime.observation import build_mosaic, request_images, request_state
from dreamzero_policy.runtime.postprocess import actions_from_model, normalize


def _select_frames(stack: np.ndarray, n: int) -> np.ndarray:
    """The newest ``n`` frames of (T, h, w, 3), left-padded with the oldest when T < n."""
    if stack.shape[0] >= n:
        return stack[stack.shape[0] - n :]
    pad = np.repeat(stack[:1], n - stack.shape[0], axis=0)
    return np.concatenate([pad, stack], axis=0)


def with_checkpoint_stats(spec: IoSpec, checkpoint: str | Path) -> IoSpec:
    """``spec`` with q01/q99 read from ``<checkpoint>/experiment_cfg/metadata.json`` when the spec
    has none inline (``normalization.source: checkpoint``)."""
    if spec.state_stats is not None and spec.action_stats is not None:
        return spec
    norm = spec.extra.get("normalization", {})
    meta = Path(checkpoint) / "experiment_cfg" / "metadata.json"
    state_keys = norm.get("state_keys")
    action_keys = norm.get("action_keys")
    if not state_keys or not action_keys:
        raise IoSpecError(f"normalization: no inline statistics and no state_keys/action_keys to read them from {meta}")
    stats = stats_from_metadata(meta, spec.embodiment_tag, list(state_keys), list(action_keys))
    for group, dim in (("state", spec.state_dim), ("action", spec.action_dim)):
        if stats[group].q01.shape != (dim,):
            raise IoSpecError(
                f"normalization.{group}: {meta} gives {stats[group].q01.shape[0]} values, the spec needs {dim}"
            )
    return dataclasses.replace(spec, state_stats=stats["state"], action_stats=stats["action"])


class InProcessBackend:
    """:class:`~dreamzero_policy.backends.base.PolicyBackend` around a ``WorldActionPipeline``."""

    def __init__(self, spec: IoSpec, pipeline: Any, model_id: str = "", seed: int | None = None) -> None:
        if spec.state_stats is None or spec.action_stats is None:
            raise IoSpecError(
                "normalization: the in-process backend needs state and action statistics "
                "(inline in the spec, or from the checkpoint's metadata.json)"
            )
        if pipeline.action_dim < spec.action_dim:
            raise IoSpecError(f"action.names: {spec.action_dim} actions but the model outputs {pipeline.action_dim}")
        if pipeline.state_dim < spec.state_dim:
            raise IoSpecError(f"state: {spec.state_dim} values but the model takes {pipeline.state_dim}")
        self.spec = spec
        self.pipeline = pipeline
        self.model_id = model_id
        self.seed = seed
        self._session: str | None = None
        self._calls = 0
        self._closed = False

    @classmethod
    def from_preset(cls, spec: IoSpec, name: str, seed: int = 0, device: str = "cpu") -> InProcessBackend:
        from dreamzero_policy.model.pipeline import WorldActionPipeline

        return cls(
            spec, WorldActionPipeline.from_preset(name, seed=seed, device=device), model_id=f"preset:{name}", seed=seed
        )

    @classmethod
    def from_pretrained(cls, spec: IoSpec, path: str | Path, **kwargs: Any) -> InProcessBackend:
        from dreamzero_policy.model.pipeline import WorldActionPipeline

        spec = with_checkpoint_stats(spec, path)
        return cls(spec, WorldActionPipeline.from_pretrained(str(path), **kwargs), model_id=str(path))

    # ------------------------------------------------------------------ PolicyBackend

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise BackendError("in-process backend is closed")
        t0 = time.perf_counter()
        session = str(obs.get("session_id", ""))
        if session != self._session:
            self.reset()
            self._session = session
        prompt = obs.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise BackendError("request: 'prompt' must be a non-empty string")
        images = request_images(self.spec, obs)
        state = request_state(self.spec, obs)
        first = self._calls == 0
        n = self.pipeline.frames_first_call if first else self.pipeline.frames_per_call
        frames = build_mosaic(
            self.spec, {k: _select_frames(v, n) for k, v in images.items()}, tuple(self.pipeline.image_size)
        )
        norm_state = np.zeros(self.pipeline.state_dim, dtype=np.float32)
        norm_state[: self.spec.state_dim] = normalize(state, self.spec.state_stats)
        t1 = time.perf_counter()
        try:
            res = self.pipeline.infer(frames, norm_state, prompt, seed=self.seed)
        except Exception as exc:
            # The model's context is unknown after a failure: start over on the next call.
            self._session = None
            raise BackendError(f"model inference failed: {type(exc).__name__}: {exc}") from exc
        t2 = time.perf_counter()
        self._calls += 1
        actions = actions_from_model(self.spec, np.asarray(res.actions), state).astype(np.float32)
        timing = {"preprocess_s": t1 - t0, "model_s": t2 - t1, "postprocess_s": time.perf_counter() - t2}
        timing.update({f"model/{k}": float(v) for k, v in dict(getattr(res, "timings", {}) or {}).items()})
        out: dict[str, Any] = {"actions": actions, "timing": timing, "first_call": first}
        if obs.get("return_video"):
            out["video"] = np.asarray(self.pipeline.decode_video(res.video_latents), dtype=np.uint8)
        return out

    def reset(self) -> None:
        self.pipeline.reset()
        self._calls = 0
        self._session = None

    def metadata(self) -> dict[str, Any]:
        h, w = self.spec.request_size
        return {
            "backend": "inprocess",
            "model_id": self.model_id,
            "embodiment": self.spec.embodiment,
            "spec": self.spec.name,
            "action_space": self.spec.action_space,
            "action_names": list(self.spec.action_names),
            "action_dim": self.spec.action_dim,
            "action_horizon": int(self.pipeline.action_horizon),
            "fps": self.spec.fps,
            "image_resolution": (h, w),
            "model_image_size": tuple(int(x) for x in self.pipeline.image_size),
            "frames_first_call": int(self.pipeline.frames_first_call),
            "frames_per_call": int(self.pipeline.frames_per_call),
        }

    def close(self) -> None:
        self._closed = True
