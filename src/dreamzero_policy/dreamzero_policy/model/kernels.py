"""CPU inference kernels for the DiT's linear layers.

On CPU, float32 inference without autograd goes through oneDNN's linear (``mkldnn::_linear_pointwise``, the op
PyTorch's own CPU compiler emits) with the weight reordered once into oneDNN's blocked layout, instead of the MKL
``addmm`` behind ``F.linear``. On the team's AMD EPYC machines that runs the DiT's GEMM shapes 15-20 % faster
(oneDNN picks AVX-512 kernels by CPU feature; MKL does not on AMD) and fuses the FFN's tanh-GELU into the GEMM
epilogue (a separate GELU pass cost ~1/3 of the FFN's first GEMM at the DROID sequence length). Results differ
from ``F.linear`` only by float32 summation order (~1e-6 relative). Everywhere else (autograd, GPU, other dtypes,
a build without oneDNN) this is plain ``F.linear``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F

__all__ = ["linear", "onednn_available", "use_onednn"]

_OPS = getattr(torch.ops, "mkldnn", None)
_LINEAR = getattr(_OPS, "_linear_pointwise", None)
_REORDER = getattr(_OPS, "_reorder_linear_weight", None)


def onednn_available() -> bool:
    return _LINEAR is not None and _REORDER is not None and torch.backends.mkldnn.is_available()


_ENABLED = onednn_available()


@contextlib.contextmanager
def use_onednn(enabled: bool) -> Iterator[None]:
    """Temporarily route (or stop routing) CPU inference linears through oneDNN, e.g. to count FLOPs with
    ``FlopCounterMode``, which only sees ATen matmuls."""
    global _ENABLED
    before = _ENABLED
    _ENABLED = enabled and onednn_available()
    try:
        yield
    finally:
        _ENABLED = before


# Below this many multiply-adds oneDNN's per-call overhead (~30 us) outweighs its faster kernel (the `tiny` preset)
_MIN_MACS = 1 << 22
# id(weight) -> (weak ref to the weight, its version when packed, packed copy); entries die with their weight
_PACKED: dict[int, tuple[weakref.ref, int, torch.Tensor]] = {}


def _packed(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """The oneDNN-blocked copy of ``weight`` [out, in], made once per weight (and again after it changes)."""
    key = id(weight)
    version = -1 if weight.is_inference() else weight._version  # inference tensors cannot change later
    hit = _PACKED.get(key)
    if hit is None or hit[0]() is not weight or hit[1] != version:
        with torch.no_grad():
            packed = _REORDER(weight.detach(), max(rows, 1))
        ref = weakref.ref(weight, lambda _, k=key: _PACKED.pop(k, None))
        hit = _PACKED[key] = (ref, version, packed)
    return hit[2]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu_tanh: bool = False) -> torch.Tensor:
    """x [..., in] @ weight[out, in]^T + bias [out], optionally followed by tanh-approximated GELU."""
    rows = x.numel() // max(x.shape[-1], 1)
    if (
        _ENABLED
        and rows * weight.numel() >= _MIN_MACS
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_grad_enabled()
    ):
        w = _packed(weight, rows)
        if gelu_tanh:
            return _LINEAR(x, w, bias, "gelu", [], "tanh")
        return _LINEAR(x, w, bias, "none", [], "")
    y = F.linear(x, weight, bias)
    return F.gelu(y, approximate="tanh") if gelu_tanh else y
