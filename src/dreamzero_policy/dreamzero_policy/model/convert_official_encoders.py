"""Official DreamZero encoder/VAE state dicts -> the field's modules (key tables; the DiT is in ``convert_official``).

* text encoder: Wan's umT5-XXL encoder (``action_head.text_encoder.*``) -> transformers ``UMT5EncoderModel``;
* image encoder: open-clip ViT-H/14 visual tower (``action_head.image_encoder.model.*``) -> ``CLIPVisionModel``
  (fused ``to_qkv`` split into q/k/v; the logit scale and projection head are dropped, see below);
* VAE: Wan2.1 (flat stage lists) or Wan2.2 (nested, residual) VAE (``action_head.vae.model.*``) -> diffusers
  ``AutoencoderKLWan``.

Names are given without the component prefix. Works on meta tensors (manifest checks). An unknown name raises
``CheckpointError`` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import torch

from .checkpoint import CheckpointError

__all__ = [
    "DROPPED_IMAGE_ENCODER_TENSORS",
    "IMAGE_ENCODER_TABLE",
    "TEXT_ENCODER_TABLE",
    "convert_image_encoder",
    "convert_text_encoder",
    "convert_vae",
]

# Official CLIP tensors with no counterpart in a vision tower used at block 31 without pooling: the contrastive
# logit scale and the projection head (the official encode_image never applies them).
DROPPED_IMAGE_ENCODER_TENSORS: tuple[str, ...] = ("log_scale", "visual.head")

Rule = tuple["re.Pattern[str]", tuple[str, ...], Callable[[torch.Tensor, int], torch.Tensor]]


def _rules(table: Iterable[tuple[str, tuple[str, ...], str]]) -> list[Rule]:
    return [(re.compile(p + r"\Z"), outs, _TRANSFORMS[tf]) for p, outs, tf in table]


def _split3(t: torch.Tensor, i: int) -> torch.Tensor:
    if t.shape[0] % 3:
        raise CheckpointError(f"fused qkv tensor of shape {tuple(t.shape)} is not divisible by 3 along dim 0")
    return t.chunk(3, dim=0)[i]  # official: q, k, v = to_qkv(x).view(..., 3, heads, head_dim)


_TRANSFORMS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "copy": lambda t, i: t,
    "flatten": lambda t, i: t.reshape(-1),  # cls token [1, 1, D] -> [D]
    "squeeze0": lambda t, i: t.reshape(t.shape[-2:]) if t.ndim == 3 and t.shape[0] == 1 else t,  # [1, N, D] -> [N, D]
    "split_qkv": _split3,
}

_T5 = r"blocks\.(\d+)\."
_T5_OUT = "encoder.block.\\1.layer."
TEXT_ENCODER_TABLE = _rules(
    [
        (r"token_embedding\.weight", ("shared.weight",), "copy"),
        (_T5 + r"norm1\.weight", (_T5_OUT + "0.layer_norm.weight",), "copy"),
        (_T5 + r"attn\.([qkvo])\.weight", (_T5_OUT + "0.SelfAttention.\\2.weight",), "copy"),
        (
            _T5 + r"pos_embedding\.embedding\.weight",
            (_T5_OUT + "0.SelfAttention.relative_attention_bias.weight",),
            "copy",
        ),
        (_T5 + r"norm2\.weight", (_T5_OUT + "1.layer_norm.weight",), "copy"),
        # official gated FFN: fc2(fc1(x) * gelu(gate(x))); HF: wo(gelu(wi_0(x)) * wi_1(x))
        (_T5 + r"ffn\.gate\.0\.weight", (_T5_OUT + "1.DenseReluDense.wi_0.weight",), "copy"),
        (_T5 + r"ffn\.fc1\.weight", (_T5_OUT + "1.DenseReluDense.wi_1.weight",), "copy"),
        (_T5 + r"ffn\.fc2\.weight", (_T5_OUT + "1.DenseReluDense.wo.weight",), "copy"),
        (r"norm\.weight", ("encoder.final_layer_norm.weight",), "copy"),
    ]
)
_TIED_TEXT = {"shared.weight": "encoder.embed_tokens.weight"}  # HF ties these; official stores one table

_V = r"visual\.transformer\.(\d+)\."
_V_OUT = "encoder.layers.\\1."
IMAGE_ENCODER_TABLE = _rules(
    [
        (r"visual\.patch_embedding\.weight", ("embeddings.patch_embedding.weight",), "copy"),
        (r"visual\.cls_embedding", ("embeddings.class_embedding",), "flatten"),
        (r"visual\.pos_embedding", ("embeddings.position_embedding.weight",), "squeeze0"),
        (r"visual\.pre_norm\.(weight|bias)", ("pre_layrnorm.\\1",), "copy"),
        (r"visual\.post_norm\.(weight|bias)", ("post_layernorm.\\1",), "copy"),
        (_V + r"norm([12])\.(weight|bias)", (_V_OUT + "layer_norm\\2.\\3",), "copy"),
        (_V + r"attn\.to_qkv\.(weight|bias)", tuple(_V_OUT + f"self_attn.{p}_proj.\\2" for p in "qkv"), "split_qkv"),
        (_V + r"attn\.proj\.(weight|bias)", (_V_OUT + "self_attn.out_proj.\\2",), "copy"),
        (_V + r"mlp\.0\.(weight|bias)", (_V_OUT + "mlp.fc1.\\2",), "copy"),
        (_V + r"mlp\.2\.(weight|bias)", (_V_OUT + "mlp.fc2.\\2",), "copy"),
    ]
)


def _apply(
    sd: Mapping[str, torch.Tensor], rules: list[Rule], what: str, drop: Iterable[str] = ()
) -> tuple[dict[str, torch.Tensor], list[str]]:
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    drop = set(drop)
    for key, tensor in sd.items():
        if key in drop:
            dropped.append(key)
            continue
        hit = next(((m, outs, tf) for pattern, outs, tf in rules if (m := pattern.match(key))), None)
        if hit is None:
            raise CheckpointError(f"unexpected official {what} tensor {key!r}: no rule maps it")
        m, outs, tf = hit
        for i, template in enumerate(outs):
            ours = m.expand(template)
            if ours in out:
                raise CheckpointError(f"official {what} tensor {key!r} maps to {ours!r}, already filled")
            out[ours] = tf(tensor, i)
    return out, dropped


def convert_text_encoder(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official umT5 names (without ``action_head.text_encoder.``) -> ``UMT5EncoderModel`` names (tied table twice)."""
    out, _ = _apply(sd, TEXT_ENCODER_TABLE, "text encoder")
    for src, alias in _TIED_TEXT.items():
        if src in out:
            out[alias] = out[src]
    return out


