"""Strict state-dict loading with errors that name the first bad tensor, and our sharded safetensors format.

Our format (a folder): ``config.json`` (the model config, JSON data only: nothing is imported or executed from it),
``<component>.safetensors`` or ``<component>-0000N-of-0000M.safetensors`` shards + ``<component>.index.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..core.errors import DreamZeroError

__all__ = ["CheckpointError", "load_component", "load_state_dict_checked", "save_component"]


class CheckpointError(DreamZeroError, ValueError):
    """A checkpoint is corrupt or does not fit the model; the message names the first bad tensor."""


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], assign: bool = False) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` after checking, in the model's own order, for the first
    missing, mis-shaped or non-finite tensor, and then the first unexpected one.

    Raises:
        CheckpointError: naming that tensor (and its expected/actual shape).
    """
    expected = model.state_dict()
    for name, ref in expected.items():
        if name not in state_dict:
            raise CheckpointError(f"missing tensor {name!r} (expected shape {tuple(ref.shape)})")
        got = state_dict[name]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"tensor {name!r} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointError(f"tensor {name!r} has shape {tuple(got.shape)}, the model expects {tuple(ref.shape)}")
        if got.is_floating_point() and got.device.type != "meta" and not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"tensor {name!r} holds non-finite values (corrupt checkpoint?)")
    for name in state_dict:
        if name not in expected:
            shape = tuple(state_dict[name].shape)
            raise CheckpointError(f"unexpected tensor {name!r} (shape {shape}) not in the model")
    model.load_state_dict(dict(state_dict), strict=True, assign=assign)


def save_component(
    state_dict: Mapping[str, torch.Tensor], folder: Path, name: str, max_shard_bytes: int = 4 << 30
) -> None:
    """Write ``name`` as one safetensors file, or as shards + ``name.index.json`` above ``max_shard_bytes``."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in state_dict.items():
        t = v.detach().contiguous().cpu()
        # tied weights (e.g. UMT5 shared/embed_tokens) share storage; safetensors stores each name separately
        ptr = t.untyped_storage().data_ptr()
        tensors[k] = t.clone() if ptr in seen else t
        seen.add(ptr)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = t
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(folder / f"{name}.safetensors"))
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"{name}-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / fname))
        weight_map.update(dict.fromkeys(shard, fname))
    (folder / f"{name}.index.json").write_text(json.dumps({"weight_map": weight_map}, indent=1))


def load_component(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """Read a component written by ``save_component`` (weights only, via safetensors)."""
    single = folder / f"{name}.safetensors"
    index = folder / f"{name}.index.json"
    files: list[Path]
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a valid shard index ({exc})") from None
        files = [folder / f for f in dict.fromkeys(weight_map.values())]
    else:
        raise CheckpointError(f"{folder}: no {name}.safetensors or {name}.index.json")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            out.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{f}: unreadable safetensors file ({exc})") from None
    return out
