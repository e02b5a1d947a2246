"""Gated Attention Unit (GAU): the fused projection, shared-QK scale/offset heads, the three attention
normalisers, the learned Toeplitz relative bias and token shift.

References:
- GAU and the ``relu(q k^T / n + b)^2`` kernel: Hua, Dai, Liu, Le 2022, "Transformer Quality in Linear Time"
  (arXiv 2202.10447), section 2 and pseudo-code 1 (``offset_scale``, ``rel_pos_bias``).
- GAU-alpha: ZhuiyiTechnology/GAU-alpha ``models.py``; the layer is bert4keras ``GatedAttentionUnit``
  (``layers.py``) and the normalisers are bert4keras ``attention_normalize`` (``backend.py``):
  ``softmax_plus`` = ``softmax(a * log(n) / log(512))`` (https://kexue.fm/archives/8823) and ``squared_relu`` =
  ``relu(a)^2 / n``, both with ``a = q k^T / sqrt(s)`` and ``n`` the number of *visible* keys of each query row.
- Toeplitz bias: the paper's ``rel_pos_bias`` (a learned vector ``w`` of 2L-1 offsets) as in JunnYu/FLASHQuad_pytorch
  ``flash/gau.py``. Token shift: lucidrains/FLASH-pytorch ``shift_tokens`` (half the features of each token are
  replaced by those of the previous token).

Deliberate choices (tested in ``tests/nn/test_gau.py``, written up in ``docs/architectures/{gau-alpha,flash}.md``):
- ``n`` is counted per example *and* per query row from the boolean ``keep`` mask (padding and, when causal,
  future keys excluded), never the padded batch length: padding cannot change outputs (the ``1/n`` trap).
- ``softmax_plus`` clamps ``n`` from below by ``min_length`` (1 = the GAU-alpha release and JunnYu's port; bert4keras
  commit 988e899 of 2023 uses 16).
- The FLASH kernel adds the relative bias *after* dividing by ``n`` (the paper; lucidrains ``GAU`` divides the bias
  too). Its ``n`` is either a fixed training length (JunnYu's fix for FLASHQuad_pytorch#1) or the valid length.
- Masked entries are zeroed *after* the activation (``relu(b)^2`` of a masked entry is not 0 when ``b > 0``).
- The Toeplitz bias clamps offsets beyond ``max_length - 1`` to the last learned value (the paper switches to a
  RoPE-product bias there; JunnYu never reaches that branch), so any length works.

Legend: B batch, T queries, S keys, D model width, E expansion (u, v width), K shared q/k width, H scale/offset heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.norms import upcast
from lmforge.nn.positions import RotaryEmbedding, apply_rotary

__all__ = [
    "NORMALIZERS",
    "GatedAttentionUnit",
    "ReLUSquaredKernel",
    "ScaleOffset",
    "SoftmaxPlus",
    "SquaredReLU",
    "ToeplitzRelativeBias",
    "gau_keep",
    "relu_squared_kernel",
    "rotate_prefix",
    "softmax_plus",
    "squared_relu",
    "token_shift",
    "valid_length",
]


def valid_length(keep_BTS: Tensor | None, num_keys: int, *, dtype: torch.dtype) -> Tensor:
    """Number of visible keys of every query row, ``(B, T, 1)`` (or a 0-d tensor when nothing is masked)."""
    if keep_BTS is None:
        return torch.tensor(float(num_keys), dtype=dtype)
    return keep_BTS.sum(-1, keepdim=True).to(dtype)


def gau_keep(keep_BS: Tensor | None, *, num_queries: int, causal: bool, device: torch.device) -> Tensor | None:
    """Boolean ``keep (B, 1|T, S)`` from a key-padding mask and causality; True = attend. None = attend to all."""
    keep_B1S = None if keep_BS is None else keep_BS.bool()[:, None, :]
    if not causal:
        return keep_B1S
    num_keys = num_queries if keep_BS is None else keep_BS.shape[-1]
    causal_TS = torch.ones(num_queries, num_keys, dtype=torch.bool, device=device).tril(num_keys - num_queries)
    return causal_TS[None] if keep_B1S is None else keep_B1S & causal_TS


def softmax_plus(
    scores_BTS: Tensor, keep_BTS: Tensor | None, *, log_base_length: int = 512, min_length: int = 1
) -> Tensor:
    """``softmax(scores * log(n) / log(log_base_length))`` over visible keys, ``n = max(valid keys, min_length)``."""
    scores32 = upcast(scores_BTS)  # fp32: log(n) scaling and softmax (R6)
    n_BT1 = valid_length(keep_BTS, scores_BTS.shape[-1], dtype=scores32.dtype).clamp(min=max(min_length, 1))
    logits_BTS = scores32 * (torch.log(n_BT1) / math.log(log_base_length))
    if keep_BTS is not None:
        # finfo.min, not -inf: a row with no visible key (left padding) stays finite instead of NaN.
        logits_BTS = logits_BTS.masked_fill(~keep_BTS, torch.finfo(logits_BTS.dtype).min)
    return torch.softmax(logits_BTS, dim=-1).to(scores_BTS.dtype)


def squared_relu(scores_BTS: Tensor, keep_BTS: Tensor | None, *, min_length: int = 1) -> Tensor:
    """``relu(scores)^2 / n`` with ``n`` the visible keys of each row; masked keys get exactly 0."""
    n_BT1 = valid_length(keep_BTS, scores_BTS.shape[-1], dtype=scores_BTS.dtype).clamp(min=max(min_length, 1))
    weights_BTS = F.relu(scores_BTS).square() / n_BT1
    return weights_BTS if keep_BTS is None else weights_BTS.masked_fill(~keep_BTS, 0.0)


def relu_squared_kernel(
    qk_BTS: Tensor, keep_BTS: Tensor | None, *, length: int | None, bias_TS: Tensor | None = None
) -> Tensor:
    """FLASH paper kernel ``relu(q k^T / n + b)^2``; ``n = length`` (fixed) or the visible keys (``length=None``)."""
    n = valid_length(keep_BTS, qk_BTS.shape[-1], dtype=qk_BTS.dtype).clamp(min=1) if length is None else length
    scores_BTS = qk_BTS / n if bias_TS is None else qk_BTS / n + bias_TS
    weights_BTS = F.relu(scores_BTS).square()
    return weights_BTS if keep_BTS is None else weights_BTS.masked_fill(~keep_BTS, 0.0)  # after the activation


class SoftmaxPlus(nn.Module):
    """GAU-alpha's normaliser: ``softmax(log_512(n) * (q k^T / sqrt(s) + b))`` (bert4keras ``softmax_plus``)."""

    def __init__(self, key_size: int, *, scale: bool = True, log_base_length: int = 512, min_length: int = 1):
        super().__init__()
        self.scaling = key_size**-0.5 if scale else 1.0
        self.log_base_length, self.min_length = log_base_length, min_length

    def forward(self, qk_BTS: Tensor, keep_BTS: Tensor | None, bias_TS: Tensor | None = None) -> Tensor:
        scores_BTS = qk_BTS * self.scaling if bias_TS is None else qk_BTS * self.scaling + bias_TS
        return softmax_plus(scores_BTS, keep_BTS, log_base_length=self.log_base_length, min_length=self.min_length)

    def extra_repr(self) -> str:
        return f"scaling={self.scaling:.4g}, log_base_length={self.log_base_length}, min_length={self.min_length}"


