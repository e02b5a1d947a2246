"""Mixed-chunk attention (FLASH): quadratic GAU attention inside chunks of G tokens plus linear attention across
chunks, and the GAU layer that uses it (``MixedChunkGAU``).

References: Hua, Dai, Liu, Le 2022, "Transformer Quality in Linear Time" (arXiv 2202.10447), section 3 and
pseudo-code 2-3; lucidrains/FLASH-pytorch ``FLASH`` (v0.1.9: four scale/offset heads ``quad_q, lin_q, quad_k,
lin_k``, one-head T5 bias scaled by sqrt(s) inside chunks, exclusive cumsum over chunks when causal, token shift,
partial RoPE, ``reduce_group_non_causal_attn``).

Conventions (each tested in ``tests/nn/test_flash.py``; see ``docs/architectures/flash.md``):
- Sequences are padded to a multiple of G with masked keys and the padding is cut from the output.
- Padded keys are zeroed in ``lin_k`` so they never enter the linear sums, and masked after the activation in the
  quadratic part.
- Causal: chunk g sees the linear summary of chunks < g only (an *exclusive* prefix: shifted cumsum, exact), its own
  chunk through the causal quadratic part.
- Non-causal: one global ``lin_k^T v`` for all chunks (``reduce_groups=True``, the paper's text and lucidrains'
  default) or each chunk only its own (``False``, the pseudo-code's per-chunk tensor as lucidrains implements it).
- Linear normaliser: ``"group"`` divides by G in both directions (the paper's causal code; constant, so padding
  and length cannot change the scale). ``"valid_length"`` (non-causal only) divides by the number of real keys of
  each example, which equals lucidrains' ``/ n`` on unpadded input (lucidrains uses the padded batch length, which
  makes padded and unpadded outputs differ: not reproduced).
- Deviation from lucidrains: one fused ``d -> 2e + s`` projection instead of ``to_hidden``/``to_qk`` (the same
  function: ``silu`` is element-wise; the converter concatenates the weights).

``mixed_chunk_attention_dense`` is the eager reference (R5): the same maths as one explicit ``(T, S)`` matrix.

Legend: B batch, T tokens, S keys, N chunks, C positions in a chunk (= G), D model width, E expansion, K q/k width.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.gau import ReLUSquaredKernel, ScaleOffset, relu_squared_kernel, rotate_prefix, token_shift
from lmforge.nn.positions import RotaryEmbedding

__all__ = [
    "LinearNormalizer",
    "MixedChunkGAU",
    "mixed_chunk_attention",
    "mixed_chunk_attention_dense",
    "pad_to_multiple",
]

LinearNormalizer = Literal["group", "valid_length"]
_LINEAR_NORMALIZERS = ("group", "valid_length")


def pad_to_multiple(x_BT: Tensor, multiple: int, *, value: float | bool = 0) -> Tensor:
    """Right-pad dim 1 to a multiple of ``multiple`` (no copy when it already is)."""
    pad = -x_BT.shape[1] % multiple
    if pad == 0:
        return x_BT
    widths = (0, 0) * (x_BT.dim() - 2) + (0, pad)
    return F.pad(x_BT, widths, value=value)


def _check(causal: bool, linear_normalizer: str) -> None:
    if linear_normalizer not in _LINEAR_NORMALIZERS:
        raise ValueError(f"linear_normalizer must be one of {_LINEAR_NORMALIZERS}, got {linear_normalizer!r}")
    if causal and linear_normalizer == "valid_length":
        raise ValueError("linear_normalizer='valid_length' needs the whole sequence; use 'group' when causal")


def _linear_scale(keep_BT: Tensor | None, *, group_size: int, num_tokens: int, linear_normalizer: str) -> Tensor:
    """The divisor of the linear part: G, or the real keys of each example ``(B, 1, 1)``."""
    if linear_normalizer == "group":
        return torch.tensor(float(group_size))
    if keep_BT is None:
        return torch.tensor(float(num_tokens))
    return keep_BT.sum(-1).clamp(min=1).float()[:, None, None]


def mixed_chunk_attention(
    quad_q_BTK: Tensor,
    quad_k_BTK: Tensor,
    lin_q_BTK: Tensor,
    lin_k_BTK: Tensor,
    v_BTE: Tensor,
    keep_BT: Tensor | None = None,
    *,
    group_size: int,
    causal: bool,
    bias_CC: Tensor | None = None,
    quad_length: int | None = None,
    linear_normalizer: LinearNormalizer = "group",
    reduce_groups: bool = True,
    dropout: float = 0.0,
    quad_kernel: Callable[[Tensor, Tensor | None, Tensor | None], Tensor] | None = None,
) -> Tensor:
    """``quad + lin`` attention output ``(B, T, E)``; ``keep_BT`` True = real token, None = no padding.

    Quadratic part per chunk: ``relu(quad_q quad_k^T / quad_length + bias)^2 v`` (``quad_length`` defaults to G).
    ``dropout`` (the caller passes 0 in eval) applies to the quadratic weights, as lucidrains. ``quad_kernel``, if
    given, computes those weights as ``quad_kernel(qk (B, N, C, C), keep, bias)`` and must be that same kernel:
    ``MixedChunkGAU`` passes its ``ReLUSquaredKernel`` module so forward hooks see the weights (``lmforge inspect``).
    """
    _check(causal, linear_normalizer)
    batch, seq_len, _ = v_BTE.shape
    group = group_size
    scale = _linear_scale(keep_BT, group_size=group, num_tokens=seq_len, linear_normalizer=linear_normalizer)
    if keep_BT is not None:
        keep_BT = keep_BT.bool()
        lin_k_BTK = lin_k_BTK * keep_BT[..., None]  # padding never enters the linear sums
    if seq_len % group and keep_BT is None:
        keep_BT = torch.ones(batch, seq_len, dtype=torch.bool, device=v_BTE.device)
    quad_q, quad_k, lin_q, lin_k, v = (
        pad_to_multiple(t, group) for t in (quad_q_BTK, quad_k_BTK, lin_q_BTK, lin_k_BTK, v_BTE)
    )
    padded_len = v.shape[1]
    chunks = padded_len // group
    quad_q_BNCK, quad_k_BNCK, lin_k_BNCK, v_BNCE = (t.unflatten(1, (chunks, group)) for t in (quad_q, quad_k, lin_k, v))

    # Quadratic attention inside each chunk.
    keep_BNCC = None if keep_BT is None else pad_to_multiple(keep_BT, group, value=False).view(batch, chunks, 1, group)
    if causal:
        causal_CC = torch.ones(group, group, dtype=torch.bool, device=v.device).tril()
        keep_BNCC = causal_CC if keep_BNCC is None else keep_BNCC & causal_CC
    qk_BNCC = quad_q_BNCK @ quad_k_BNCK.transpose(-1, -2)
    if quad_kernel is None:
        a_BNCC = relu_squared_kernel(qk_BNCC, keep_BNCC, length=quad_length or group, bias_TS=bias_CC)
    else:
        a_BNCC = quad_kernel(qk_BNCC, keep_BNCC, bias_CC)
    if dropout > 0:
        a_BNCC = F.dropout(a_BNCC, p=dropout)
    quad_BTE = (a_BNCC @ v_BNCE).flatten(1, 2)

    # Linear attention across chunks.
    if causal:
        kv_BNKE = lin_k_BNCK.transpose(-1, -2) @ v_BNCE / scale
        kv_BNKE = torch.cat([torch.zeros_like(kv_BNKE[:, :1]), kv_BNKE[:, :-1].cumsum(dim=1)], dim=1)  # exclusive
        lin_BTE = (lin_q.unflatten(1, (chunks, group)) @ kv_BNKE).flatten(1, 2)
    elif reduce_groups:
        kv_BKE = lin_k.transpose(-1, -2) @ v / scale  # one summary of all real keys
        lin_BTE = lin_q @ kv_BKE
    else:
        kv_BNKE = lin_k_BNCK.transpose(-1, -2) @ v_BNCE / scale[..., None]
        lin_BTE = (lin_q.unflatten(1, (chunks, group)) @ kv_BNKE).flatten(1, 2)
    return (quad_BTE + lin_BTE)[:, :seq_len]  # group padding removed


def mixed_chunk_attention_dense(
    quad_q_BTK: Tensor, quad_k_BTK: Tensor, lin_q_BTK: Tensor, lin_k_BTK: Tensor, v_BTE: Tensor, *args, **kwargs
) -> Tensor:
    """Eager reference of ``mixed_chunk_attention`` (same arguments, bound by its signature): one explicit
    ``(B, T, S)`` weight matrix, no padding, no cumsum.

    Quadratic weights where query and key share a chunk, linear weights ``lin_q lin_k^T / scale`` where the key's
    chunk is visible (any chunk / own chunk / earlier chunks), padded keys zero everywhere. ``dropout`` must be 0.
    """
    bound = inspect.signature(mixed_chunk_attention).bind(
        quad_q_BTK, quad_k_BTK, lin_q_BTK, lin_k_BTK, v_BTE, *args, **kwargs
    )
    bound.apply_defaults()
    keep_BT, group_size, causal, bias_CC, quad_length, linear_normalizer, reduce_groups, dropout = (
        bound.arguments[name]
        for name in (
            "keep_BT", "group_size", "causal", "bias_CC", "quad_length", "linear_normalizer", "reduce_groups", "dropout"
        )
    )  # fmt: skip
    _check(causal, linear_normalizer)
    if dropout:
        raise ValueError("the dense reference has no dropout")
    batch, seq_len, _ = v_BTE.shape
    device = v_BTE.device
    scale = _linear_scale(keep_BT, group_size=group_size, num_tokens=seq_len, linear_normalizer=linear_normalizer)
    position_T = torch.arange(seq_len, device=device)
    chunk_T, offset_T = position_T // group_size, position_T % group_size
    same_TS = chunk_T[:, None] == chunk_T[None, :]
    keep_B1S = (
        torch.ones(batch, 1, seq_len, dtype=torch.bool, device=device) if keep_BT is None else keep_BT.bool()[:, None]
    )
    quad_keep_BTS = keep_B1S & same_TS
    if causal:
        quad_keep_BTS = quad_keep_BTS & (position_T[:, None] >= position_T[None, :])
        lin_keep_BTS = keep_B1S & (chunk_T[:, None] > chunk_T[None, :])
    else:
        lin_keep_BTS = keep_B1S & (torch.ones_like(same_TS) if reduce_groups else same_TS)
    bias_TS = None if bias_CC is None else bias_CC.reshape(group_size, group_size)[offset_T[:, None], offset_T[None, :]]
    qk_BTS = quad_q_BTK @ quad_k_BTK.transpose(1, 2)
    quad_BTS = F.relu(qk_BTS / (quad_length or group_size) + (0 if bias_TS is None else bias_TS)).square()
    lin_BTS = lin_q_BTK @ lin_k_BTK.transpose(1, 2) / scale
    weights_BTS = torch.where(quad_keep_BTS, quad_BTS, 0.0) + torch.where(lin_keep_BTS, lin_BTS, 0.0)
    return weights_BTS @ v_BTE


class MixedChunkGAU(nn.Module):
    """A GAU whose attention is mixed-chunk (the FLASH layer, without norm and residual).

    ``u, v, z = silu(W_i shift(x))``; ``quad_q, lin_q, quad_k, lin_k = scale_offset(z)`` (lucidrains' head order);
    RoPE on the first ``rope.dim`` features of all four; ``o = W_o (u * (quad + lin))``. ``relative_bias(C, C)``
    (T5 or Toeplitz) is added to the quadratic scores of every chunk.
    """

    def __init__(
        self,
        dim: int,
        *,
        expansion: int,
        key_size: int,
        group_size: int,
        causal: bool,
        bias: bool = True,
        rope: RotaryEmbedding | None = None,
        relative_bias: nn.Module | None = None,
        shift_tokens: bool = False,
        quad_length: int | None = None,
        linear_normalizer: LinearNormalizer = "group",
        reduce_groups: bool = True,
        attention_dropout: float = 0.0,
    ):
        super().__init__()
        _check(causal, linear_normalizer)
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        if rope is not None and rope.dim > key_size:
            raise ValueError(f"rotary dim {rope.dim} exceeds key_size {key_size}")
        self.expansion, self.key_size, self.group_size, self.causal = expansion, key_size, group_size, causal
        self.shift_tokens, self.quad_length = shift_tokens, quad_length
        self.linear_normalizer, self.reduce_groups = linear_normalizer, reduce_groups
        self.attention_dropout = attention_dropout
        self.proj = nn.Linear(dim, 2 * expansion + key_size, bias=bias)  # fused W_u | W_v | W_z
        self.scale_offset = ScaleOffset(key_size, num_heads=4, offset=bias)  # quad_q, lin_q, quad_k, lin_k
        # the chunk kernel as a module (no parameters): forward hooks see its weights, as GatedAttentionUnit's
        self.quad_kernel = ReLUSquaredKernel(key_size, length=quad_length or group_size)
        self.rope = rope
        self.relative_bias = relative_bias
        self.out = nn.Linear(expansion, dim, bias=bias)

    def forward(self, x_BTD: Tensor, keep_BT: Tensor | None = None) -> Tensor:
        if self.shift_tokens:
            x_BTD = token_shift(x_BTD)
        u_BTE, v_BTE, z_BTK = F.silu(self.proj(x_BTD)).split([self.expansion, self.expansion, self.key_size], -1)
        heads_BHTK = torch.stack(self.scale_offset(z_BTK), dim=1)  # one RoPE table for all four heads
        quad_q, lin_q, quad_k, lin_k = rotate_prefix(heads_BHTK, self.rope).unbind(dim=1)
        bias_CC = None if self.relative_bias is None else self.relative_bias(self.group_size, self.group_size)
        attended_BTE = mixed_chunk_attention(
            quad_q,
            quad_k,
            lin_q,
            lin_k,
            v_BTE,
            keep_BT,
            group_size=self.group_size,
            causal=self.causal,
            bias_CC=bias_CC,
            quad_length=self.quad_length,
            linear_normalizer=self.linear_normalizer,
            reduce_groups=self.reduce_groups,
            dropout=self.attention_dropout if self.training else 0.0,
            quad_kernel=self.quad_kernel,
        )
        return self.out(u_BTE * attended_BTE)

    def extra_repr(self) -> str:
        return (
            f"expansion={self.expansion}, key_size={self.key_size}, group_size={self.group_size}, "
            f"causal={self.causal}, shift_tokens={self.shift_tokens}, linear_normalizer={self.linear_normalizer!r}, "
            f"reduce_groups={self.reduce_groups}"
        )
