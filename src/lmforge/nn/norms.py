"""Normalisation layers: LayerNorm (optional bias), RMSNorm (optional gain) and ScaleNorm.

Every norm computes its statistics in (at least) fp32 and casts the result back to the input dtype, also under bf16/fp16
autocast (R6; HF ``LlamaRMSNorm`` upcast, torchtitan ``test_computes_in_fp32``).

References:
- LayerNorm: Ba, Kiros, Hinton 2016 (arXiv 1607.06450); ``bias=False`` as in nanoGPT's ``LayerNorm(ndim, bias)``.
- RMSNorm: Zhang & Sennrich 2019 (arXiv 1910.07467). ``elementwise_affine=False`` is the parameter-free variant
  used by GAU-alpha/RoFormerV2 (bert4keras ``LayerNormalization(zero_mean=False, scale=False, offset=False)``).
- ScaleNorm: Nguyen & Salazar 2019, "Transformers without Tears" (arXiv 1910.05895): ``g * x / ||x||`` with one
  learnable scalar g initialised to sqrt(d); used by FLASH (Hua et al. 2022). lucidrains/FLASH-pytorch writes the
  same function as ``g' * x / (||x|| / sqrt(d))`` with g' init 1, i.e. our ``scale`` = its ``g`` * sqrt(d).

Deviations: ScaleNorm clamps ``||x||`` from below by ``eps`` (as the paper's code does) rather than adding eps
inside the square root; RMSNorm adds eps inside the root (as HF/T5).

Legend: ... any leading dims, D normalised (last) dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LayerNorm", "RMSNorm", "ScaleNorm", "rms_norm", "scale_norm", "upcast"]


def upcast(x: Tensor) -> Tensor:
    """``x`` in at least fp32: bf16/fp16 go up to fp32, fp32/fp64 stay (so float64 gradcheck stays exact)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def rms_norm(x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dim, computed in fp32, returned in ``x.dtype``."""
    x32 = upcast(x)
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(y.dtype)
    return y.to(x.dtype)


def scale_norm(x: Tensor, gain: Tensor, eps: float) -> Tensor:
    """``gain * x / max(||x||_2, eps)`` over the last dim, computed in fp32, returned in ``x.dtype``."""
    x32 = upcast(x)
    norm = torch.linalg.vector_norm(x32, dim=-1, keepdim=True).clamp(min=eps)
    return (gain.to(x32.dtype) * x32 / norm).to(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with optional bias and optional affine parameters; fp32 statistics.

    Parameter names (``weight``, ``bias``) match ``torch.nn.LayerNorm`` so checkpoints map one to one.
    """

    def __init__(self, dim: int, *, eps: float = 1e-5, bias: bool = True, elementwise_affine: bool = True):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if elementwise_affine and bias else None

    def forward(self, x_D: Tensor) -> Tensor:
        x32 = upcast(x_D)
        weight = self.weight.to(x32.dtype) if self.weight is not None else None
        bias = self.bias.to(x32.dtype) if self.bias is not None else None
        # Disabling autocast keeps F.layer_norm from being re-cast to the autocast dtype on any backend.
        with torch.autocast(device_type=x_D.device.type, enabled=False):
            y = F.layer_norm(x32, (self.dim,), weight, bias, self.eps)
        return y.to(x_D.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, affine={self.weight is not None}, bias={self.bias is not None}"


class RMSNorm(nn.Module):
    """RMSNorm; ``elementwise_affine=False`` gives the parameter-free variant (no gain, no parameters)."""

    def __init__(self, dim: int, *, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x_D: Tensor) -> Tensor:
        return rms_norm(x_D, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, affine={self.weight is not None}"


class ScaleNorm(nn.Module):
    """ScaleNorm ``g * x / ||x||`` with a single learnable scalar ``g`` (init ``sqrt(dim)`` unless given)."""

    def __init__(self, dim: int, *, eps: float = 1e-5, init_scale: float | None = None):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.init_scale = math.sqrt(dim) if init_scale is None else float(init_scale)
        self.scale = nn.Parameter(torch.full((1,), self.init_scale))  # g

    def forward(self, x_D: Tensor) -> Tensor:
        return scale_norm(x_D, self.scale, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, init_scale={self.init_scale:.4g}"
