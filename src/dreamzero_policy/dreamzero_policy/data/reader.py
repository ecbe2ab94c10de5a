"""Reading a converted dataset back (the layout of :mod:`dreamzero_policy.data.layout`).

Small and dependency-light so tests, ``inspect`` and a training loader can share it. It checks
the tree against ``meta/info.json`` (episode files present, lengths match) on access.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dreamzero_policy.core.errors import DatasetError
from dreamzero_policy.data.layout import LANGUAGE_COLUMN, data_path, video_path
from dreamzero_policy.data.video import read_video


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: {exc}") from exc


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: {exc}") from exc


@dataclass
class Episode:
    index: int
    instruction: str
    state: dict[str, np.ndarray]  # state key -> (T, d) float32
    action: dict[str, np.ndarray]  # action key -> (T, d) float32 (NaN for video-only episodes)
    timestamp: np.ndarray  # (T,) float32 s
    columns: dict[str, np.ndarray]  # every parquet column as an array
    video_only: bool


class DatasetReader:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta = self.root / "meta"
        if not (meta / "info.json").is_file():
            raise DatasetError(f"{self.root} is not a dataset (no meta/info.json)")
        self.info = _json(meta / "info.json")
        self.modality = _json(meta / "modality.json")
        self.stats = _json(meta / "stats.json")
        self.relative_stats = _json(meta / "relative_stats_dreamzero.json")
        self.embodiment = _json(meta / "embodiment.json")
        self.tasks = {t["task_index"]: t["task"] for t in _jsonl(meta / "tasks.jsonl")}
        self.episodes = _jsonl(meta / "episodes.jsonl")
        report = meta / "conversion_report.json"
        self.report = _json(report) if report.is_file() else {}

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def video_keys(self) -> list[str]:
        return list(self.modality.get("video", {}))

    def episode(self, i: int) -> Episode:
        meta = self.episodes[i]
        path = data_path(self.root, meta["episode_index"])
        if not path.is_file():
            raise DatasetError(f"missing episode file {path}")
        table = pq.read_table(path)
        if table.num_rows != meta["length"]:
            raise DatasetError(f"{path}: {table.num_rows} rows, episodes.jsonl says {meta['length']}")
        cols: dict[str, np.ndarray] = {}
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(col.type):  # float vectors
                cols[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
            else:
                cols[name] = col.to_numpy(zero_copy_only=False)

        def split(group: str) -> dict[str, np.ndarray]:
            return {
                k: cols[v["original_key"]][:, v["start"] : v["end"]]
                for k, v in self.modality.get(group, {}).items()
                if v["original_key"] in cols
            }

        instruction = str(cols[LANGUAGE_COLUMN][0]) if LANGUAGE_COLUMN in cols and len(table) else ""
        return Episode(
            meta["episode_index"],
            instruction,
            split("state"),
            split("action"),
            cols["timestamp"],
            cols,
            bool(meta.get("video_only", False)),
        )

    def video(self, i: int, key: str) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames of video ``key`` in episode ``i``."""
        path = video_path(self.root, self.episodes[i]["episode_index"], key)
        if not path.is_file():
            raise DatasetError(f"missing video {path}")
        return read_video(path)
