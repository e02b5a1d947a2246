"""Position-wise feed-forward blocks: MLP (Linear-act-Linear) and the GLU family (SwiGLU, GeGLU).

References: Vaswani et al. 2017 (MLP); Hendrycks & Gimpel 2016 (GELU; "gelu" is the exact erf form used by BERT,
"gelu_tanh"/"gelu_new" the tanh approximation used by GPT-2 and HF ``gelu_new``); Shazeer 2020, "GLU Variants
Improve Transformer" (arXiv 2002.05202): ``down(act(gate(x)) * up(x))``; Ramachandran et al. 2017 (SiLU/swish).

Deviations: none. Dropout is left to the caller, which decides where it goes (BERT drops after ``down``).

Legend: ... leading dims, D model width, F hidden (intermediate) width.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "GLU", "MLP", "GeGLU", "SwiGLU", "apply_chunked", "get_activation"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # exact (erf) GELU: BERT, HF "gelu"
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "gelu_new": partial(F.gelu, approximate="tanh"),  # HF's name for the tanh approximation (GPT-2)
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,  # bert4keras / HF alias
}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """``down(act(up(x)))`` with parameters ``up`` (D -> F) and ``down`` (F -> D)."""

    def __init__(self, dim: int, hidden_dim: int, *, activation: str = "gelu", bias: bool = True):
        super().__init__()
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.up = nn.Linear(dim, hidden_dim, bias=bias)
        self.down = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x_D: Tensor) -> Tensor:
        return self.down(self.activation(self.up(x_D)))

    def extra_repr(self) -> str:
        return f"activation={self.activation_name!r}"


class GLU(nn.Module):
    """Gated linear unit FFN ``down(act(gate(x)) * up(x))``; SwiGLU with "silu", GeGLU with "gelu"."""

    def __init__(self, dim: int, hidden_dim: int, *, activation: str = "silu", bias: bool = False):
        super().__init__()
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.gate = nn.Linear(dim, hidden_dim, bias=bias)
        self.up = nn.Linear(dim, hidden_dim, bias=bias)
        self.down = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x_D: Tensor) -> Tensor:
        return self.down(self.activation(self.gate(x_D)) * self.up(x_D))

    def extra_repr(self) -> str:
        return f"activation={self.activation_name!r}"


def SwiGLU(dim: int, hidden_dim: int, *, bias: bool = False) -> GLU:
    """Shazeer 2020 SwiGLU: ``down(silu(gate(x)) * up(x))``. Use ~2/3 of the MLP width to match its parameters."""
    return GLU(dim, hidden_dim, activation="silu", bias=bias)


def GeGLU(dim: int, hidden_dim: int, *, bias: bool = False) -> GLU:
    """Shazeer 2020 GeGLU: ``down(gelu(gate(x)) * up(x))``."""
    return GLU(dim, hidden_dim, activation="gelu", bias=bias)


def apply_chunked(fn: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int, *, dim: int = 1) -> Tensor:
    """``fn`` over slices of ``chunk_size`` along ``dim``, concatenated (HF ``apply_chunking_to_forward``): the
    peak memory of a position-wise block falls from T to ``chunk_size`` positions; ``chunk_size <= 0`` = no split."""
    if chunk_size <= 0 or x.shape[dim] <= chunk_size:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(chunk_size, dim=dim)], dim=dim)