class SquaredReLU(nn.Module):
    """bert4keras ``squared_relu``: ``relu(q k^T / sqrt(s) + b)^2 / n``. Not the FLASH paper kernel (see module doc)."""

    def __init__(self, key_size: int, *, scale: bool = True, min_length: int = 1):
        super().__init__()
        self.scaling, self.min_length = (key_size**-0.5 if scale else 1.0), min_length

    def forward(self, qk_BTS: Tensor, keep_BTS: Tensor | None, bias_TS: Tensor | None = None) -> Tensor:
        scores_BTS = qk_BTS * self.scaling if bias_TS is None else qk_BTS * self.scaling + bias_TS
        return squared_relu(scores_BTS, keep_BTS, min_length=self.min_length)

    def extra_repr(self) -> str:
        return f"scaling={self.scaling:.4g}, min_length={self.min_length}"


class ReLUSquaredKernel(nn.Module):
    """FLASH paper kernel ``relu(q k^T / n + b)^2``; ``length=None`` uses the visible keys of each row as ``n``."""

    def __init__(self, key_size: int, *, length: int | None):
        super().__init__()
        if length is not None and length < 1:
            raise ValueError(f"kernel length must be >= 1 or None, got {length}")
        self.length = length

    def forward(self, qk_BTS: Tensor, keep_BTS: Tensor | None, bias_TS: Tensor | None = None) -> Tensor:
        return relu_squared_kernel(qk_BTS, keep_BTS, length=self.length, bias_TS=bias_TS)

    def extra_repr(self) -> str:
        return f"length={self.length if self.length is not None else 'valid keys'}"


