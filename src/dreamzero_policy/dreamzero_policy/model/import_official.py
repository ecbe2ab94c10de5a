"""Import a whole official DreamZero checkpoint: DiT, LoRA merge, UMT5 text encoder, CLIP vision tower, Wan VAE,
normalisation statistics.

Official layout (``shared/reference/dreamzero-architecture.md`` §2): every tensor lives under ``action_head.``:
``model.`` (the DiT, original Wan names; converted by ``convert_official``), ``text_encoder.`` (Wan's umT5 encoder ->
transformers ``UMT5EncoderModel``), ``image_encoder.model.`` (open-clip ViT-H visual tower -> transformers
``CLIPVisionModel``), ``vae.model.`` (Wan2.1/2.2 VAE -> diffusers ``AutoencoderKLWan``). LoRA-trained checkpoints
(peft) put the DiT under ``action_head.model.base_model.model.`` with ``lora_A/lora_B`` pairs; we merge them.

Safety: weights are read with safetensors only; ``config.json`` and ``experiment_cfg/metadata.json`` are parsed as
JSON data. ``_target_`` (and the other Hydra instantiation keys) are dropped and reported, never resolved.

Public API:
    ``read_official_weights(path) -> dict[str, Tensor]``  (``model.safetensors`` or index + shards, or one file)
    ``merge_lora(state_dict, scaling=1.0) -> (dict, n_merged)``  (names normalised, W += scaling * B @ A)
    ``load_official_state_dict(sd, dit=, text_encoder=, image_encoder=, vae=, skip=(), assign=) -> ImportReport``
    ``read_official_config(path) -> (config, ignored_target_paths)``;  ``parse_official_metadata(data_or_path)``
    ``load_official_checkpoint(folder, base=None, lora_scaling=1.0, base_prefix="") -> OfficialCheckpoint``
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .checkpoint import CheckpointError, load_state_dict_checked
from .convert_official import convert_official_state_dict
from .convert_official_encoders import (
    DROPPED_IMAGE_ENCODER_TENSORS,
    convert_image_encoder,
    convert_text_encoder,
    convert_vae,
)

__all__ = [
    "COMPONENT_PREFIXES",
    "DROPPED_IMAGE_ENCODER_TENSORS",
    "EmbodimentStats",
    "ImportReport",
    "OfficialCheckpoint",
    "convert_image_encoder",
    "convert_text_encoder",
    "convert_vae",
    "load_official_checkpoint",
    "load_official_state_dict",
    "merge_lora",
    "parse_official_metadata",
    "read_official_config",
    "read_official_weights",
    "split_components",
]

COMPONENT_PREFIXES: dict[str, str] = {
    "dit": "action_head.model.",
    "text_encoder": "action_head.text_encoder.",
    "image_encoder": "action_head.image_encoder.model.",
    "vae": "action_head.vae.model.",
}
# Hydra instantiation keys: code references, never resolved here.
_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})

# --- LoRA ------------------------------------------------------------------------------------------------

_LORA = re.compile(r"(.+)\.lora_([AB])(?:\.([^.]+))?\.weight\Z")
_UNSUPPORTED_PEFT = re.compile(r"\.(lora_embedding_[AB]|lora_magnitude_vector|lora_[AB]\.[^.]+\.bias)\b")


def _normalise_name(key: str) -> str:
    """Strip peft's wrapper names: ``base_model.model.`` (peft model) and ``.base_layer`` (peft >= 0.7 layers)."""
    key = key.replace(".base_model.model.", ".")
    key = key.removeprefix("base_model.model.")
    return key.replace(".base_layer.", ".")


