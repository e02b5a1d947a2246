"""Softmax attention: eager reference kernel, SDPA kernel with the same signature, mask helpers, and a
multi-head attention module (fused or separate projections, grouped-query heads, optional RoPE and KV cache).

References: Vaswani et al. 2017 (scaled dot-product attention); Ainslie et al. 2023 (GQA; query head h reads
key/value head ``h // (H / Hkv)``, as HF ``repeat_kv`` and SDPA ``enable_gqa``); HF
``eager_attention_forward`` / ``ALL_ATTENTION_FUNCTIONS`` for the kernel-by-name registry (R5); nanoGPT's flash
vs manual attention.

Conventions and deliberate choices:
- ``keep`` is a bool mask, True = attend, broadcastable to ``(B, H, T, S)``. Key padding ``(B, S)`` must be
  expanded with ``keep_from_padding_mask`` to ``(B, 1, 1, S)``; a 2-D mask is read as ``(T, S)`` by broadcasting.
- ``causal=True`` is lower-right aligned: query i sees keys ``j <= i + S - T``. SDPA's ``is_causal`` is top-left
  aligned (pytorch/pytorch#108108), so it is used only when T == S; otherwise an explicit mask is built.
- A query row with no key to attend to returns zeros (not NaN) in both kernels, with finite gradients: such rows
  are temporarily un-masked for the softmax and their outputs zeroed afterwards.
- Scores and softmax run in fp32 in the eager kernel (R6); SDPA uses its own accumulation.

Legend: B batch, H query heads, G key/value heads (Hkv), T queries, S keys, K head dim, D model width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.norms import upcast
from lmforge.nn.positions import RotaryEmbedding, apply_rotary

__all__ = [
    "ATTENTION_KERNELS",
    "AttentionFn",
    "KeyValueBuffer",
    "KeyValueCache",
    "MultiHeadAttention",
    "attend",
    "causal_keep",
    "eager_attention",
    "keep_from_padding_mask",
    "sdpa_attention",
]

KeyValueCache = tuple[Tensor, Tensor]  # (k_BGSK, v_BGSK), keys already rotated
AttentionFn = Callable[..., Tensor]


class KeyValueBuffer:
    """A growing ``(k, v)`` cache in storage allocated once for ``capacity`` keys: each decoding step writes its
    keys in place instead of ``torch.cat`` copying the whole cache (the copy grows with the sequence: O(S^2) bytes
    over a generation). It reads like the ``(k, v)`` tuple it replaces: ``cache[0]`` is ``k (B, G, S, K)``."""

    def __init__(self, k_BGSK: Tensor, v_BGSK: Tensor, *, capacity: int):
        batch, groups, length, dim = k_BGSK.shape
        if capacity < length:
            raise ValueError(f"capacity {capacity} is smaller than the {length} keys already cached")
        self._k = k_BGSK.new_empty(batch, groups, capacity, dim)
        self._v = v_BGSK.new_empty(batch, groups, capacity, v_BGSK.shape[-1])
        self._k[:, :, :length], self._v[:, :, :length] = k_BGSK, v_BGSK
        self.length, self.capacity = length, capacity

    def append(self, k_BGTK: Tensor, v_BGTK: Tensor) -> KeyValueCache:
        """Store the new keys/values after the cached ones; returns all of them (views, no copy)."""
        end = self.length + k_BGTK.shape[-2]
        if end > self.capacity:
            raise ValueError(f"KV buffer full: {end} keys for a capacity of {self.capacity}")
        self._k[:, :, self.length : end], self._v[:, :, self.length : end] = k_BGTK, v_BGTK
        self.length = end
        return self[0], self[1]

    def __getitem__(self, index: int) -> Tensor:
        return (self._k, self._v)[index][:, :, : self.length]

    def __iter__(self):
        return iter((self[0], self[1]))


def keep_from_padding_mask(attention_mask_BS: Tensor) -> Tensor:
    """HF-style ``attention_mask (B, S)`` (1 = real token) -> bool ``keep (B, 1, 1, S)``."""
    if attention_mask_BS.ndim != 2:
        raise ValueError(f"attention_mask must be (batch, keys), got shape {tuple(attention_mask_BS.shape)}")
    return attention_mask_BS.bool()[:, None, None, :]


def causal_keep(query_len: int, key_len: int, *, device: torch.device | None = None) -> Tensor:
    """Lower-right aligned causal ``keep (T, S)``: query i sees keys ``j <= i + S - T``."""
    return torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril(diagonal=key_len - query_len)


def _check_shapes(q: Tensor, k: Tensor, v: Tensor) -> tuple[int, int]:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be 4-D (B, heads, len, dim); got {q.shape}, {k.shape}, {v.shape}")
    num_heads, num_kv_heads = q.shape[1], k.shape[1]
    if k.shape != v.shape or num_heads % num_kv_heads:
        raise ValueError(f"k/v must match and divide the query heads; got q {q.shape}, k {k.shape}, v {v.shape}")
    return num_heads, num_kv_heads


def _full_keep(keep: Tensor | None, causal: bool, query_len: int, key_len: int, device: torch.device) -> Tensor | None:
    """``keep & causal`` as one bool mask broadcastable to (B, H, T, S), or None when nothing is masked."""
    if keep is not None and keep.dtype != torch.bool:
        raise ValueError(f"keep must be a bool mask (True = attend), got dtype {keep.dtype}")
    if causal:
        causal_TS = causal_keep(query_len, key_len, device=device)
        return causal_TS if keep is None else keep & causal_TS
    return keep


def eager_attention(
    q_BHTK: Tensor,
    k_BGSK: Tensor,
    v_BGSK: Tensor,
    keep: Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """Reference softmax attention, ``(B, H, T, K)``. fp32 scores and softmax."""
    num_heads, num_kv_heads = _check_shapes(q_BHTK, k_BGSK, v_BGSK)
    query_len, key_len = q_BHTK.shape[-2], k_BGSK.shape[-2]
    scale = q_BHTK.shape[-1] ** -0.5 if scale is None else scale
    if num_kv_heads != num_heads:  # GQA: head h reads kv head h // (H/G)
        k_BGSK = k_BGSK.repeat_interleave(num_heads // num_kv_heads, dim=1)
        v_BGSK = v_BGSK.repeat_interleave(num_heads // num_kv_heads, dim=1)
    scores_BHTS = torch.matmul(upcast(q_BHTK), upcast(k_BGSK).transpose(-1, -2)) * scale
    keep_full = _full_keep(keep, causal, query_len, key_len, q_BHTK.device)
    if keep_full is not None:
        has_key = keep_full.any(dim=-1, keepdim=True)  # rows with no key: un-mask now, zero the output below
        scores_BHTS = scores_BHTS.masked_fill(~(keep_full | ~has_key), float("-inf"))
    probs_BHTS = torch.softmax(scores_BHTS, dim=-1)
    if dropout_p > 0.0:
        probs_BHTS = F.dropout(probs_BHTS, p=dropout_p)
    out_BHTK = torch.matmul(probs_BHTS.to(v_BGSK.dtype), v_BGSK)
    if keep_full is not None:
        out_BHTK = out_BHTK.masked_fill(~has_key, 0.0)
    return out_BHTK


def _kernel_options(*, causal: bool = False, scale: float | None = None, dropout_p: float = 0.0):
    """The keyword options every kernel takes (an unknown one is a ``TypeError``), with their defaults."""
    return causal, scale, dropout_p


def sdpa_attention(q_BHTK: Tensor, k_BGSK: Tensor, v_BGSK: Tensor, keep: Tensor | None = None, **options) -> Tensor:
    """``F.scaled_dot_product_attention`` with the eager kernel's semantics and options, ``(B, H, T, K)``."""
    causal, scale, dropout_p = _kernel_options(**options)
    num_heads, num_kv_heads = _check_shapes(q_BHTK, k_BGSK, v_BGSK)
    query_len, key_len = q_BHTK.shape[-2], k_BGSK.shape[-2]
    sdpa = dict(scale=scale, dropout_p=dropout_p)
    if num_kv_heads != num_heads:
        sdpa["enable_gqa"] = True  # torch >= 2.5; same head mapping as the eager kernel (repeat_interleave)
    if keep is None and (not causal or query_len == key_len or query_len == 1):
        # is_causal is top-left aligned: equal to lower-right only when T == S. One query (decoding) sees all keys.
        is_causal = causal and query_len == key_len
        return F.scaled_dot_product_attention(q_BHTK, k_BGSK, v_BGSK, is_causal=is_causal, **sdpa)
    keep_full = _full_keep(keep, causal, query_len, key_len, q_BHTK.device)
    has_key = keep_full.any(dim=-1, keepdim=True)
    out_BHTK = F.scaled_dot_product_attention(q_BHTK, k_BGSK, v_BGSK, attn_mask=keep_full | ~has_key, **sdpa)
    return out_BHTK.masked_fill(~has_key, 0.0)