NORMALIZERS: dict[str, type[nn.Module]] = {
    "softmax_plus": SoftmaxPlus,
    "squared_relu": SquaredReLU,
    "relu_squared_kernel": ReLUSquaredKernel,
}


class ScaleOffset(nn.Module):
    """``H`` cheap per-dim affine heads on a shared ``z``: ``z * gamma_h (+ beta_h)`` (GAU's shared-QK trick).

    ``weight (H, K)`` starts at ones (bert4keras ``ScaleOffset``); models re-initialise it (the paper and
    lucidrains use N(0, 0.02)). ``offset=False`` has no ``bias`` (GAU-alpha).
    """

    def __init__(self, dim: int, *, num_heads: int, offset: bool = True):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.weight = nn.Parameter(torch.ones(num_heads, dim))
        self.bias = nn.Parameter(torch.zeros(num_heads, dim)) if offset else None

    def forward(self, z_BTK: Tensor) -> tuple[Tensor, ...]:
        heads_BTHK = z_BTK[..., None, :] * self.weight
        if self.bias is not None:
            heads_BTHK = heads_BTHK + self.bias
        return heads_BTHK.unbind(dim=-2)

    def extra_repr(self) -> str:
        return f"{self.dim}, heads={self.num_heads}, offset={self.bias is not None}"


class ToeplitzRelativeBias(nn.Module):
    """Learned scalar per offset ``j - i`` in ``[-(L-1), L-1]`` (paper ``rel_pos_bias``); returns ``(T, S)``.

    Entry ``(i, j)`` is ``weight[clamp(j - i) + L - 1]``: JunnYu's ``w`` of length ``2 * 512 - 1`` maps one to one.
    """

    def __init__(self, max_length: int):
        super().__init__()
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = max_length
        self.weight = nn.Parameter(torch.zeros(2 * max_length - 1))

    def forward(self, query_len: int, key_len: int | None = None) -> Tensor:
        key_len = query_len if key_len is None else key_len
        limit = self.max_length - 1
        if query_len <= self.max_length and key_len <= self.max_length:
            # No offset is clamped: row i is the window weight[L-1-i : L-1-i+S], so the matrix is a strided view
            # (unfold) of T+S-1 weights. Same values as the gather below, but its backward is a cheap fold instead
            # of an index_put_ accumulating T*S entries (4.4x faster per layer at 1024, benchmarks/notes.md P1).
            window = self.weight[limit + 1 - query_len : limit + key_len]  # offsets -(T-1) .. S-1
            return window.unfold(0, key_len, 1).flip(0)
        device = self.weight.device
        offsets_TS = torch.arange(key_len, device=device)[None, :] - torch.arange(query_len, device=device)[:, None]
        return self.weight[offsets_TS.clamp(-limit, limit) + limit]

    def extra_repr(self) -> str:
        return f"max_length={self.max_length}"