def merge_lora(state_dict: Mapping[str, torch.Tensor], scaling: float = 1.0) -> tuple[dict[str, torch.Tensor], int]:
    """Normalise peft names and fold every ``lora_A``/``lora_B`` pair into its base weight: W + scaling * B @ A.

    Official LoRA (peft 0.5, rank 4, alpha 4) has scaling 1. Works on meta tensors (shape checks only).
    Returns (state dict with no LoRA tensors, number of merged pairs).

    Raises:
        CheckpointError: an unpaired or mis-shaped LoRA tensor, a missing base weight, several adapters, or a
            name that is present both with and without ``.base_layer`` (each names the tensor).
    """
    if not math.isfinite(scaling):
        raise CheckpointError(f"LoRA scaling must be finite, got {scaling!r}")
    plain: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    adapters: set[str] = set()
    for key, tensor in state_dict.items():
        if _UNSUPPORTED_PEFT.search(key):
            raise CheckpointError(f"unsupported peft tensor {key!r} (only plain LoRA A/B pairs are merged)")
        name = _normalise_name(key)
        m = _LORA.match(name)
        if m:
            adapters.add(m[3] or "")
            if len(adapters) > 1:
                raise CheckpointError(f"LoRA tensor {key!r}: several adapters {sorted(adapters)}; merge one at a time")
            lora.setdefault(m[1] + ".weight", {})[m[2]] = (key, tensor)
            continue
        if name in plain:
            raise CheckpointError(f"tensor {key!r} duplicates {name!r} after stripping peft wrapper names")
        plain[name] = tensor
    for target, pair in lora.items():
        if set(pair) != {"A", "B"}:
            only = next(iter(pair.values()))[0]
            raise CheckpointError(f"LoRA tensor {only!r} has no lora_{'B' if 'A' in pair else 'A'} partner")
        (a_key, a), (b_key, b) = pair["A"], pair["B"]
        if target not in plain:
            raise CheckpointError(
                f"LoRA tensor {a_key!r}: base weight {target!r} missing "
                "(a LoRA-only checkpoint needs its base checkpoint: pass base=...)"
            )
        w = plain[target]
        if (
            a.ndim != 2
            or b.ndim != 2
            or w.ndim != 2
            or a.shape[0] != b.shape[1]
            or a.shape[1] != w.shape[1]
            or b.shape[0] != w.shape[0]
        ):
            raise CheckpointError(
                f"LoRA pair {a_key!r} {tuple(a.shape)} / {b_key!r} {tuple(b.shape)} does not fit "
                f"base {target!r} {tuple(w.shape)} (expected A [r, in], B [out, r])"
            )
        delta = b.to(torch.float32) @ a.to(torch.float32)  # float32 product: bf16 checkpoints lose less precision
        plain[target] = (w.to(torch.float32) + scaling * delta).to(w.dtype)
    return plain, len(lora)


# --- splitting and loading ---------------------------------------------------------------------------------


def split_components(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Official names -> {component: {name without its prefix: tensor}}; a key outside every prefix is an error."""
    parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in COMPONENT_PREFIXES}
    for key, tensor in state_dict.items():
        for name, prefix in COMPONENT_PREFIXES.items():
            if key.startswith(prefix):
                parts[name][key[len(prefix) :]] = tensor
                break
        else:
            prefixes = list(COMPONENT_PREFIXES.values())
            raise CheckpointError(f"unexpected official tensor {key!r}: not under any of {prefixes}")
    return {k: v for k, v in parts.items() if v}


@dataclass(frozen=True)
class ImportReport:
    """What ``load_official_state_dict`` did: tensors loaded per component (our names), official tensors
    deliberately dropped (see ``DROPPED_IMAGE_ENCODER_TENSORS``), components skipped on request."""

    loaded: dict[str, int]
    dropped: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def _image_prefix(model: nn.Module) -> str:
    # transformers releases differ on whether CLIPVisionModel's state dict keeps the ``vision_model.`` prefix
    return "vision_model." if any(k.startswith("vision_model.") for k in model.state_dict()) else ""


def load_official_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    dit: nn.Module | None = None,
    text_encoder: nn.Module | None = None,
    image_encoder: nn.Module | None = None,
    vae: nn.Module | None = None,
    skip: Iterable[str] = (),
    assign: bool = False,
) -> ImportReport:
    """Load official tensors (LoRA already merged, see ``merge_lora``) strictly into our modules.

    Every component present in ``state_dict`` must be loaded into a given module or named in ``skip``; every
    module given must find its component. The VAE layout (Wan2.1/2.2) comes from ``vae.config``.

    Raises:
        CheckpointError: naming the component and the first missing, unexpected or mis-shaped tensor.
    """
    parts = split_components(state_dict)
    modules = {"dit": dit, "text_encoder": text_encoder, "image_encoder": image_encoder, "vae": vae}
    skip = tuple(skip)
    unknown = sorted(set(skip) - set(modules))
    if unknown:
        raise ValueError(f"skip names unknown component(s) {unknown}; known: {list(modules)}")
    for name in parts:
        if modules[name] is None and name not in skip:
            first = next(iter(parts[name]))
            raise CheckpointError(
                f"official tensor {COMPONENT_PREFIXES[name] + first!r} would be left over: "
                f"pass a {name} module or skip=({name!r},)"
            )
    loaded: dict[str, int] = {}
    dropped: list[str] = []
    for name, module in modules.items():
        if module is None:
            continue
        if name not in parts:
            raise CheckpointError(f"the checkpoint has no {name} tensors (prefix {COMPONENT_PREFIXES[name]!r})")
        sd = parts[name]
        try:
            if name == "dit":
                converted = convert_official_state_dict(sd, prefix="")
            elif name == "text_encoder":
                converted = convert_text_encoder(sd)
            elif name == "image_encoder":
                converted, gone = convert_image_encoder(sd, _image_prefix(module))
                dropped += [COMPONENT_PREFIXES[name] + k for k in gone]
            else:
                conf = module.config  # type: ignore[union-attr]
                converted = convert_vae(sd, int(conf.num_res_blocks), bool(conf.is_residual))
            if assign:  # assigned tensors become the parameters: no transposed views (W[0].T) as weights
                converted = {k: v.contiguous() for k, v in converted.items()}
            load_state_dict_checked(module, converted, assign=assign)
            if name == "text_encoder" and assign and hasattr(module, "tie_weights"):
                module.tie_weights()  # assign replaces each name's Parameter, which unties shared/embed_tokens
        except CheckpointError as exc:
            raise CheckpointError(f"[{name}] {exc}") from None
        loaded[name] = len(converted)
    return ImportReport(loaded=loaded, dropped=tuple(dropped), skipped=tuple(s for s in skip if s in parts))


# --- files: weights, config, metadata ------------------------------------------------------------------------


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from None


def read_official_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """One ``.safetensors`` file, or a folder with ``model.safetensors`` or ``model.safetensors.index.json`` + shards
    (HF ``save_pretrained`` layout). Pickle formats (``.bin``, ``.pt``, ``.pth``) are refused: safetensors only."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path}: only safetensors files are loaded (convert pickle checkpoints first)")
        return _load_safetensors(path)
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return _load_safetensors(single)
    if not index.is_file():
        raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map must map tensor names to file names")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise CheckpointError(f"{index}: not a valid shard index ({exc})") from None
    out: dict[str, torch.Tensor] = {}
    for fname in dict.fromkeys(weight_map.values()):
        shard = path / fname
        if Path(fname).name != fname:
            raise CheckpointError(f"{index}: shard name {fname!r} is not a plain file name")
        for key, tensor in _load_safetensors(shard).items():
            if key in out:
                raise CheckpointError(f"{shard}: tensor {key!r} is also in another shard")
            out[key] = tensor
    for key, fname in weight_map.items():
        if key not in out:
            raise CheckpointError(f"{index}: tensor {key!r} is listed in {fname} but that shard lacks it")
    return out