ATTENTION_KERNELS: dict[str, AttentionFn] = {"eager": eager_attention, "sdpa": sdpa_attention}


def attend(
    q_BHTK: Tensor, k_BGSK: Tensor, v_BGSK: Tensor, keep: Tensor | None = None, *, kernel: str = "sdpa", **options
) -> Tensor:
    """Dispatch to ``ATTENTION_KERNELS[kernel]``; all kernels share one signature (``eager_attention``'s) and one
    semantics."""
    if kernel not in ATTENTION_KERNELS:
        raise ValueError(f"unknown attention kernel {kernel!r}; choose from {sorted(ATTENTION_KERNELS)}")
    return ATTENTION_KERNELS[kernel](q_BHTK, k_BGSK, v_BGSK, keep, **options)


class MultiHeadAttention(nn.Module):
    """Multi-head (or grouped-query) self-attention with optional RoPE on q/k and an optional KV cache.

    Parameters: ``q_proj``/``k_proj``/``v_proj`` (or one fused ``qkv`` with rows ordered [q | k | v]) and
    ``o_proj``. ``forward`` returns ``(out_BTD, present)`` where ``present`` is the updated ``(k, v)`` cache when
    ``use_cache`` is set, else None. ``keep`` must cover all keys, cached ones included (S = past + T).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        bias: bool = True,
        fused_qkv: bool = False,
        rope: RotaryEmbedding | None = None,
        kernel: str = "sdpa",
        causal: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        num_key_value_heads = num_heads if num_key_value_heads is None else num_key_value_heads
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
            head_dim = dim // num_heads
        if num_heads % num_key_value_heads:
            raise ValueError(f"num_heads {num_heads} must be a multiple of num_key_value_heads {num_key_value_heads}")
        if kernel not in ATTENTION_KERNELS:
            raise ValueError(f"unknown attention kernel {kernel!r}; choose from {sorted(ATTENTION_KERNELS)}")
        if rope is not None and rope.dim != head_dim:
            raise ValueError(f"rope dim {rope.dim} must equal head_dim {head_dim}")
        self.num_heads, self.num_key_value_heads, self.head_dim = num_heads, num_key_value_heads, head_dim
        self.kernel, self.causal, self.dropout = kernel, causal, dropout
        self.rope = rope
        q_width, kv_width = num_heads * head_dim, num_key_value_heads * head_dim
        self.split_sizes = (q_width, kv_width, kv_width)
        if fused_qkv:
            self.qkv = nn.Linear(dim, q_width + 2 * kv_width, bias=bias)
        else:
            self.q_proj = nn.Linear(dim, q_width, bias=bias)
            self.k_proj = nn.Linear(dim, kv_width, bias=bias)
            self.v_proj = nn.Linear(dim, kv_width, bias=bias)
        self.fused_qkv = fused_qkv
        self.o_proj = nn.Linear(q_width, dim, bias=bias)

    def forward(
        self,
        x_BTD: Tensor,
        keep: Tensor | None = None,
        *,
        past_key_value: KeyValueCache | None = None,
        use_cache: bool = False,
        position_ids: Tensor | None = None,
    ) -> tuple[Tensor, KeyValueCache | None]:
        """``position_ids (B, T)``: RoPE positions of the new tokens; default ``past + arange(T)``. Left-padded
        batches pass ``cumsum(attention_mask) - 1`` so every example's first real token is at position 0."""
        if self.fused_qkv:
            q_BTX, k_BTY, v_BTY = self.qkv(x_BTD).split(self.split_sizes, dim=-1)
        else:
            q_BTX, k_BTY, v_BTY = self.q_proj(x_BTD), self.k_proj(x_BTD), self.v_proj(x_BTD)
        q_BHTK = q_BTX.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        k_BGTK = k_BTY.unflatten(-1, (self.num_key_value_heads, self.head_dim)).transpose(1, 2)
        v_BGTK = v_BTY.unflatten(-1, (self.num_key_value_heads, self.head_dim)).transpose(1, 2)
        past_len = 0 if past_key_value is None else past_key_value[0].shape[-2]
        if self.rope is not None and position_ids is not None:
            cos_B1TK, sin_B1TK = self.rope(x_BTD.shape[1], positions=position_ids[:, None])
            q_BHTK = apply_rotary(q_BHTK, cos_B1TK, sin_B1TK, self.rope.pairing)
            k_BGTK = apply_rotary(k_BGTK, cos_B1TK, sin_B1TK, self.rope.pairing)
        elif self.rope is not None:  # new positions start after the cached ones
            cos_TK, sin_TK = self.rope(x_BTD.shape[1], offset=past_len, device=x_BTD.device)
            q_BHTK = apply_rotary(q_BHTK, cos_TK, sin_TK, self.rope.pairing)
            k_BGTK = apply_rotary(k_BGTK, cos_TK, sin_TK, self.rope.pairing)
        if isinstance(past_key_value, KeyValueBuffer):  # in place; the buffer itself is the present cache
            k_BGTK, v_BGTK = past_key_value.append(k_BGTK, v_BGTK)
        elif past_key_value is not None:
            k_BGTK = torch.cat([past_key_value[0], k_BGTK], dim=-2)  # now (B, G, S, K), S = past + T
            v_BGTK = torch.cat([past_key_value[1], v_BGTK], dim=-2)
        out_BHTK = attend(
            q_BHTK,
            k_BGTK,
            v_BGTK,
            keep,
            kernel=self.kernel,
            causal=self.causal,
            dropout_p=self.dropout if self.training else 0.0,
        )
        out_BTD = self.o_proj(out_BHTK.transpose(1, 2).flatten(-2))
        if not use_cache:
            return out_BTD, None
        return out_BTD, (past_key_value if isinstance(past_key_value, KeyValueBuffer) else (k_BGTK, v_BGTK))

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, kv_heads={self.num_key_value_heads}, head_dim={self.head_dim}, "
            f"kernel={self.kernel!r}, causal={self.causal}"
        )
