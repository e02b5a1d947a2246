"""Position encodings: rotary (RoPE), fixed and scaled sinusoids, T5 relative buckets, learned absolute table.

References:
- RoPE: Su et al. 2021, "RoFormer" (arXiv 2104.09864); blog https://kexue.fm/archives/8265. Two pairings exist and
  are NOT interchangeable for trained weights:
  ``"interleaved"`` rotates feature pairs (0,1),(2,3),... (RoFormer, bert4keras, HF ``modeling_roformer``,
  GAU-alpha); ``"half"`` rotates pairs (i, i+K/2) (GPT-NeoX / HF LLaMA ``rotate_half``). They differ by a fixed
  permutation of the K features (evens first, then odds), which is what a checkpoint converter must apply to the
  q/k projection rows. The pairing is therefore a required argument.
- Sinusoids: Vaswani et al. 2017, laid out as ``cat(sin, cos)`` (tensor2tensor ``get_timing_signal_1d``).
  ``ScaledSinusoid``: the same table times one learnable scalar (FLASH, Hua et al. 2022; lucidrains/FLASH-pytorch
  ``ScaledSinuEmbedding``, scale init 1).
- T5 buckets: Raffel et al. 2020; the log-bucketing of mesh-tensorflow ``_relative_position_bucket`` (also HF
  ``T5Attention._relative_position_bucket``).

Deviations: no fixed-length sin/cos buffers. Tables are computed per call from positions ``offset..offset+T-1``, so
any length works (the GAU-alpha port breaks beyond 512), nothing is overwritten by weight init (HF #29807), and
``model.to(bfloat16)`` cannot round the angles. Angles are computed in fp32 (R6); ``apply_rotary`` rotates in fp32
and casts back.

Legend: B batch, H heads, T queries, S keys, K rotary/head dim, D model width, P positions.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.norms import upcast

__all__ = [
    "LearnedPositions",
    "RotaryEmbedding",
    "RotaryPairing",
    "ScaledSinusoid",
    "SinusoidalPositions",
    "T5RelativePositionBias",
    "apply_rotary",
    "relative_position_bucket",
    "rotary_cos_sin",
    "sinusoid_table",
]

RotaryPairing = Literal["interleaved", "half"]
_PAIRINGS = ("interleaved", "half")


def _inverse_frequencies(dim: int, base: float, device: torch.device | None) -> Tensor:
    # base ** (-2i/dim) for i < dim/2, in fp32 on the target device (no float64: MPS has none, and no host copy).
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim
    return 1.0 / base**exponents


def _positions(seq_len: int, offset: int, device: torch.device | None) -> Tensor:
    return torch.arange(offset, offset + seq_len, dtype=torch.float32, device=device)  # exact below 2**24


def rotary_cos_sin(
    seq_len: int,
    *,
    dim: int,
    base: float,
    pairing: RotaryPairing,
    offset: int = 0,
    device: torch.device | None = None,
    positions: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """fp32 ``(cos_TK, sin_TK)`` for positions ``offset .. offset+seq_len-1``, laid out for ``pairing``.

    ``positions (..., T)`` (integer) replaces ``offset`` with explicit per-example positions (left-padded batches);
    the tables are then ``(..., T, K)``.
    """
    if pairing not in _PAIRINGS:
        raise ValueError(f"pairing must be one of {_PAIRINGS}, got {pairing!r}")
    if positions is None:
        angles_TK2 = torch.outer(_positions(seq_len, offset, device), _inverse_frequencies(dim, base, device))
    else:
        if positions.shape[-1] != seq_len:
            raise ValueError(f"positions end in {positions.shape[-1]} but seq_len is {seq_len}")
        inverse_K2 = _inverse_frequencies(dim, base, positions.device)
        angles_TK2 = positions.float()[..., None] * inverse_K2  # (..., T, K/2); exact below 2**24 as above
    if pairing == "interleaved":
        angles_TK = angles_TK2.repeat_interleave(2, dim=-1)  # [a0, a0, a1, a1, ...]
    else:
        angles_TK = torch.cat([angles_TK2, angles_TK2], dim=-1)  # [a0, a1, ..., a0, a1, ...]
    return angles_TK.cos(), angles_TK.sin()


def _rotate_pairs(x_K: Tensor, pairing: RotaryPairing) -> Tensor:
    """The 90-degree rotation of every pair: (a, b) -> (-b, a)."""
    if pairing == "interleaved":
        x_K2 = x_K.unflatten(-1, (-1, 2))  # (..., K/2, 2): pairs (0,1), (2,3), ...
        return torch.stack([-x_K2[..., 1], x_K2[..., 0]], dim=-1).flatten(-2)
    first, second = x_K.chunk(2, dim=-1)  # pairs (i, i + K/2)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x_TK: Tensor, cos_TK: Tensor, sin_TK: Tensor, pairing: RotaryPairing) -> Tensor:
    """Rotate ``x (..., T, K)`` by the angles in ``cos/sin (T, K)``; computed in fp32, returned in ``x.dtype``.

    For a KV cache, compute ``cos/sin`` with ``offset = number of cached positions`` (``RotaryEmbedding``).
    Per-example tables (``positions=`` of ``RotaryEmbedding``) must broadcast against ``x``, e.g. ``(B, 1, T, K)``.
    """
    if pairing not in _PAIRINGS:
        raise ValueError(f"pairing must be one of {_PAIRINGS}, got {pairing!r}")
    if x_TK.shape[-2:] != cos_TK.shape[-2:]:  # leading dims of cos/sin (per-example positions) broadcast
        raise ValueError(f"x ends in {tuple(x_TK.shape[-2:])} but cos/sin are {tuple(cos_TK.shape)}")
    x32 = upcast(x_TK)
    return (x32 * cos_TK + _rotate_pairs(x32, pairing) * sin_TK).to(x_TK.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE over the last ``dim`` features. No parameters and no buffers: tables are built per call, any length."""

    def __init__(self, dim: int, *, pairing: RotaryPairing, base: float = 10_000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary dim must be even, got {dim}")
        if pairing not in _PAIRINGS:
            raise ValueError(f"pairing must be one of {_PAIRINGS}, got {pairing!r}")
        self.dim, self.base, self.pairing = dim, float(base), pairing

    def forward(
        self, seq_len: int, *, offset: int = 0, device: torch.device | None = None, positions: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """fp32 ``(cos_TK, sin_TK)`` for positions ``offset .. offset+seq_len-1``, or ``(..., T, K)`` at
        ``positions``."""
        return rotary_cos_sin(
            seq_len,
            dim=self.dim,
            base=self.base,
            pairing=self.pairing,
            offset=offset,
            device=device,
            positions=positions,
        )

    def rotate(self, x_BHTK: Tensor, *, offset: int = 0) -> Tensor:
        """Apply RoPE to ``x (..., T, K)`` whose first position is ``offset``."""
        cos_TK, sin_TK = self(x_BHTK.shape[-2], offset=offset, device=x_BHTK.device)
        return apply_rotary(x_BHTK, cos_TK, sin_TK, self.pairing)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, pairing={self.pairing!r}, base={self.base:g}"


def sinusoid_table(
    seq_len: int, *, dim: int, base: float = 10_000.0, offset: int = 0, device: torch.device | None = None
) -> Tensor:
    """fp32 ``(T, D)`` table ``cat(sin(p * w), cos(p * w))`` with ``w_i = base ** (-2i / D)``."""
    if dim % 2:
        raise ValueError(f"sinusoid dim must be even, got {dim}")
    angles_TD2 = torch.outer(_positions(seq_len, offset, device), _inverse_frequencies(dim, base, device))
    return torch.cat([angles_TD2.sin(), angles_TD2.cos()], dim=-1)


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal absolute positions (no parameters); returns the ``(T, D)`` table to add to the input."""

    def __init__(self, dim: int, *, base: float = 10_000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoid dim must be even, got {dim}")
        self.dim, self.base = dim, float(base)

    def forward(
        self, seq_len: int, *, offset: int = 0, device: torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        return sinusoid_table(seq_len, dim=self.dim, base=self.base, offset=offset, device=device).to(dtype)


class ScaledSinusoid(nn.Module):
    """Sinusoidal table times one learnable scalar (FLASH); returned in the dtype of the scalar."""

    def __init__(self, dim: int, *, base: float = 10_000.0, init_scale: float = 1.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoid dim must be even, got {dim}")
        self.dim, self.base = dim, float(base)
        self.scale = nn.Parameter(torch.full((1,), float(init_scale)))

    def forward(self, seq_len: int, *, offset: int = 0) -> Tensor:
        table_TD = sinusoid_table(seq_len, dim=self.dim, base=self.base, offset=offset, device=self.scale.device)
        return (table_TD * self.scale.float()).to(self.scale.dtype)


def relative_position_bucket(
    relative_position: Tensor, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128
) -> Tensor:
    """T5 bucket of ``relative_position = key_pos - query_pos`` (int tensor, any shape).

    Half the buckets (of each direction when bidirectional) hold exact distances 0..max_exact-1; the rest are
    log-spaced up to ``max_distance``, beyond which everything shares the last bucket. Causal (``bidirectional
    =False``) maps every future key (relative_position > 0) to bucket 0.
    """
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (relative_position > 0).long() * num_buckets  # keys after the query: upper half
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    # Log-spaced buckets for max_exact <= distance < max_distance; clamp(min=1) only avoids log(0) in the unused branch.
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    far = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return bucket + torch.where(distance < max_exact, distance, far)


class T5RelativePositionBias(nn.Module):
    """Learned per-head scalar bias per T5 bucket; returns ``(H, T, S)`` to add to the attention scores.

    Query positions are aligned lower-right with the keys (query i sits at key position ``i + S - T``), which is
    the right convention for KV caches. ``scale`` multiplies the bias (FLASH uses ``sqrt(key_size)``).
    """

    def __init__(
        self,
        num_heads: int,
        *,
        bidirectional: bool,
        num_buckets: int = 32,
        max_distance: int = 128,
        scale: float = 1.0,
    ):
        super().__init__()
        self.num_heads, self.bidirectional = num_heads, bidirectional
        self.num_buckets, self.max_distance, self.scale = num_buckets, max_distance, scale
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

    def forward(self, query_len: int, key_len: int | None = None) -> Tensor:
        key_len = query_len if key_len is None else key_len
        device = self.relative_attention_bias.weight.device
        query_pos_T = torch.arange(query_len, device=device) + (key_len - query_len)
        key_pos_S = torch.arange(key_len, device=device)
        buckets_TS = relative_position_bucket(
            key_pos_S[None, :] - query_pos_T[:, None],
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        return self.relative_attention_bias(buckets_TS).permute(2, 0, 1) * self.scale  # (H, T, S)

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, bidirectional={self.bidirectional}, buckets={self.num_buckets}, "
            f"max_distance={self.max_distance}, scale={self.scale:g}"
        )


class LearnedPositions(nn.Module):
    """Learned absolute position table (BERT, GPT-2); returns rows ``offset .. offset+T-1`` as ``(T, D)``."""

    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.max_positions, self.dim = max_positions, dim
        self.weight = nn.Parameter(torch.empty(max_positions, dim))
        nn.init.normal_(self.weight, std=0.02)  # placeholder; models re-initialise in their init_weights

    def forward(self, seq_len: int, *, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """Rows ``offset .. offset+T-1`` as ``(T, D)``, or the rows at integer ``positions (..., T)`` as
        ``(..., T, D)``. Explicit positions are not range-checked here (that would need a device sync); an index
        beyond the table raises in ``F.embedding``."""
        if positions is not None:
            if positions.shape[-1] != seq_len:
                raise ValueError(f"positions end in {positions.shape[-1]} but seq_len is {seq_len}")
            return F.embedding(positions, self.weight)
        if offset + seq_len > self.max_positions:
            raise ValueError(
                f"positions {offset}..{offset + seq_len - 1} exceed the learned table of {self.max_positions} rows"
            )
        return self.weight[offset : offset + seq_len]

    def extra_repr(self) -> str:
        return f"{self.max_positions}, {self.dim}"
