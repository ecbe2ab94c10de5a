"""Building blocks of the DreamZero DiT: embeddings, RoPE tables, the action register MLPs and the causal block.

The transformer block keeps diffusers' ``WanTransformerBlock`` parameter names (``attn1``, ``attn2``, ``norm2``,
``ffn``, ``scale_shift_table``) and reuses its modules (``WanAttention`` for the projections and RMS norms,
``FP32LayerNorm``, ``FeedForward``); only the forward differs, because DreamZero needs per-token modulation,
block-causal masks, a per-layer KV cache and precomputed cross-attention K/V, none of which the diffusers
processor exposes (it also hard-codes a 512-token text context to split image tokens off).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import WanAttention
from torch import nn
from torch.nn.modules import module as nn_module

from .kernels import linear

__all__ = [
    "ActionEncoder",
    "CausalWanBlock",
    "CrossKV",
    "RegisterMLP",
    "action_sinusoid",
    "apply_rope",
    "gated_add",
    "modulate",
    "rope_table",
    "timestep_sinusoid",
]

# Per-layer cross-attention keys/values: (k_text, v_text, k_img | None, v_img | None), each [B, H, Lc, Dh].
CrossKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]


def timestep_sinusoid(dim: int, t: torch.Tensor) -> torch.Tensor:
    """Wan's timestep embedding: [cos | sin] of t * 10000^(-k/(dim/2)), computed in float64.

    Args:
        t: any shape, timesteps in [0, 1000]. Returns float64 [*t.shape, dim].
    """
    half = dim // 2
    pos = t.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device).div(half))
    args = pos.unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def action_sinusoid(dim: int, t: torch.Tensor) -> torch.Tensor:
    """The action encoder's timestep encoding: [sin | cos] (reverse of the DiT's), float32 as officially.

    Args:
        t: [B, T] timesteps. Returns float32 [B, T, dim].
    """
    half = dim // 2
    exponent = -torch.arange(half, dtype=torch.float32, device=t.device) * (
        torch.log(torch.tensor(10000.0, device=t.device)) / half
    )
    freqs = t.float().unsqueeze(-1) * exponent.exp()
    return torch.cat([torch.sin(freqs), torch.cos(freqs)], dim=-1)


def rope_table(dim: int, positions: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [len(positions), dim] for adjacent-pair (complex) RoPE, computed in float64.

    Entry pair k of position p rotates by p * theta^(-2k/dim); values repeat-interleaved over the pair.
    """
    cos, sin = get_1d_rotary_pos_embed(
        dim,
        positions.to(torch.float64),
        theta=theta,
        use_real=True,
        repeat_interleave_real=True,
        freqs_dtype=torch.float64,
    )
    return cos, sin


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2m, 2m+1) of ``x`` [B, L, H, Dh] by ``freqs`` [L, Dh/2] (complex64 unit phasors).

    One complex multiply in float32 (the official code multiplies float64 complex numbers; the difference is
    ~1e-7 relative). Returns a new tensor in ``x``'s dtype.
    """
    xf = x.float().unflatten(-1, (-1, 2))
    if xf.stride(-1) != 1 or any(s % 2 for s in xf.stride()[:-1]) or xf.storage_offset() % 2:
        xf = xf.contiguous()
    out = torch.view_as_real(torch.view_as_complex(xf) * freqs[None, :, None, :]).flatten(-2)
    return out.to(x.dtype)


class RegisterMLP(nn.Module):
    """Two-layer ReLU MLP (official ``CategorySpecificMLP`` with its single category). [..., in] -> [..., out]."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(in_dim, hidden)
        self.layer2 = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _lin(self.layer2, F.relu(_lin(self.layer1, x)))