def convert_image_encoder(
    sd: Mapping[str, torch.Tensor],
    prefix: str = "",
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official CLIP names (without ``action_head.image_encoder.model.``) -> ``CLIPVisionModel`` names under
    ``prefix`` (e.g. ``"vision_model."`` where transformers keeps it). Returns (converted, dropped official keys)."""
    out, dropped = _apply(sd, IMAGE_ENCODER_TABLE, "image encoder", drop=DROPPED_IMAGE_ENCODER_TENSORS)
    return {prefix + k: v for k, v in out.items()}, dropped


_RESNET = [
    (r"residual\.0\.gamma", "norm1.gamma"),
    (r"residual\.2\.(weight|bias)", "conv1.\\1"),
    (r"residual\.3\.gamma", "norm2.gamma"),
    (r"residual\.6\.(weight|bias)", "conv2.\\1"),
    (r"shortcut\.(weight|bias)", "conv_shortcut.\\1"),
]
_RESAMPLE = re.compile(r"(resample\.1|time_conv)\.(weight|bias)\Z")
_ATTN = re.compile(r"(norm\.gamma|to_qkv\.(weight|bias)|proj\.(weight|bias))\Z")
_VAE_FIXED = {
    "conv1": "quant_conv",
    "conv2": "post_quant_conv",
    "encoder.conv1": "encoder.conv_in",
    "decoder.conv1": "decoder.conv_in",
    "encoder.head.2": "encoder.conv_out",
    "decoder.head.2": "decoder.conv_out",
}


def _resnet_leaf(rest: str) -> str | None:
    for pattern, repl in _RESNET:
        m = re.fullmatch(pattern, rest)
        if m:
            return m.expand(repl)
    return None


def _vae_key(key: str, num_res_blocks: int, residual: bool) -> str | None:
    stem, _, leaf = key.rpartition(".")
    if stem in _VAE_FIXED and leaf in ("weight", "bias"):
        return f"{_VAE_FIXED[stem]}.{leaf}"
    if m := re.fullmatch(r"(encoder|decoder)\.head\.0\.gamma", key):
        return f"{m[1]}.norm_out.gamma"
    if m := re.fullmatch(r"(encoder|decoder)\.middle\.([02])\.(.+)", key):
        leaf_ = _resnet_leaf(m[3])
        return f"{m[1]}.mid_block.resnets.{int(m[2]) // 2}.{leaf_}" if leaf_ else None
    if m := re.fullmatch(r"(encoder|decoder)\.middle\.1\.(.+)", key):
        return f"{m[1]}.mid_block.attentions.0.{m[2]}" if _ATTN.match(m[2]) else None
    if residual:  # Wan2.2: nested stages, (encoder|decoder).(down|up)samples.<stage>.(down|up)samples.<j>
        m = re.fullmatch(r"(encoder\.downsamples|decoder\.upsamples)\.(\d+)\.(?:down|up)samples\.(\d+)\.(.+)", key)
        if not m:
            return None
        enc = m[1].startswith("encoder")
        stage, j, rest = int(m[2]), int(m[3]), m[4]
        n_res = num_res_blocks if enc else num_res_blocks + 1
        block = f"encoder.down_blocks.{stage}" if enc else f"decoder.up_blocks.{stage}"
        sampler = "downsampler" if enc else "upsampler"
    elif m := re.fullmatch(r"encoder\.downsamples\.(\d+)\.(.+)", key):  # Wan2.1 encoder: one flat list, kept flat
        leaf_ = _resnet_leaf(m[2]) or (m[2] if _RESAMPLE.match(m[2]) else None)
        return f"encoder.down_blocks.{m[1]}.{leaf_}" if leaf_ else None
    elif m := re.fullmatch(r"decoder\.upsamples\.(\d+)\.(.+)", key):
        # Wan2.1 decoder: flat list of stages [res x (n+1), upsampler] grouped into up_blocks by diffusers
        stage, j = divmod(int(m[1]), num_res_blocks + 2)
        rest, n_res, block, sampler = m[2], num_res_blocks + 1, f"decoder.up_blocks.{stage}", "upsamplers.0"
    else:
        return None
    if j < n_res:
        leaf_ = _resnet_leaf(rest)
        return f"{block}.resnets.{j}.{leaf_}" if leaf_ else None
    return f"{block}.{sampler}.{rest}" if j == n_res and _RESAMPLE.match(rest) else None


def convert_vae(sd: Mapping[str, torch.Tensor], num_res_blocks: int, residual: bool) -> dict[str, torch.Tensor]:
    """Official Wan VAE names (without ``action_head.vae.model.``) -> diffusers ``AutoencoderKLWan`` names.

    ``residual`` selects the Wan2.2 layout (``is_residual=True``); ``num_res_blocks`` is the VAE's (2 for both)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        ours = _vae_key(key, num_res_blocks, residual)
        if ours is None:
            raise CheckpointError(
                f"unexpected official VAE tensor {key!r}: no rule maps it ({'Wan2.2' if residual else 'Wan2.1'} layout)"
            )
        if ours in out:
            raise CheckpointError(f"official VAE tensor {key!r} maps to {ours!r}, already filled")
        out[ours] = tensor
    return out