def token_shift(x_BTD: Tensor) -> Tensor:
    """The first half of the features of token t come from token t-1 (zeros at t=0); the rest pass through."""
    shifted_BTD, passed_BTD = x_BTD.chunk(2, dim=-1)
    shifted_BTD = F.pad(shifted_BTD, (0, 0, 1, -1))  # (B, T, D/2): one step later along T
    return torch.cat([shifted_BTD, passed_BTD], dim=-1)


def rotate_prefix(x_BTK: Tensor, rope: RotaryEmbedding | None) -> Tensor:
    """RoPE on the first ``rope.dim`` features of ``x`` (partial rotary when ``rope.dim < K``), positions 0..T-1."""
    if rope is None:
        return x_BTK
    cos_TR, sin_TR = rope(x_BTK.shape[-2], device=x_BTK.device)
    if rope.dim == x_BTK.shape[-1]:
        return apply_rotary(x_BTK, cos_TR, sin_TR, rope.pairing)
    rotated_BTR, passed_BTK = x_BTK[..., : rope.dim], x_BTK[..., rope.dim :]
    return torch.cat([apply_rotary(rotated_BTR, cos_TR, sin_TR, rope.pairing), passed_BTK], dim=-1)


class GatedAttentionUnit(nn.Module):
    """One GAU (no norm, no residual): ``o = W_o (u * (A v))`` with ``u, v, z = silu(W_i x)`` and shared-QK ``z``.

    ``normalizer`` maps ``(q k^T (B, T, S), keep (B, 1|T, S), bias (T, S) | None) -> A``; pick one of
    ``NORMALIZERS``. ``relative_bias(T, S)`` (T5 or Toeplitz) is added inside the normaliser. ``rope`` rotates the
    first ``rope.dim`` features of q and k. ``bias`` switches the biases of both projections *and* the offsets.
    """

    def __init__(
        self,
        dim: int,
        *,
        expansion: int,
        key_size: int,
        normalizer: nn.Module,
        bias: bool = False,
        rope: RotaryEmbedding | None = None,
        relative_bias: nn.Module | None = None,
        causal: bool = False,
        attention_dropout: float = 0.0,
    ):
        super().__init__()
        if rope is not None and rope.dim > key_size:
            raise ValueError(f"rotary dim {rope.dim} exceeds key_size {key_size}")
        self.expansion, self.key_size, self.causal = expansion, key_size, causal
        self.proj = nn.Linear(dim, 2 * expansion + key_size, bias=bias)  # fused W_u | W_v | W_z
        self.scale_offset = ScaleOffset(key_size, num_heads=2, offset=bias)  # q, k
        self.normalizer = normalizer
        self.rope = rope
        self.relative_bias = relative_bias
        self.attention_dropout = nn.Dropout(attention_dropout)
        self.out = nn.Linear(expansion, dim, bias=bias)

    def forward(self, x_BTD: Tensor, keep_BS: Tensor | None = None) -> Tensor:
        """``keep_BS``: True = real key (B, S); None = no padding."""
        seq_len = x_BTD.shape[1]
        u_BTE, v_BTE, z_BTK = F.silu(self.proj(x_BTD)).split([self.expansion, self.expansion, self.key_size], -1)
        q_BTK, k_BTK = self.scale_offset(z_BTK)
        q_BTK, k_BTK = rotate_prefix(q_BTK, self.rope), rotate_prefix(k_BTK, self.rope)
        qk_BTS = q_BTK @ k_BTK.transpose(1, 2)
        keep_BTS = gau_keep(keep_BS, num_queries=seq_len, causal=self.causal, device=x_BTD.device)
        bias_TS = None if self.relative_bias is None else self.relative_bias(seq_len, seq_len)
        a_BTS = self.attention_dropout(self.normalizer(qk_BTS, keep_BTS, bias_TS))
        return self.out(u_BTE * (a_BTS @ v_BTE))

    def extra_repr(self) -> str:
        return f"expansion={self.expansion}, key_size={self.key_size}, causal={self.causal}"