class ActionEncoder(nn.Module):
    """Noisy actions [B, T, action_dim] + per-token timesteps [B, T] -> tokens [B, T, dim].

    W1(a) ++ sinusoid(t) -> W2 -> swish -> W3 (official ``MultiEmbodimentActionEncoder``, category 0).
    """

    def __init__(self, action_dim: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.W1 = nn.Linear(action_dim, dim)
        self.W2 = nn.Linear(2 * dim, dim)
        self.W3 = nn.Linear(dim, dim)

    def forward(self, actions: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        a_emb = _lin(self.W1, actions)
        tau = action_sinusoid(self.dim, timesteps).to(a_emb.dtype)
        return _lin(self.W3, F.silu(_lin(self.W2, torch.cat([a_emb, tau], dim=-1))))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, H*Dh] -> [B, H, L, Dh]."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


# Token groups that share one timestep, in token order: ((count, tokens per group), ...). Inference:
# ((F, T), (R, 1)) = F video frames of T tokens then R register tokens; training: ((2F, T), (R, 1)).
# Modulation is computed per group ([B, G, 6, dim], G = sum of counts) and broadcast over a group's tokens
# instead of materialising a per-token [B, L, 6, dim] tensor in every layer.
Groups = tuple[tuple[int, int], ...]


def _segments(groups: Groups):
    """Yield (token slice, group slice, count, size) per non-empty segment."""
    t0 = g0 = 0
    for n, size in groups:
        if n:
            yield slice(t0, t0 + n * size), slice(g0, g0 + n), n, size
        t0 += n * size
        g0 += n


def modulate(h: torch.Tensor, scale1: torch.Tensor, shift: torch.Tensor, groups: Groups) -> torch.Tensor:
    """h * scale1 + shift per group. h: fresh [B, L, D] (overwritten outside autograd); scale1/shift [B, G, D]."""
    if not torch.is_grad_enabled():
        for ts, gs, n, size in _segments(groups):
            hv = h[:, ts].unflatten(1, (n, size))
            hv.mul_(scale1[:, gs, None]).add_(shift[:, gs, None])
        return h
    parts = [
        (h[:, ts].unflatten(1, (n, size)) * scale1[:, gs, None] + shift[:, gs, None]).flatten(1, 2)
        for ts, gs, n, size in _segments(groups)
    ]
    return torch.cat(parts, dim=1)


def gated_add(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor, groups: Groups) -> torch.Tensor:
    """x + y * gate per group. x: [B, L, D] residual stream owned by the caller (updated in place outside
    autograd); y: [B, L, D]; gate: [B, G, D]."""
    if not torch.is_grad_enabled():
        for ts, gs, n, size in _segments(groups):
            x[:, ts].unflatten(1, (n, size)).addcmul_(y[:, ts].unflatten(1, (n, size)), gate[:, gs, None])
        return x
    parts = [
        (y[:, ts].unflatten(1, (n, size)) * gate[:, gs, None]).flatten(1, 2) for ts, gs, n, size in _segments(groups)
    ]
    return x + torch.cat(parts, dim=1)


# Self-attention over a KV-cache buffer: (keys, values) head-major [B, H, capacity, Dh], the first key
# attended (``attn_start``) and where this pass's keys/values are written (``write_at``).
CacheSlot = tuple[torch.Tensor, torch.Tensor, int, int]


class CausalWanBlock(nn.Module):
    """One DreamZero transformer block (Wan2.1 block with DreamZero's self-attention patterns).

    Official name map: self_attn.{q,k,v,o,norm_q,norm_k} -> attn1.{to_q,to_k,to_v,to_out.0,norm_q,norm_k};
    cross_attn.* -> attn2.* (k_img/v_img/norm_k_img -> add_k_proj/add_v_proj/norm_added_k); norm3 (affine,
    before cross-attn) -> norm2; ffn.{0,2} -> ffn.net.{0.proj,2}; modulation -> scale_shift_table.
    """

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float, use_clip: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = WanAttention(dim=dim, heads=num_heads, dim_head=dim // num_heads, eps=eps)
        self.attn2 = WanAttention(
            dim=dim,
            heads=num_heads,
            dim_head=dim // num_heads,
            eps=eps,
            added_kv_proj_dim=dim if use_clip else None,
            cross_attention_dim_head=dim // num_heads,
        )
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        # fused [Wq; Wk; Wv] for inference on CPU, rebuilt when a source parameter changes (not in state_dict)
        self._qkv_fused: tuple[tuple, tuple[torch.Tensor, ...]] | None = None

    def cross_kv(self, text: torch.Tensor, image: torch.Tensor | None) -> CrossKV:
        """Keys/values of the cross-attention context (session-constant, so computed once per prompt).

        Args:
            text: embedded text [B, Lt, dim]; image: embedded CLIP tokens [B, Li, dim] or None.
        """
        a, h = self.attn2, self.num_heads
        k = _heads(a.norm_k(a.to_k(text)), h)
        v = _heads(a.to_v(text), h)
        if image is None or a.add_k_proj is None:
            return k, v, None, None
        k_img = _heads(a.norm_added_k(a.add_k_proj(image)), h)
        v_img = _heads(a.add_v_proj(image), h)
        return k, v, k_img, v_img

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """q/k/v weight [3*dim, dim] and bias [3*dim], plus their k/v rows, concatenated once (keyed on the
        source tensors' identity and version, so a load or an optimiser step invalidates them)."""
        a = self.attn1
        src = (a.to_q.weight, a.to_k.weight, a.to_v.weight, a.to_q.bias, a.to_k.bias, a.to_v.bias)
        hit = self._qkv_fused
        if hit is None or any(p is not q or p._version != v for p, (q, v) in zip(src, hit[0], strict=True)):
            # a normal (version-tracked) tensor even when first called under inference_mode
            with torch.inference_mode(False), torch.no_grad():
                w, b = torch.cat(src[:3]), torch.cat(src[3:])
                d = src[0].shape[0]
                hit = (tuple((p, p._version) for p in src), (w, b, w[d:].contiguous(), b[d:].contiguous()))
            self._qkv_fused = hit
        return hit[1]

    def _project_qkv(self, hs: torch.Tensor, kv_only: bool) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        a = self.attn1
        # one [dim -> 3*dim] matmul instead of three: fewer passes over hs and better GEMM efficiency on CPU;
        # on GPU the separate projections are as fast and the fused copy would cost memory
        if torch.is_grad_enabled() or hs.device.type != "cpu" or not _plain(a.to_q, a.to_k, a.to_v):
            return (None if kv_only else a.to_q(hs)), a.to_k(hs), a.to_v(hs)
        w, b, w_kv, b_kv = self._fused_weights()
        d = w_kv.shape[0] // 2
        if kv_only:
            kv = linear(hs, w_kv, b_kv)
            return None, kv[..., :d], kv[..., d:]
        qkv = linear(hs, w, b)
        return qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]

    def forward(
        self,
        x: torch.Tensor,
        e0: torch.Tensor,
        groups: Groups,
        rope: torch.Tensor,
        cross: CrossKV,
        attn_mask: torch.Tensor | None = None,
        cache: CacheSlot | None = None,
        kv_only: bool = False,
        rows_identical: bool = False,
    ) -> torch.Tensor:
        """Args:
            x: tokens [B, L, dim] (updated in place outside autograd); e0: per-group modulation [B, G, 6, dim]
                (time projection output) for the token ``groups``.
            rope: complex RoPE phasors [L, head_dim/2] for every token of ``x``.
            cross: this layer's cross-attention K/V (``cross_kv``); batch 1 broadcasts.
            attn_mask: bool [L, L] (True = may attend), teacher-forced training only.
            cache: KV-cache mode: this pass's post-RoPE keys/values are written into the buffers at
                ``write_at`` and every token attends to keys ``[attn_start, write_at + L)`` (official
                inference: cached frames in the window ++ new video ++ new action/state tokens).
            kv_only: write this layer's keys/values and stop (the last layer of a cache-write pass, whose
                output nobody reads).
            rows_identical: every row of ``x``/``e0`` and of the cached keys/values is the same (the first
                layer of a cond/neg CFG batch, before cross-attention makes the rows differ): the
                self-attention is computed once on row 0 and broadcast.

        Returns:
            x after the block (or unchanged with ``kv_only``).
        """
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = (self.scale_shift_table.unsqueeze(0) + e0).unbind(2)

        # 1. self-attention (q/k RMS-normalised over the full width before the head split, as in Wan)
        a, h = self.attn1, self.num_heads
        r = 1 if rows_identical and cache is not None else x.shape[0]  # rows that need their own attention
        hs = modulate(self.norm1(x[:r]), 1 + scale_msa[:r], shift_msa[:r], groups)
        q, k, v = self._project_qkv(hs, kv_only and cache is not None)
        k = apply_rope(a.norm_k(k).unflatten(-1, (h, -1)), rope)
        v = v.unflatten(-1, (h, -1))
        if cache is not None:
            kbuf, vbuf, start, at = cache
            end = at + x.shape[1]
            kbuf[:, :, at:end].copy_(k.transpose(1, 2))  # a single row broadcasts to every row
            vbuf[:, :, at:end].copy_(v.transpose(1, 2))
            if kv_only:
                return x
            k, v = kbuf[:r, :, start:end], vbuf[:r, :, start:end]
        else:
            k, v = k.transpose(1, 2), v.transpose(1, 2)
        assert q is not None
        q = apply_rope(a.norm_q(q).unflatten(-1, (h, -1)), rope)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=attn_mask)
        x = gated_add(x, _lin(a.to_out[0], out.transpose(1, 2).flatten(2)), gate_msa, groups)

        # 2. cross-attention: text and image attentions summed, no gate, no mask, no RoPE
        c = self.attn2
        q = c.norm_q(_lin(c.to_q, self.norm2(x))).unflatten(-1, (h, -1))
        k_t, v_t, k_i, v_i = cross
        out = F.scaled_dot_product_attention(q.transpose(1, 2), _bcast(k_t, q), _bcast(v_t, q))
        out = out.transpose(1, 2).flatten(2)
        if k_i is not None and v_i is not None:
            out = out + _shared_context_attention(q, k_i, v_i)
        y = _lin(c.to_out[0], out)
        x = x.add_(y) if not torch.is_grad_enabled() else x + y

        # 3. feed-forward
        hs = modulate(self.norm3(x), 1 + c_scale, c_shift, groups)
        ff = self.ffn.net  # [GELU(proj, tanh), Dropout(0), Linear]: the GELU fused into the first GEMM
        if _plain(ff[0].proj) and not (ff[0]._forward_hooks or ff[0]._forward_pre_hooks):
            hidden = linear(hs, ff[0].proj.weight, ff[0].proj.bias, gelu_tanh=True)
        else:
            hidden = ff[1](ff[0](hs))
        return gated_add(x, _lin(ff[2], hidden), c_gate, groups)


