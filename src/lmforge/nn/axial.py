"""Axial position embeddings (Reformer): a position table factorised over the axes of ``shape``.

Position ``p`` has mixed-radix coordinates ``(c_1, ..., c_n)`` over ``shape`` (last axis fastest, so for two axes
``c_1 = p // shape[1]``, ``c_2 = p % shape[1]``); its embedding is the concatenation of one learned row per axis,
``weights[i][c_i]`` of width ``dims[i]`` (``sum(dims)`` = model width). ``prod(shape)`` positions cost
``sum(shape_i · dims_i)`` parameters (512·1024 positions: 1,536 rows instead of 524,288).

References: Kitaev et al. 2020 (Reformer) / Trax ``AxialPositionalEncoding``; HF ``AxialPositionEmbeddings``,
whose parameter layout we keep (``weights.i`` of shape ``[1, ..., shape_i, ..., 1, dims_i]``) so checkpoints map
one to one.

Deviations from HF:
- Any length up to ``prod(shape)`` works, in training too: rows are looked up by position. HF requires
  ``prod(shape) == length`` in training (transformers #17295, #4565: fine-tuning the 512x1024 checkpoint meant
  524,288-token inputs). A short input simply uses the first rows of the first axis, which is exactly what HF's
  own inference path computes, so a pretrained table fine-tunes on short inputs without changes.
- Dropout is ordinary dropout on the encodings; HF drops whole slices of the broadcast table with ``dropout2d``.

Legend: B batch, T tokens, D width (sum of dims).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AxialPositionEmbeddings"]


class AxialPositionEmbeddings(nn.Module):
    """``forward(seq_len, positions=None) -> (T, D)``, or ``(..., T, D)`` for explicit integer ``positions``."""

    def __init__(self, shape: Sequence[int], dims: Sequence[int], *, dropout: float = 0.0):
        super().__init__()
        if len(shape) != len(dims) or not shape:
            raise ValueError(f"axial shape {tuple(shape)} and dims {tuple(dims)} need the same, nonzero length")
        if min(shape) < 1 or min(dims) < 1:
            raise ValueError(f"axial shape {tuple(shape)} and dims {tuple(dims)} must be positive")
        self.shape, self.dims, self.dropout = tuple(shape), tuple(dims), dropout
        self.num_positions = math.prod(self.shape)
        self.weights = nn.ParameterList()
        for axis, (size, dim) in enumerate(zip(self.shape, self.dims)):
            layout = [1] * len(self.shape)
            layout[axis] = size
            self.weights.append(nn.Parameter(torch.empty(*layout, dim)))
            nn.init.normal_(self.weights[-1], std=1.0)  # HF axial_norm_std; models re-initialise
        # stride of each axis in the flat position: the last axis runs fastest
        self.strides = tuple(math.prod(self.shape[axis + 1 :]) for axis in range(len(self.shape)))

    def extra_repr(self) -> str:
        return f"shape={self.shape}, dims={self.dims}"

    def forward(self, seq_len: int, *, positions: Tensor | None = None) -> Tensor:
        if positions is None:
            if seq_len > self.num_positions:
                raise ValueError(
                    f"{seq_len} tokens exceed the axial table of {self.num_positions} positions {self.shape}"
                )
            positions = torch.arange(seq_len, device=self.weights[0].device)
        elif positions.shape[-1] != seq_len:
            raise ValueError(f"positions end in {positions.shape[-1]} but seq_len is {seq_len}")
        elif positions.numel() and not 0 <= int(positions.min()) <= int(positions.max()) < self.num_positions:
            # the first axis would wrap around (position % size) and give a wrong embedding silently
            raise ValueError(f"positions must lie in [0, {self.num_positions}) for the axial table {self.shape}")
        parts = []
        for weight, size, stride in zip(self.weights, self.shape, self.strides):
            rows = weight.reshape(size, weight.shape[-1])
            parts.append(F.embedding(torch.div(positions, stride, rounding_mode="floor") % size, rows))
        return F.dropout(torch.cat(parts, dim=-1), p=self.dropout, training=self.training)
