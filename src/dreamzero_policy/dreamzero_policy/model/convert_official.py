"""Official DreamZero DiT state dict (original Wan names under ``action_head.model.``) -> our ``DreamZeroDiT``.

The mapping is a table of (official regex, our template, transform), so new variants only add rows. Transforms:
``CategorySpecificLinear`` stores ``W`` as [1, in, out] (applied as x @ W[0] + b[0]); ours are ``nn.Linear``
([out, in]), so W -> W[0].T and b -> b[0]. Works on meta tensors (for manifest checks).

Public API:
    ``official_to_ours(key) -> (our_key, transform_name)``  (raises ``CheckpointError`` for an unknown key)
    ``convert_official_state_dict(sd, prefix=OFFICIAL_DIT_PREFIX) -> dict[str, Tensor]``
    ``load_official_dit(model, sd, prefix=OFFICIAL_DIT_PREFIX) -> None``  (strict; first bad tensor by name)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .checkpoint import CheckpointError, load_state_dict_checked

__all__ = [
    "KEY_TABLE",
    "OFFICIAL_DIT_PREFIX",
    "convert_official_state_dict",
    "load_official_dit",
    "official_to_ours",
]

OFFICIAL_DIT_PREFIX = "action_head.model."

_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "copy": lambda t: t,
    "category_weight": lambda t: _category(t, 3)[0].transpose(0, 1),  # [1, in, out] -> [out, in]
    "category_bias": lambda t: _category(t, 2)[0],  # [1, out] -> [out]
}


def _category(t: torch.Tensor, ndim: int) -> torch.Tensor:
    if t.ndim != ndim or t.shape[0] != 1:
        raise CheckpointError(f"expected a single-category tensor with {ndim} dims [1, ...], got {tuple(t.shape)}")
    return t


_B = r"blocks\.(\d+)\."
# (official pattern relative to the prefix, our key template, transform)
KEY_TABLE: list[tuple[str, str, str]] = [
    (r"patch_embedding\.(weight|bias)", r"patch_embedding.\1", "copy"),
    (r"text_embedding\.0\.(weight|bias)", r"condition_embedder.text_embedder.linear_1.\1", "copy"),
    (r"text_embedding\.2\.(weight|bias)", r"condition_embedder.text_embedder.linear_2.\1", "copy"),
    (r"time_embedding\.0\.(weight|bias)", r"condition_embedder.time_embedder.linear_1.\1", "copy"),
    (r"time_embedding\.2\.(weight|bias)", r"condition_embedder.time_embedder.linear_2.\1", "copy"),
    (r"time_projection\.1\.(weight|bias)", r"condition_embedder.time_proj.\1", "copy"),
    (r"img_emb\.proj\.0\.(weight|bias)", r"condition_embedder.image_embedder.norm1.\1", "copy"),
    (r"img_emb\.proj\.1\.(weight|bias)", r"condition_embedder.image_embedder.ff.net.0.proj.\1", "copy"),
    (r"img_emb\.proj\.3\.(weight|bias)", r"condition_embedder.image_embedder.ff.net.2.\1", "copy"),
    (r"img_emb\.proj\.4\.(weight|bias)", r"condition_embedder.image_embedder.norm2.\1", "copy"),
    (_B + r"modulation", r"blocks.\1.scale_shift_table", "copy"),
    (_B + r"self_attn\.([qkv])\.(weight|bias)", r"blocks.\1.attn1.to_\2.\3", "copy"),
    (_B + r"self_attn\.o\.(weight|bias)", r"blocks.\1.attn1.to_out.0.\2", "copy"),
    (_B + r"self_attn\.norm_([qk])\.weight", r"blocks.\1.attn1.norm_\2.weight", "copy"),
    (_B + r"norm3\.(weight|bias)", r"blocks.\1.norm2.\2", "copy"),
    (_B + r"cross_attn\.([qkv])\.(weight|bias)", r"blocks.\1.attn2.to_\2.\3", "copy"),
    (_B + r"cross_attn\.o\.(weight|bias)", r"blocks.\1.attn2.to_out.0.\2", "copy"),
    (_B + r"cross_attn\.norm_([qk])\.weight", r"blocks.\1.attn2.norm_\2.weight", "copy"),
    (_B + r"cross_attn\.k_img\.(weight|bias)", r"blocks.\1.attn2.add_k_proj.\2", "copy"),
    (_B + r"cross_attn\.v_img\.(weight|bias)", r"blocks.\1.attn2.add_v_proj.\2", "copy"),
    (_B + r"cross_attn\.norm_k_img\.weight", r"blocks.\1.attn2.norm_added_k.weight", "copy"),
    (_B + r"ffn\.0\.(weight|bias)", r"blocks.\1.ffn.net.0.proj.\2", "copy"),
    (_B + r"ffn\.2\.(weight|bias)", r"blocks.\1.ffn.net.2.\2", "copy"),
    (r"head\.modulation", r"scale_shift_table", "copy"),
    (r"head\.head\.(weight|bias)", r"proj_out.\1", "copy"),
    (r"(state_encoder|action_decoder)\.(layer[12])\.W", r"\1.\2.weight", "category_weight"),
    (r"(state_encoder|action_decoder)\.(layer[12])\.b", r"\1.\2.bias", "category_bias"),
    (r"action_encoder\.(W[123])\.W", r"action_encoder.\1.weight", "category_weight"),
    (r"action_encoder\.(W[123])\.b", r"action_encoder.\1.bias", "category_bias"),
]
_COMPILED = [(re.compile(p + r"\Z"), repl, tf) for p, repl, tf in KEY_TABLE]


def official_to_ours(key: str) -> tuple[str, str]:
    """Map one official DiT key (without prefix) to (our key, transform name)."""
    for pattern, repl, tf in _COMPILED:
        m = pattern.match(key)
        if m:
            return m.expand(repl), tf
    raise CheckpointError(f"unexpected official tensor {key!r}: no rule in convert_official.KEY_TABLE maps it")


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], prefix: str = OFFICIAL_DIT_PREFIX
) -> dict[str, torch.Tensor]:
    """Convert every tensor under ``prefix``; tensors outside it (encoders, VAE) are ignored.

    Raises:
        CheckpointError: a key under the prefix has no mapping, two keys map to one, or nothing is under prefix.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        ours, tf = official_to_ours(key[len(prefix) :])
        if ours in out:
            raise CheckpointError(f"official tensor {key!r} maps to {ours!r}, which another tensor already filled")
        try:
            out[ours] = _TRANSFORMS[tf](tensor)
        except CheckpointError as exc:
            raise CheckpointError(f"official tensor {key!r}: {exc}") from None
    if not out:
        raise CheckpointError(f"no tensor under prefix {prefix!r} (is this an official DreamZero checkpoint?)")
    return out


def load_official_dit(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], prefix: str = OFFICIAL_DIT_PREFIX, assign: bool = False
) -> None:
    """Convert and load strictly; a missing, unexpected or mis-shaped tensor raises ``CheckpointError`` naming it."""
    load_state_dict_checked(model, convert_official_state_dict(state_dict, prefix), assign=assign)