def _plain(*layers: nn.Module) -> bool:
    """True when every layer is a bare ``nn.Linear`` without hooks, so calling the kernel on its weights is
    exactly calling the module (a PEFT/LoRA wrapper or a forward hook must run through the module)."""
    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return False
    return all(type(m) is nn.Linear and not m._forward_hooks and not m._forward_pre_hooks for m in layers)


def _lin(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not _plain(layer):
        return layer(x)
    return linear(x, layer.weight, layer.bias)  # type: ignore[arg-type]


def _shared_context_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of q [B, L, H, Dh] to keys/values [Bk, H, Lk, Dh] -> [B, L, H*Dh].

    A batch-1 context shared by every row (the CLIP tokens of cond and negative prompt) is attended as one
    batch of B*L queries: one larger kernel instead of an expanded (copied) K/V per row.
    """
    b, length = q.shape[:2]
    if k.shape[0] == 1 and b > 1:
        out = F.scaled_dot_product_attention(q.reshape(1, b * length, *q.shape[2:]).transpose(1, 2), k, v)
        return out.transpose(1, 2).reshape(b, length, -1)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), _bcast(k, q.transpose(1, 2)), _bcast(v, q.transpose(1, 2)))
    return out.transpose(1, 2).flatten(2)


def _bcast(kv: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Expand a batch-1 K/V (shared context) to the query batch."""
    if kv.shape[0] == q.shape[0]:
        return kv
    return kv.expand(q.shape[0], *kv.shape[1:])


def num_params(module: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in module.parameters())
