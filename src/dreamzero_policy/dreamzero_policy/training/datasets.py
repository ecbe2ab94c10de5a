"""Training samples from converted datasets: chunk sampling, augmentation, normalisation, mixtures.

One sample = ``num_chunks`` consecutive chunks from one episode, anchored at frame ``a``:

* actions ``a .. a + n*A - 1`` (A = the model's actions per block), relative columns taken against the state
  at each chunk's anchor ``a + b*A``; state tokens = the state at each chunk's anchor;
* ``n * 4 * nfpb + 1`` video frames: per chunk ``4 * nfpb`` frames spread evenly over its A steps
  (official 24 actions -> every 3rd frame, 8 per chunk), plus the final frame ``a + n*A``;
  the causal VAE turns them into ``1 + n*nfpb`` latent frames, the model's training clip.

Each camera goes through the runtime's path (``resize_with_pad`` to the spec's request size, crop, resize into
the mosaic cell); training crops at a random offset and jitters colour (official: crop 95 %, ColorJitter
0.3/0.4/0.5/0.08), evaluation centre-crops. Video-only episodes (flagged by the converter, or a whole source
marked ``video_only``) give ``has_action = 0`` and zero actions.

``MixtureSampler`` draws (source, sample, augmentation seed) from position ``p`` with an RNG seeded by
``(seed, p)``: the stream is the same after a resume, and source frequencies follow the weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.runtime.observation import build_mosaic, resize_with_pad
from dreamzero_policy.runtime.postprocess import normalize

from .configs import TrainConfig, TrainingError
from .embodiment import DataLayout

__all__ = ["ChunkDataset", "ChunkGeometry", "DataSource", "MixtureSampler", "color_jitter", "parse_source"]


@dataclass(frozen=True)
class DataSource:
    """A converted dataset with its mixture weight; ``video_only`` trains every episode on video only."""

    path: Path
    weight: float = 1.0
    video_only: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight) or self.weight <= 0:
            raise TrainingError(f"{self.path}: mixture weight must be > 0, got {self.weight}")


def parse_source(text: str, video_only: bool = False) -> DataSource:
    """``PATH`` or ``PATH:WEIGHT`` -> DataSource."""
    path, sep, weight = text.rpartition(":")
    if sep and path:
        try:
            return DataSource(Path(path), float(weight), video_only)
        except ValueError:
            pass
    return DataSource(Path(text), 1.0, video_only)


@dataclass(frozen=True)
class ChunkGeometry:
    """Frame/row offsets of one sample relative to its anchor."""

    actions_per_chunk: int
    num_chunks: int
    frames_per_chunk: int  # 4 * nfpb pixel frames

    @property
    def span(self) -> int:
        """Rows needed after the anchor (the final frame is at anchor + span)."""
        return self.actions_per_chunk * self.num_chunks

    def frame_offsets(self) -> np.ndarray:
        """(n*fpc + 1,) pixel-frame offsets; evenly spread, exact stride 3 for 24 actions / 8 frames."""
        j = np.arange(self.num_chunks * self.frames_per_chunk + 1)
        fpc, a = self.frames_per_chunk, self.actions_per_chunk
        return (j // fpc) * a + ((j % fpc) * a) // fpc

    def state_offsets(self) -> np.ndarray:
        return np.arange(self.num_chunks) * self.actions_per_chunk


def color_jitter(frames: np.ndarray, rng: np.random.Generator, strength: Sequence[float]) -> np.ndarray:
    """uint8 (T, H, W, 3) -> jittered copy; one draw of (brightness, contrast, saturation, hue) per sample so
    the clip stays temporally consistent. Factors ~ U[1-s, 1+s]; hue shift ~ U[-h, h] of a full turn."""
    b, c, s, h = strength
    x = frames.astype(np.float32)
    if b:
        x *= rng.uniform(1 - b, 1 + b)
    if c:
        mean = (x @ np.array([0.299, 0.587, 0.114], np.float32)).mean()
        x = (x - mean) * rng.uniform(1 - c, 1 + c) + mean
    if s:
        gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        x = (x - gray) * rng.uniform(1 - s, 1 + s) + gray
    out = np.clip(x, 0, 255).astype(np.uint8)
    if h:
        shift = round(rng.uniform(-h, h) * 180)  # OpenCV hue range is 0..179
        for t in range(out.shape[0]):
            hsv = cv2.cvtColor(out[t], cv2.COLOR_RGB2HSV)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            out[t] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out


class _Source:
    """One dataset: its reader, the usable (episode, anchor) pairs, and cached decoded episodes."""

    def __init__(self, spec: DataSource, geometry: ChunkGeometry, cameras: Sequence[str]) -> None:
        self.spec = spec
        self.reader = DatasetReader(spec.path)
        missing = [c for c in cameras if c not in self.reader.video_keys]
        if missing:
            raise TrainingError(
                f"{spec.path}: video keys {missing} of the embodiment are missing "
                f"(dataset has {self.reader.video_keys})"
            )
        self.lengths = [int(e["length"]) for e in self.reader.episodes]
        self.video_only = [spec.video_only or bool(e.get("video_only", False)) for e in self.reader.episodes]
        self.geometry = geometry
        self._lowdim: OrderedDict[int, Any] = OrderedDict()
        self._video: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()

    def anchors(self, episodes: Sequence[int]) -> np.ndarray:
        """(N, 2) int64 [episode, anchor] for every anchor with a full sample inside its episode."""
        rows = [
            np.stack([np.full(n, e), np.arange(n)], 1)
            for e in episodes
            if (n := self.lengths[e] - self.geometry.span) > 0
        ]
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)

    def video(self, episode: int, key: str) -> np.ndarray:
        hit = self._video.get((episode, key))
        if hit is None:
            hit = self._video[(episode, key)] = self.reader.video(episode, key)
            while len(self._video) > 64:  # bounded: small datasets stay resident, large ones cycle
                self._video.popitem(last=False)
        return hit

    def lowdim(self, episode: int) -> Any:
        hit = self._lowdim.get(episode)
        if hit is None:
            hit = self._lowdim[episode] = self.reader.episode(episode)
            while len(self._lowdim) > 256:
                self._lowdim.popitem(last=False)
        return hit


class ChunkDataset(Dataset):
    """Map-style dataset indexed by ``(source, item, aug_seed)`` tuples from :class:`MixtureSampler` (or
    :meth:`eval_keys`). Items of ``split='eval'`` are the held-out episodes of the first robot source.

    Sample (tensors): video uint8 [T, H, W, 3] (model mosaic), state float32 [n*S, max_state_dim],
    actions / action_mask float32 [n*A, action_dim] (normalised, zero padded), has_action float32 [],
    state_raw float32 [state_dim] (robot units at the first anchor), actions_abs float32 [n*A, spec action_dim]
    (absolute robot-unit targets, zeros without actions); prompt: str.
    """

    def __init__(
        self,
        sources: Sequence[DataSource],
        layout: DataLayout,
        model_config: Any,
        config: TrainConfig,
        split: str = "train",
    ) -> None:
        if not sources:
            raise TrainingError("no training data: pass at least one --data PATH")
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        mc = model_config
        self.layout, self.config, self.model_config, self.split = layout, config, mc, split
        self.geometry = ChunkGeometry(
            mc.num_action_per_block, config.num_chunks, mc.encoders.vae_temporal_factor * mc.num_frame_per_block
        )
        self.image_size = tuple(mc.image_size)
        self.mosaic_spec = dataclasses.replace(layout.spec, crop_fraction=1.0)  # we crop before tiling
        cams = [c.key for c in layout.spec.cameras]
        self.sources = [_Source(s, self.geometry, cams) for s in sources]
        robot = next((i for i, s in enumerate(self.sources) if not all(s.video_only)), None)
        if robot is None:
            raise TrainingError("every data source is video-only: at least one robot dataset with actions is needed")
        held: dict[int, list[int]] = {}
        n = len(self.sources[robot].lengths)
        if config.holdout_fraction > 0 and n >= 2:
            k = max(1, round(config.holdout_fraction * n))
            held[robot] = list(range(n - k, n))
        self.items: list[np.ndarray] = []
        for i, src in enumerate(self.sources):
            eps = range(len(src.lengths))
            chosen = held.get(i, []) if split == "eval" else [e for e in eps if e not in held.get(i, [])]
            self.items.append(src.anchors(chosen))
        self.has_holdout = bool(held)
        if split == "train":
            for src, items in zip(self.sources, self.items, strict=True):
                if len(items) == 0:
                    raise TrainingError(
                        f"{src.spec.path}: no episode is long enough for a sample of "
                        f"{self.geometry.span + 1} frames ({config.num_chunks} chunk(s) of "
                        f"{self.geometry.actions_per_chunk} actions + 1 frame)"
                    )

    @property
    def sizes(self) -> list[int]:
        return [len(x) for x in self.items]

    def eval_keys(self, count: int) -> list[tuple[int, int, int]]:
        """Up to ``count`` evenly spaced items (deterministic, no augmentation)."""
        keys = []
        for s, items in enumerate(self.items):
            if len(items):
                idx = np.unique(np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int))
                keys += [(s, int(i), -1) for i in idx]
        return keys[:count]

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        s, item, aug_seed = key
        src = self.sources[s]
        episode, anchor = (int(v) for v in self.items[s][item])
        rng = np.random.default_rng(aug_seed) if aug_seed >= 0 and self.config.augment else None
        return self._sample(src, episode, anchor, rng)

    def _frames(self, src: _Source, episode: int, rows: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        spec = self.layout.spec
        frac = self.config.crop_fraction
        per_cam = {}
        offsets = rng.uniform(size=2) if rng is not None else np.array([0.5, 0.5])
        for cam in spec.cameras:
            frames = src.video(episode, cam.key)
            if rows[-1] >= len(frames):
                raise TrainingError(
                    f"{src.spec.path}: episode {episode} video {cam.key} has {len(frames)} frames, "
                    f"row {rows[-1]} requested"
                )
            padded = np.stack([resize_with_pad(frames[r], spec.request_size) for r in rows])
            h, w = padded.shape[1:3]
            ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
            top, left = int(offsets[0] * (h - ch)), int(offsets[1] * (w - cw))
            per_cam[cam.name] = np.ascontiguousarray(padded[:, top : top + ch, left : left + cw])
        video = build_mosaic(self.mosaic_spec, per_cam, self.image_size)
        if rng is not None and any(self.config.color_jitter):
            video = color_jitter(video, rng, self.config.color_jitter)
        return video

    def _sample(self, src: _Source, episode: int, anchor: int, rng: np.random.Generator | None) -> dict[str, Any]:
        g, mc, layout = self.geometry, self.model_config, self.layout
        video = self._frames(src, episode, anchor + g.frame_offsets(), rng)
        ep = src.lowdim(episode)
        nb, a_per, s_per = g.num_chunks, g.actions_per_chunk, mc.num_state_per_block
        state = np.zeros((nb * s_per, mc.max_state_dim), np.float32)
        state_raw = np.zeros(layout.state_dim, np.float32)
        raw = np.concatenate([ep.state[k] for k in layout.state_slices], 1) if ep.state else None
        if raw is not None and raw.shape[1] == layout.state_dim and np.isfinite(raw).all():
            vec = layout.state_vectors(raw)
            rows = anchor + g.state_offsets()
            state[:, : layout.state_dim] = np.repeat(normalize(vec[rows], layout.state_stats), s_per, axis=0)
            state_raw = vec[anchor].astype(np.float32)
        else:
            vec = None
        actions = np.zeros((nb * a_per, mc.action_dim), np.float32)
        mask = np.zeros_like(actions)
        actions_abs = np.zeros((nb * a_per, layout.action_dim), np.float32)
        has_action = not src.video_only[episode] and vec is not None and bool(ep.action)
        if has_action:
            act = np.concatenate([ep.action[k] for k in layout.action_slices], 1)[anchor : anchor + nb * a_per]
            if act.shape[1] != layout.action_dim or not np.isfinite(act).all():
                raise TrainingError(
                    f"{src.spec.path}: episode {episode} has {act.shape[1]} action columns or "
                    f"non-finite actions but is not flagged video-only"
                )
            chunk_anchor = anchor + (np.arange(nb * a_per) // a_per) * a_per
            target = layout.action_vectors(act, vec, chunk_anchor)
            actions[:, : layout.action_dim] = normalize(target, layout.action_stats)
            mask[:, : layout.action_dim] = 1.0
            absolute = target.copy()
            rel = layout.rel_state_col >= 0
            absolute[:, rel] += vec[chunk_anchor][:, layout.rel_state_col[rel]]
            actions_abs[:] = absolute
        return {
            "video": torch.from_numpy(video),
            "state": torch.from_numpy(state),
            "actions": torch.from_numpy(actions),
            "action_mask": torch.from_numpy(mask),
            "has_action": torch.tensor(float(has_action)),
            "state_raw": torch.from_numpy(state_raw),
            "actions_abs": torch.from_numpy(actions_abs),
            "prompt": layout.spec.format_prompt(ep.instruction or "do the task"),
        }


class MixtureSampler(Sampler):
    """Infinite, resumable stream of ``(source, item, aug_seed)`` keys.

    Position ``p`` of process ``rank`` (of ``world``) is global draw ``p * world + rank``; each draw picks a
    source with probability ``weight / sum(weights)`` and an item uniformly in it, from an RNG seeded by
    ``(seed, draw)``. ``start`` skips already-consumed positions (resume).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        seed: int = 0,
        start: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if len(sizes) != len(weights) or not sizes:
            raise TrainingError("mixture: one weight per data source is needed")
        if any(n <= 0 for n in sizes):
            raise TrainingError(f"mixture: every source needs at least one sample, got sizes {list(sizes)}")
        w = np.asarray(weights, np.float64)
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise TrainingError(f"mixture: weights must be > 0, got {list(weights)}")
        self.sizes, self.probs = list(sizes), w / w.sum()
        self.seed, self.start, self.rank, self.world = seed, start, rank, world

    def draw(self, position: int) -> tuple[int, int, int]:
        rng = np.random.default_rng([self.seed, position * self.world + self.rank])
        s = int(rng.choice(len(self.sizes), p=self.probs))
        return s, int(rng.integers(self.sizes[s])), int(rng.integers(2**31 - 1))

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        p = self.start
        while True:
            yield self.draw(p)
            p += 1


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "prompt"}
    out["prompt"] = [s["prompt"] for s in samples]
    return out
