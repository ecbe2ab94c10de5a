"""The GEAR/LeRobot v2.1 dataset tree, written into a staging directory and published atomically.

::

    <root>/data/chunk-000/episode_000000.parquet
    <root>/videos/chunk-000/observation.images.<key>/episode_000000.mp4
    <root>/meta/{info.json, modality.json, embodiment.json, stats.json,
                 relative_stats_dreamzero.json, tasks.jsonl, episodes.jsonl, conversion_report.json}

Parquet columns: ``observation.state`` and ``action`` (fixed-size float32 lists, keys concatenated
in mapping order, sliced back by ``modality.json``), ``timestamp`` (float32 s = frame/fps),
``frame_index``, ``episode_index``, ``index``, ``task_index`` (int64),
``annotation.language.action_text`` (string), and provenance: ``sync.stamp_ns`` (the frame's ROS
time) and ``sync.<key>.stamp_ns`` (stamp of the sample each key/video used). Video-only episodes
(no actions recorded) hold NaN actions and ``"video_only": true`` in ``episodes.jsonl``.

Nothing appears at ``<root>`` until :meth:`DatasetWriter.publish`; a failed run leaves only a
removed staging directory, so a partial dataset can never be mistaken for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dreamzero_policy.core.errors import DatasetError
from dreamzero_policy.data.mapping import Mapping

CHUNK_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
LANGUAGE_COLUMN = "annotation.language.action_text"


def video_column(key: str) -> str:
    return f"observation.images.{key}"


def sync_column(key: str) -> str:
    """A sync stamp's parquet column: the grid's ``stamp_ns`` -> ``sync.stamp_ns``, ``X`` -> ``sync.X.stamp_ns``."""
    return "sync.stamp_ns" if key == "stamp_ns" else f"sync.{key}.stamp_ns"


def sync_key(column: str) -> str:
    """The inverse of :func:`sync_column`."""
    return "stamp_ns" if column == "sync.stamp_ns" else column.removeprefix("sync.").removesuffix(".stamp_ns")


def data_path(root: Path, episode: int) -> Path:
    return root / DATA_PATH.format(episode_chunk=episode // CHUNK_SIZE, episode_index=episode)


def video_path(root: Path, episode: int, key: str) -> Path:
    return root / VIDEO_PATH.format(
        episode_chunk=episode // CHUNK_SIZE, video_key=video_column(key), episode_index=episode
    )


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _vector_column(values: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


class DatasetWriter:
    """Stages one dataset; ``publish`` moves it into place, ``abort`` deletes it."""

    def __init__(self, root: Path, mapping: Mapping, overwrite: bool = False) -> None:
        self.root = root.resolve()
        self.mapping = mapping
        self.overwrite = overwrite
        if self.root.exists() and not overwrite:
            raise DatasetError(
                f"{self.root} already exists; pass --overwrite to replace it (it is only replaced on success)"
            )
        self.stage = self.root.parent / f".{self.root.name}.partial-{os.getpid()}"
        if self.stage.exists():
            shutil.rmtree(self.stage)
        self.stage.mkdir(parents=True)
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict[str, Any]] = []
        self.total_frames = 0

    def task_index(self, text: str) -> int:
        return self.tasks.setdefault(text, len(self.tasks))

    def write_episode(
        self,
        episode: int,
        instruction: str,
        state: np.ndarray | None,
        action: np.ndarray | None,
        sync: dict[str, np.ndarray],
        extra: dict[str, Any],
    ) -> None:
        """Write one episode's parquet; ``sync['stamp_ns']`` is the (T,) grid, other entries per key."""
        self.write_episode_blocks(episode, instruction, [(state, action, sync)], extra)

    def write_episode_blocks(
        self,
        episode: int,
        instruction: str,
        blocks: Iterable[tuple[np.ndarray | None, np.ndarray | None, dict[str, np.ndarray]]],
        extra: dict[str, Any],
    ) -> None:
        """Write one episode from consecutive (state, action, sync) row blocks, one parquet row group each.

        A long episode streamed from disk (``live.py``) is never held in memory as a whole.
        """
        task = self.task_index(instruction)
        path = data_path(self.stage, episode)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        out: pq.ParquetWriter | None = None
        try:
            for state, action, sync in blocks:
                rows = len(sync["stamp_ns"])
                if rows == 0:
                    continue
                table = pa.table(self._columns(episode, task, instruction, n, rows, state, action, sync))
                if out is None:
                    out = pq.ParquetWriter(path, table.schema, compression="zstd")
                out.write_table(table)
                n += rows
        finally:
            if out is not None:
                out.close()
        if n == 0:
            raise DatasetError(f"episode {episode} has no frames")
        self.total_frames += n
        self.episodes.append({"episode_index": episode, "tasks": [instruction], "length": n, **extra})

    def _columns(
        self,
        episode: int,
        task: int,
        instruction: str,
        first: int,
        n: int,
        state: np.ndarray | None,
        action: np.ndarray | None,
        sync: dict[str, np.ndarray],
    ) -> dict[str, pa.Array]:
        frames = np.arange(first, first + n, dtype=np.int64)
        cols: dict[str, pa.Array] = {}
        if state is not None:
            cols["observation.state"] = _vector_column(state)
        if action is not None:
            cols["action"] = _vector_column(action)
        cols["timestamp"] = pa.array((frames / self.mapping.fps).astype(np.float32))
        cols["frame_index"] = pa.array(frames)
        cols["episode_index"] = pa.array(np.full(n, episode, np.int64))
        cols["index"] = pa.array(frames + self.total_frames)
        cols["task_index"] = pa.array(np.full(n, task, np.int64))
        cols[LANGUAGE_COLUMN] = pa.array([instruction] * n, pa.string())
        for key, stamps in sync.items():
            cols[sync_column(key)] = pa.array(stamps.astype(np.int64))
        return cols

    def _features(
        self, state_names: list[str], action_names: list[str], sizes: dict[str, tuple[int, int]]
    ) -> dict[str, Any]:
        feats: dict[str, Any] = {}
        if state_names:
            feats["observation.state"] = {"dtype": "float32", "shape": [len(state_names)], "names": state_names}
        if action_names:
            feats["action"] = {"dtype": "float32", "shape": [len(action_names)], "names": action_names}
        for key, (w, h) in sizes.items():
            enc = self.mapping.video_encoding
            feats[video_column(key)] = {
                "dtype": "video",
                "shape": [h, w, 3],
                "names": ["height", "width", "channels"],
                "video_info": {
                    "video.fps": self.mapping.fps,
                    "video.codec": "h264" if "264" in enc.codec else enc.codec,
                    "video.pix_fmt": enc.pix_fmt,
                    "video.is_depth_map": False,
                    "has_audio": False,
                },
            }
        feats[LANGUAGE_COLUMN] = {"dtype": "string", "shape": [1]}
        for name in ("frame_index", "episode_index", "index", "task_index"):
            feats[name] = {"dtype": "int64", "shape": [1]}
        feats["timestamp"] = {"dtype": "float32", "shape": [1]}
        return feats

    def _modality(
        self, state_slices: dict[str, tuple[int, int]], action_slices: dict[str, tuple[int, int]]
    ) -> dict[str, Any]:
        def entry(column: str, span: tuple[int, int]) -> dict[str, Any]:
            return {
                "original_key": column,
                "start": span[0],
                "end": span[1],
                "rotation_type": None,
                "absolute": True,
                "dtype": "float32",
                "range": None,
            }

        return {
            "state": {k: entry("observation.state", s) for k, s in state_slices.items()},
            "action": {k: entry("action", s) for k, s in action_slices.items()},
            "video": {v.key: {"original_key": video_column(v.key)} for v in self.mapping.video},
            "annotation": {"language.action_text": {"original_key": LANGUAGE_COLUMN}},
        }

    def write_meta(
        self,
        state_slices: dict[str, tuple[int, int]],
        action_slices: dict[str, tuple[int, int]],
        state_names: list[str],
        action_names: list[str],
        video_sizes: dict[str, tuple[int, int]],
        stats: dict[str, Any],
        relative_stats: dict[str, Any],
        report: dict[str, Any],
    ) -> None:
        meta = self.stage / "meta"
        n_eps = len(self.episodes)
        fps: float | int = int(self.mapping.fps) if float(self.mapping.fps).is_integer() else self.mapping.fps
        _write_json(
            meta / "info.json",
            {
                "codebase_version": "v2.1",
                "robot_type": self.mapping.robot_type,
                "total_episodes": n_eps,
                "total_frames": self.total_frames,
                "total_tasks": len(self.tasks),
                "total_videos": n_eps * len(self.mapping.video),
                "total_chunks": (n_eps + CHUNK_SIZE - 1) // CHUNK_SIZE,
                "chunks_size": CHUNK_SIZE,
                "fps": fps,
                "splits": {"train": f"0:{n_eps}"},
                "data_path": DATA_PATH,
                "video_path": VIDEO_PATH,
                "features": self._features(state_names, action_names, video_sizes),
                "video_only_episodes": [e["episode_index"] for e in self.episodes if e.get("video_only")],
            },
        )
        _write_json(meta / "modality.json", self._modality(state_slices, action_slices))
        _write_json(meta / "embodiment.json", {"embodiment_tag": self.mapping.embodiment_tag})
        _write_json(meta / "stats.json", stats)
        _write_json(meta / "relative_stats_dreamzero.json", relative_stats)
        _write_jsonl(meta / "tasks.jsonl", [{"task_index": i, "task": t} for t, i in self.tasks.items()])
        _write_jsonl(meta / "episodes.jsonl", self.episodes)
        _write_json(meta / "conversion_report.json", report)

    def publish(self) -> Path:
        """Atomically move the staged tree to ``root`` (replacing an old one only now)."""
        old = None
        if self.root.exists():
            if not self.overwrite:
                raise DatasetError(f"{self.root} appeared while converting; not replacing it")
            old = self.root.parent / f".{self.root.name}.old-{os.getpid()}"
            self.root.rename(old)
        self.stage.rename(self.root)
        if old is not None:
            shutil.rmtree(old)
        return self.root

    def abort(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
