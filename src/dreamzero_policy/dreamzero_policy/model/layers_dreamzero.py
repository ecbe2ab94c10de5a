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

__all__ = [
    "ActionEncoder",
    "CausalWanBlock",
    "CrossKV",
    "RegisterMLP",
    "action_sinusoid",
    "apply_rope",
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
        dim, positions.to(torch.float64), theta=theta, use_real=True, repeat_interleave_real=True,
        freqs_dtype=torch.float64,
    )
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2m, 2m+1) of ``x`` [B, L, H, Dh] by the table (cos, sin) [L, Dh].

    Computed in float32 (the official code uses float64 complex numbers; the difference is ~1e-7 relative).
    """
    dtype = x.dtype
    xf = x.float()
    x1, x2 = xf.unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack((-x2, x1), dim=-1).flatten(-2)
    out = xf * cos[None, :, None, :] + rotated * sin[None, :, None, :]
    return out.to(dtype)


class RegisterMLP(nn.Module):
    """Two-layer ReLU MLP (official ``CategorySpecificMLP`` with its single category). [..., in] -> [..., out]."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(in_dim, hidden)
        self.layer2 = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x)))


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
        a_emb = self.W1(actions)
        tau = action_sinusoid(self.dim, timesteps).to(a_emb.dtype)
        return self.W3(F.silu(self.W2(torch.cat([a_emb, tau], dim=-1))))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, H*Dh] -> [B, H, L, Dh]."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


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
            dim=dim, heads=num_heads, dim_head=dim // num_heads, eps=eps,
            added_kv_proj_dim=dim if use_clip else None, cross_attention_dim_head=dim // num_heads,
        )
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

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

    def forward(
        self,
        x: torch.Tensor,
        e0: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cross: CrossKV,
        attn_mask: torch.Tensor | None = None,
        past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        num_video: int = 0,
        window: int = 0,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Args:
            x: tokens [B, L, dim]; e0: per-token modulation [B, L, 6, dim] (time projection output).
            rope: (cos, sin) [L, head_dim] for every token of ``x``.
            cross: this layer's cross-attention K/V (``cross_kv``); batch 1 broadcasts.
            attn_mask: bool [L, L] (True = may attend), teacher-forced training only.
            past_kv: KV-cache mode: cached post-RoPE keys and values [B, H, Lp, Dh] of clean frames. The first
                ``num_video`` tokens of ``x`` are video; keys = last ``window`` of (cache ++ new video), then the
                remaining (action/state) tokens; every new token attends to all of them (official inference).

        Returns:
            (x, kv): kv are the keys/values the cache would hold after this pass (cache mode), else this pass's
            full keys/values.
        """
        mod = (self.scale_shift_table.unsqueeze(0) + e0).unbind(2)
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = mod

        # 1. self-attention (q/k RMS-normalised over the full width before the head split, as in Wan)
        a, h = self.attn1, self.num_heads
        hs = self.norm1(x) * (1 + scale_msa) + shift_msa
        q = a.norm_q(a.to_q(hs)).unflatten(-1, (h, -1))
        k = a.norm_k(a.to_k(hs)).unflatten(-1, (h, -1))
        v = a.to_v(hs).unflatten(-1, (h, -1))
        cos, sin = rope
        q = apply_rope(q, cos, sin).transpose(1, 2)
        k = apply_rope(k, cos, sin).transpose(1, 2)
        v = v.transpose(1, 2)
        if past_kv is not None:
            kk = torch.cat([past_kv[0], k[:, :, :num_video]], dim=2)
            vv = torch.cat([past_kv[1], v[:, :, :num_video]], dim=2)
            if window > 0:
                kk, vv = kk[:, :, -window:], vv[:, :, -window:]
            kv = (kk, vv)
            if num_video < k.shape[2]:
                kk = torch.cat([kk, k[:, :, num_video:]], dim=2)
                vv = torch.cat([vv, v[:, :, num_video:]], dim=2)
            out = F.scaled_dot_product_attention(q, kk, vv)
        else:
            kv = (k, v)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + a.to_out[0](out.transpose(1, 2).flatten(2)) * gate_msa

        # 2. cross-attention: text and image attentions summed, no gate, no mask, no RoPE
        c = self.attn2
        hs = self.norm2(x)
        q = _heads(c.norm_q(c.to_q(hs)), h)
        k_t, v_t, k_i, v_i = cross
        out = F.scaled_dot_product_attention(q, _bcast(k_t, q), _bcast(v_t, q))
        if k_i is not None and v_i is not None:
            out = out + F.scaled_dot_product_attention(q, _bcast(k_i, q), _bcast(v_i, q))
        x = x + c.to_out[0](out.transpose(1, 2).flatten(2))

        # 3. feed-forward
        hs = self.norm3(x) * (1 + c_scale) + c_shift
        x = x + self.ffn(hs) * c_gate
        return x, kv


def _bcast(kv: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Expand a batch-1 K/V (shared context) to the query batch."""
    if kv.shape[0] == q.shape[0]:
        return kv
    return kv.expand(q.shape[0], *kv.shape[1:])


def num_params(module: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in module.parameters())
