"""Dataset <-> embodiment I/O: which dataset columns form the model's state/action vectors, how they are
normalised, and the files a checkpoint needs so the in-process backend reproduces the same transform.

Training applies exactly what ``runtime/`` applies at inference, in reverse where needed:

* state: dataset ``observation.state`` columns (gripper mapped to 0 = open .. 1 = closed with the spec's
  open/closed values, as ``runtime.observation.state_vector`` does), then q01/q99 normalisation;
* actions: relative columns become ``action[a + o] - state[a]`` (anchor ``a`` of the chunk) and are normalised
  with ``relative_stats_dreamzero.json``; absolute columns with ``stats.json`` (the inverse is
  ``runtime.postprocess.actions_from_model``);
* a checkpoint carries ``experiment_cfg/metadata.json`` (official layout, per dataset key) and
  ``embodiment.yaml`` (the spec with ``normalization.source: checkpoint``).

Without an explicit spec (``adapt`` on a new robot) the spec is derived from the dataset itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dreamzero_policy.core.errors import IoSpecError
from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.runtime.io_spec import IoSpec, NormStats, default_config_dir, parse_io_spec
from dreamzero_policy.runtime.postprocess import state_index

from .configs import TrainingError

__all__ = ["DataLayout", "build_layout", "derive_spec_data", "load_spec_data", "write_embodiment_files"]

GRIPPER_KEYS = ("gripper_position", "gripper")


@dataclass(frozen=True)
class DataLayout:
    """How one embodiment's dataset maps to the model vectors (all arrays float64 unless stated).

    state_slices / action_slices: dataset key -> (start, end) column span, in vector order.
    rel_state_col: (action_dim,) int, the state column added back for a relative action column, -1 if absolute.
    gripper_state_col / gripper_action_cols: columns mapped with the spec's gripper open/closed values.
    """

    spec: IoSpec
    spec_data: dict[str, Any]
    state_slices: dict[str, tuple[int, int]]
    action_slices: dict[str, tuple[int, int]]
    rel_state_col: np.ndarray
    gripper_state_col: int | None
    gripper_action_cols: tuple[int, ...]
    state_stats: NormStats
    action_stats: NormStats

    @property
    def state_dim(self) -> int:
        return self.spec.state_dim

    @property
    def action_dim(self) -> int:
        return self.spec.action_dim

    def gripper01(self, x: np.ndarray) -> np.ndarray:
        """Raw gripper values -> 0 = open .. 1 = closed (clipped), the runtime's convention."""
        s = self.spec
        return np.clip((np.asarray(x, np.float64) - s.gripper_open) / (s.gripper_closed - s.gripper_open), 0, 1)

    def state_vectors(self, state: np.ndarray) -> np.ndarray:
        """(T, state_dim) dataset state -> robot-convention state (gripper 0..1), float64."""
        out = np.array(state, dtype=np.float64, copy=True)
        if self.gripper_state_col is not None:
            out[:, self.gripper_state_col] = self.gripper01(out[:, self.gripper_state_col])
        return out

    def action_vectors(self, action: np.ndarray, state: np.ndarray, anchor_rows: np.ndarray) -> np.ndarray:
        """(T, action_dim) dataset actions -> model targets before normalisation: relative columns minus the
        state at each row's anchor (``anchor_rows`` (T,) indexes ``state``), gripper columns mapped to 0..1."""
        out = np.array(action, dtype=np.float64, copy=True)
        for col in self.gripper_action_cols:
            out[:, col] = self.gripper01(out[:, col])
        for col, scol in enumerate(self.rel_state_col):
            if scol >= 0:
                out[:, col] -= state[anchor_rows, scol]
        return out