def _strip_hydra(node: Any, path: str, ignored: list[str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in _HYDRA_KEYS:
                ignored.append(f"{path}.{k}" if path else k)
                continue
            out[k] = _strip_hydra(v, f"{path}.{k}" if path else str(k), ignored)
        return out
    if isinstance(node, list):
        return [_strip_hydra(v, f"{path}[{i}]", ignored) for i, v in enumerate(node)]
    return node


def _read_json(data_or_path: str | Path | Mapping[str, Any], what: str) -> Any:
    """A JSON file's content (or a mapping given directly), as data only."""
    if isinstance(data_or_path, Mapping):
        return dict(data_or_path)
    try:
        return json.loads(Path(data_or_path).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{data_or_path}: unreadable {what} ({exc})") from None


def read_official_config(data_or_path: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``config.json`` as plain data with every Hydra instantiation key (``_target_`` etc.) removed.

    Returns (config, JSON paths of the removed keys). Nothing named in the config is imported or executed.
    """
    data = _read_json(data_or_path, "config")
    if not isinstance(data, dict):
        raise CheckpointError(f"official config must be a JSON object, got {type(data).__name__}")
    ignored: list[str] = []
    return _strip_hydra(data, "", ignored), ignored


@dataclass(frozen=True)
class EmbodimentStats:
    """One embodiment of ``experiment_cfg/metadata.json``: per key, the float64 stats vectors
    (``q01``, ``q99`` required; ``min``, ``max``, ``mean``, ``std`` when present) and the raw ``modalities`` data."""

    tag: str
    state: dict[str, dict[str, np.ndarray]]
    action: dict[str, dict[str, np.ndarray]]
    modalities: dict[str, Any] = field(default_factory=dict)

    def bounds(self, group: str, keys: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(q01, q99) of ``group`` ("state"/"action") concatenated in the order of ``keys``."""
        table = self.state if group == "state" else self.action if group == "action" else None
        if table is None:
            raise ValueError(f"group must be 'state' or 'action', got {group!r}")
        keys = list(keys)
        missing = [k for k in keys if k not in table]
        if missing:
            raise KeyError(f"{self.tag}: no {group} statistics for {missing} (have {sorted(table)})")
        return (np.concatenate([table[k]["q01"] for k in keys]), np.concatenate([table[k]["q99"] for k in keys]))


_STATS = ("q01", "q99", "min", "max", "mean", "std")


def _vector(value: Any, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=object).reshape(-1) if isinstance(value, list) else None
    if arr is None or arr.size == 0 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in arr):
        raise CheckpointError(f"metadata {where}: expected a non-empty list of numbers")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise CheckpointError(f"metadata {where}: non-finite values")
    return out


def _group(table: Any, where: str) -> dict[str, dict[str, np.ndarray]]:
    if not isinstance(table, dict):
        raise CheckpointError(f"metadata {where}: expected an object of per-key statistics")
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, stats in table.items():
        if not isinstance(stats, dict) or "q01" not in stats or "q99" not in stats:
            raise CheckpointError(f"metadata {where}.{key}: needs q01 and q99")
        vecs = {s: _vector(stats[s], f"{where}.{key}.{s}") for s in _STATS if s in stats}
        sizes = {s: v.size for s, v in vecs.items()}
        if len(set(sizes.values())) != 1:
            raise CheckpointError(f"metadata {where}.{key}: statistics differ in length {sizes}")
        bad = np.nonzero(vecs["q99"] < vecs["q01"])[0]
        if bad.size:
            raise CheckpointError(f"metadata {where}.{key}: q99 < q01 at indices {bad.tolist()}")
        out[str(key)] = vecs
    return out


def parse_official_metadata(data_or_path: str | Path | Mapping[str, Any]) -> dict[str, EmbodimentStats]:
    """``experiment_cfg/metadata.json`` -> {embodiment tag: stats}. Layout: ``{tag: {"statistics": {"state"|"action":
    {key: {"q01": [...], ...}}}, "modalities": {...}}}``. Parsed as JSON data only."""
    data = _read_json(data_or_path, "metadata")
    if not isinstance(data, dict) or not data:
        raise CheckpointError("metadata must be a non-empty JSON object keyed by embodiment tag")
    out: dict[str, EmbodimentStats] = {}
    for tag, entry in data.items():
        stats = entry.get("statistics") if isinstance(entry, dict) else None
        if not isinstance(stats, dict):
            raise CheckpointError(f"metadata {tag}: missing 'statistics'")
        modalities = entry.get("modalities", {})
        out[str(tag)] = EmbodimentStats(
            tag=str(tag),
            state=_group(stats.get("state"), f"{tag}.statistics.state"),
            action=_group(stats.get("action"), f"{tag}.statistics.action"),
            modalities=_strip_hydra(modalities, "", []) if isinstance(modalities, dict) else {},
        )
    return out


# --- whole checkpoint folder -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialCheckpoint:
    """An official checkpoint read as data: official-name tensors (peft names normalised, LoRA merged), the config
    without instantiation keys, the JSON paths of the keys dropped from it, and per-embodiment statistics."""

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    ignored_config_keys: tuple[str, ...]
    metadata: dict[str, EmbodimentStats]
    lora_merged: int

    def load_into(self, **modules: Any) -> ImportReport:
        """``load_official_state_dict(self.state_dict, **modules)``."""
        return load_official_state_dict(self.state_dict, **modules)


def load_official_checkpoint(
    folder: str | Path,
    base: str | Path | Mapping[str, torch.Tensor] | None = None,
    lora_scaling: float = 1.0,
    base_prefix: str = "",
) -> OfficialCheckpoint:
    """Read an official checkpoint folder (weights, ``config.json``, ``experiment_cfg/metadata.json``).

    ``base`` (a safetensors folder/file or a state dict) is laid under the checkpoint's tensors first, for
    LoRA-only checkpoints (``save_lora_only``) that hold just the LoRA pairs and the action/state heads;
    ``base_prefix`` is prepended to its names (``"action_head.model."`` for a bare Wan DiT file). Tensors keep
    their stored dtype (official files may be bf16); ``load_state_dict`` without ``assign`` casts to the module's.
    """
    folder = Path(folder)
    tensors = {_normalise_name(k): v for k, v in read_official_weights(folder).items()}
    if base is not None:
        base_sd = base if isinstance(base, Mapping) else read_official_weights(base)
        tensors = {**{_normalise_name(base_prefix + k): v for k, v in base_sd.items()}, **tensors}
    merged, n = merge_lora(tensors, scaling=lora_scaling)
    config: dict[str, Any] = {}
    ignored: list[str] = []
    cfg_path = folder / "config.json" if folder.is_dir() else None
    if cfg_path is not None and cfg_path.is_file():
        config, ignored = read_official_config(cfg_path)
    meta_path = folder / "experiment_cfg" / "metadata.json" if folder.is_dir() else None
    metadata = parse_official_metadata(meta_path) if meta_path is not None and meta_path.is_file() else {}
    return OfficialCheckpoint(
        state_dict=merged, config=config, ignored_config_keys=tuple(ignored), metadata=metadata, lora_merged=n
    )