def _q(stats: dict[str, Any], column: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        entry = stats[column]
        return np.asarray(entry["q01"], np.float64), np.asarray(entry["q99"], np.float64)
    except (KeyError, TypeError) as exc:
        raise TrainingError(f"{where}: no q01/q99 for {column!r} ({exc})") from None


def _feature_names(reader: DatasetReader, column: str, width: int) -> list[str]:
    names = reader.info.get("features", {}).get(column, {}).get("names")
    return list(names) if isinstance(names, list) and len(names) == width else [f"{column}.{i}" for i in range(width)]


def _slices(reader: DatasetReader, group: str) -> dict[str, tuple[int, int]]:
    items = [(k, (int(v["start"]), int(v["end"]))) for k, v in reader.modality.get(group, {}).items()]
    return dict(sorted(items, key=lambda kv: kv[1][0]))  # vector order = column order


def derive_spec_data(reader: DatasetReader, horizon: int, name: str | None = None) -> dict[str, Any]:
    """An embodiment spec (the YAML mapping) for a dataset without one: every video key is a camera (tiled
    2 per row; 3 views give the official non-DROID layout), state = ``observation.state`` (a 1-wide gripper key
    becomes the gripper, already 0 = open .. 1 = closed), actions = the ``action`` columns, relative where the
    dataset has relative statistics."""
    state_sl, action_sl = _slices(reader, "state"), _slices(reader, "action")
    if not state_sl or not action_sl:
        raise TrainingError(f"{reader.root}: deriving an embodiment needs state and action keys in modality.json")
    s_dim = max(e for _, e in state_sl.values())
    a_dim = max(e for _, e in action_sl.values())
    s_names = _feature_names(reader, "observation.state", s_dim)
    a_names = _feature_names(reader, "action", a_dim)
    gripper = None
    last_key = max(state_sl, key=lambda k: state_sl[k][0])
    if last_key in GRIPPER_KEYS and state_sl[last_key][1] - state_sl[last_key][0] == 1:
        gripper = s_names[-1]
    joints = s_names[:-1] if gripper else s_names
    relative = []
    for key in reader.relative_stats:
        if key not in state_sl:
            raise TrainingError(f"{reader.root}: relative action key {key!r} has no state key of the same name")
        relative += a_names[action_sl[key][0] : action_sl[key][1]]
    cams = reader.video_keys
    if not cams:
        raise TrainingError(f"{reader.root}: no video keys in modality.json")
    feats = reader.info.get("features", {})
    shape = feats.get(f"observation.images.{cams[0]}", {}).get("shape", [180, 320, 3])
    grid = [cams[i : i + 2] for i in range(0, len(cams), 2)] if len(cams) > 1 else [[cams[0]]]
    if len(grid[-1]) == 1 and len(cams) > 1:
        grid[-1].append(None)
    tag = reader.embodiment.get("embodiment_tag", "new_embodiment")
    fps = reader.fps
    execute = max(1, horizon // 3)
    data: dict[str, Any] = {
        "name": name or f"{tag}_derived",
        "embodiment": tag,
        "embodiment_tag": tag,
        "prompt_template": "{instruction}",
        "control": {"fps": fps, "action_horizon": horizon, "execute_horizon": execute},
        "video": {"frames_first_call": 1, "frames_per_call": 4, "frame_interval_s": round(execute / fps, 4)},
        "cameras": [{"name": c, "key": c, "topic": f"/{c}/image_raw"} for c in cams],
        "image": {"request_size": [int(shape[0]), int(shape[1])], "crop_fraction": 0.95, "mosaic": grid},
        "state": {"joints": joints},
        "action": {"space": "joint_position", "names": a_names, "relative": relative},
    }
    if gripper:
        data["state"]["gripper"] = {"joint": gripper, "open": 0.0, "closed": 1.0}
    return data


def load_spec_data(name_or_path: str | Path) -> dict[str, Any]:
    """The raw YAML mapping of ``config/embodiments/<name>.yaml`` or of a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = default_config_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise TrainingError(f"embodiment spec not found: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise TrainingError(f"{path}: not a YAML mapping")
    return data


def build_layout(reader: DatasetReader, spec_data: dict[str, Any], horizon: int) -> DataLayout:
    """Check ``spec_data`` against the dataset (dims, relative columns, rate, horizon) and collect the stats.

    Raises:
        TrainingError: naming the first mismatch.
    """
    try:
        spec = parse_io_spec({**spec_data, "normalization": {}})
    except IoSpecError as exc:
        raise TrainingError(f"embodiment spec: {exc}") from None
    state_sl, action_sl = _slices(reader, "state"), _slices(reader, "action")
    s_dim = max((e for _, e in state_sl.values()), default=0)
    a_dim = max((e for _, e in action_sl.values()), default=0)
    where = f"{reader.root} vs spec {spec.name!r}"
    if s_dim != spec.state_dim or a_dim != spec.action_dim:
        raise TrainingError(
            f"{where}: dataset state/action have {s_dim}/{a_dim} columns, the spec {spec.state_dim}/{spec.action_dim}"
        )
    if abs(reader.fps - spec.fps) > 1e-6:
        raise TrainingError(f"{where}: dataset fps {reader.fps} != spec control.fps {spec.fps}")
    if spec.action_horizon != horizon:
        raise TrainingError(
            f"{where}: spec control.action_horizon {spec.action_horizon} != the model's {horizon} actions per chunk"
        )
    rel_state_col = np.full(a_dim, -1, np.int64)
    for key in reader.relative_stats:
        if key not in state_sl or key not in action_sl:
            raise TrainingError(f"{where}: relative action key {key!r} needs a state and an action key of that name")
        (a0, a1), (s0, s1) = action_sl[key], state_sl[key]
        if a1 - a0 != s1 - s0:
            raise TrainingError(f"{where}: relative key {key!r} has {a1 - a0} action but {s1 - s0} state columns")
        rel_state_col[a0:a1] = np.arange(s0, s1)
    for col, name in enumerate(spec.action_names):
        runtime_col = state_index(spec, name) if spec.relative_action[col] else None
        data_col = int(rel_state_col[col]) if rel_state_col[col] >= 0 else None
        if runtime_col != data_col:
            raise TrainingError(
                f"{where}: action {name!r} is relative to state column {runtime_col} at runtime "
                f"but to {data_col} in the dataset's relative statistics"
            )
    gripper_state = spec.state_dim - 1 if spec.gripper_joint else None
    gripper_actions = tuple(
        c
        for c, n in enumerate(spec.action_names)
        if spec.gripper_joint and n in ("gripper", spec.gripper_joint) and rel_state_col[c] < 0
    )
    layout = DataLayout(
        spec,
        spec_data,
        state_sl,
        action_sl,
        rel_state_col,
        gripper_state,
        gripper_actions,
        NormStats(np.zeros(0), np.zeros(0)),
        NormStats(np.zeros(0), np.zeros(0)),
    )
    return _with_stats(layout, reader)


def _with_stats(layout: DataLayout, reader: DatasetReader) -> DataLayout:
    import dataclasses

    where = f"{reader.root}/meta"
    s01, s99 = _q(reader.stats, "observation.state", f"{where}/stats.json")
    a01, a99 = _q(reader.stats, "action", f"{where}/stats.json")
    if layout.gripper_state_col is not None:
        c = layout.gripper_state_col
        g = layout.gripper01(np.array([s01[c], s99[c]]))
        s01[c], s99[c] = g.min(), g.max()
    for c in layout.gripper_action_cols:
        g = layout.gripper01(np.array([a01[c], a99[c]]))
        a01[c], a99[c] = g.min(), g.max()
    for key, (a0, a1) in layout.action_slices.items():
        if layout.rel_state_col[a0] >= 0:
            r01, r99 = _q(reader.relative_stats, key, f"{where}/relative_stats_dreamzero.json")
            a01[a0:a1], a99[a0:a1] = r01, r99
    for name, arr in (("state", s01), ("state", s99), ("action", a01), ("action", a99)):
        if not np.all(np.isfinite(arr)):
            raise TrainingError(f"{where}: non-finite {name} statistics")
    state_stats, action_stats = NormStats(s01, s99), NormStats(a01, a99)
    spec = dataclasses.replace(layout.spec, state_stats=state_stats, action_stats=action_stats)
    return dataclasses.replace(layout, spec=spec, state_stats=state_stats, action_stats=action_stats)


def write_embodiment_files(folder: Path, layout: DataLayout) -> None:
    """``experiment_cfg/metadata.json`` (q01/q99 per dataset key, official layout) and ``embodiment.yaml``
    (the spec, reading its statistics from that metadata) into a checkpoint folder."""
    tag = layout.spec.embodiment_tag

    def per_key(slices: dict[str, tuple[int, int]], stats: NormStats) -> dict[str, Any]:
        return {k: {"q01": stats.q01[s:e].tolist(), "q99": stats.q99[s:e].tolist()} for k, (s, e) in slices.items()}

    meta = {
        tag: {
            "statistics": {
                "state": per_key(layout.state_slices, layout.state_stats),
                "action": per_key(layout.action_slices, layout.action_stats),
            }
        }
    }
    (folder / "experiment_cfg").mkdir(parents=True, exist_ok=True)
    (folder / "experiment_cfg" / "metadata.json").write_text(json.dumps(meta, indent=1))
    data = dict(layout.spec_data)
    data["normalization"] = {
        "source": "checkpoint",
        "state_keys": list(layout.state_slices),
        "action_keys": list(layout.action_slices),
    }
    (folder / "embodiment.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
