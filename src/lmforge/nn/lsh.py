"""Reformer attention: angular-LSH bucketing, chunked LSH self-attention (shared QK) and local chunked attention.

References: Kitaev, Kaiser & Levskaya 2020, "Reformer: The Efficient Transformer" (arXiv 2001.04451) sections 2-3;
HF ``models/reformer/modeling_reformer.py`` (``LSHSelfAttention``, ``LocalSelfAttention``, ``_hash_vectors``,
``_look_adjacent``), itself checked against Trax; lucidrains/reformer-pytorch ``LSHAttention``. Random-weight
parity with HF (fixed ``hash_seed``) is tested in ``tests/models/test_reformer.py``.

What HF does and we do too (so logits match):
- Shared QK: one ``query_key`` projection; keys are RMS-normalised and divided by sqrt(E), i.e. unit-L2, queries
  are not, and there is no further 1/sqrt(E) on the dots (HF = Trax; lucidrains also scales the dots by
  1/sqrt(E): a sqrt(E) temperature difference, ``docs/architectures/reformer.md``).
- Angular LSH ``argmax([xR; -xR])`` with R ~ N(0, 1) of shape (H, E, rounds, buckets/2) drawn once per forward
  (a CPU ``torch.Generator`` seeded with ``hash_seed``, which draws exactly what HF's
  ``torch.manual_seed(hash_seed)`` draws on CPU, or fresh: seeded by one draw from the global CPU RNG);
  factorised buckets ``(b1, b2)`` combine two argmaxes.
  Padding tokens get their own bucket (``num_buckets``), rounds are offset by ``round * num_buckets``.
- Stable sort by (bucket, position); chunks of ``chunk_length`` attend to themselves and ``num_chunks_before`` /
  ``after`` neighbours, wrapping around (chunk 0 sees the last chunk, as Trax/HF); causal masking compares
  *original* positions; the dot of a token with itself is replaced by a finite ``-1e5`` (``-1e3`` in fp16), so it
  attends to itself only when nothing else is visible; rounds are combined with weights softmax(logsumexp).
- Local attention: separate q, k, v; keys / sqrt(E); chunked the same way, no self mask.
- A sequence no longer than one chunk uses plain full attention (what HF does).

Deviations: attention dropout uses ``nn.dropout.fast_dropout`` (rate quantised to 1/65536); hashing runs
in fp32 whatever the activation dtype (R6; HF hashes in the activation dtype); HF re-seeds the *global* RNG
when ``hash_seed`` is set, we use a private generator (R15). Inputs longer than one chunk must be a multiple
of ``chunk_length`` here: the model pads (``lmforge.models.reformer``).

Legend: B batch, H heads, T tokens, R hash rounds, N chunks, C chunk length, K keys per chunk ((1+before+after)·C),
E head dim, D model width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.dropout import fast_dropout

__all__ = [
    "LSH_KERNELS",
    "LSHSelfAttention",
    "LocalSelfAttention",
    "chunked_attention",
    "default_num_buckets",
    "look_adjacent",
    "lsh_buckets",
]

LSH_KERNELS = ("eager", "sdpa")


def mask_values(dtype: torch.dtype) -> tuple[float, float]:
    """(masked key, token-to-itself) logits: HF's -1e9/-1e5 in fp32 and bf16, -1e4/-1e3 in fp16 (its range)."""
    return (-1e4, -1e3) if dtype == torch.float16 else (-1e9, -1e5)


def look_adjacent(x_BHNC: Tensor, before: int, after: int) -> Tensor:
    """``(B, H, N, C, ...) -> (B, H, N, (1+before+after)·C, ...)``: each chunk with its neighbours in the
    order ``-before .. +after``, wrapping around the chunk axis (HF ``_look_adjacent``)."""
    if before == 0 and after == 0:
        return x_BHNC
    return torch.cat([torch.roll(x_BHNC, shifts=-i, dims=2) for i in range(-before, after + 1)], dim=3)


def default_num_buckets(seq_len: int, chunk_length: int, max_positions: int) -> int | tuple[int, int]:
    """HF ``_set_num_buckets``: 2·T/C rounded down to a power of 2, factorised in two once above
    ``2·max(sqrt(max_positions / C), C)`` (transformers PR #4564)."""
    power = (2 * (seq_len // chunk_length)).bit_length() - 1
    limit = 2 * max(int((max_positions // chunk_length) ** 0.5), chunk_length)
    if 2**power > limit:
        return (2 ** (power // 2), 2 ** (power - power // 2))
    return 2**power


def lsh_buckets(
    vectors_BHTE: Tensor,
    *,
    num_buckets: int | Sequence[int],
    num_hashes: int,
    keep_BT: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Angular LSH buckets ``(B, H, R, T)`` with round offsets, pad tokens (``keep_BT`` False) in an extra bucket.

    ``generator`` (a CPU generator) makes the rotations reproducible; None draws from the global RNG of the device.
    """
    factors = (num_buckets,) if isinstance(num_buckets, int) else tuple(num_buckets)
    if any(f % 2 for f in factors):
        raise ValueError(f"num_buckets must be even (or a list of even factors), got {num_buckets}")
    H, E = vectors_BHTE.shape[1], vectors_BHTE.shape[3]
    shape = (H, E, num_hashes, sum(factors) // 2)
    if generator is not None:
        rotations = torch.randn(shape, generator=generator, dtype=torch.float32).to(vectors_BHTE.device)
    else:
        rotations = torch.randn(shape, dtype=torch.float32, device=vectors_BHTE.device)
    with torch.no_grad():
        rotated_BHRTk = torch.einsum("bhte,herk->bhrtk", vectors_BHTE.detach().float(), rotations)
        buckets_BHRT, start, product = None, 0, 1
        for factor in factors:
            part = rotated_BHRTk[..., start : start + factor // 2]
            start += factor // 2
            index = torch.argmax(torch.cat([part, -part], dim=-1), dim=-1)
            buckets_BHRT = index if buckets_BHRT is None else buckets_BHRT + product * index
            product *= factor
        if keep_BT is not None:  # the caller passes a mask only when it has padding
            buckets_BHRT = buckets_BHRT.masked_fill(~keep_BT[:, None, None, :], product)
            product += 1
        offsets_R1 = torch.arange(num_hashes, device=vectors_BHTE.device)[:, None] * product
        return buckets_BHRT + offsets_R1


def _fill_masks(x, keep, self_BHNCK, masked, itself):
    """``x`` with ``masked`` where ``keep`` is False, ``itself`` where ``self_BHNCK`` is True (either may be None)."""
    if keep is not None:
        x = x.masked_fill(~keep, masked)
    if self_BHNCK is not None:
        x = x.masked_fill(self_BHNCK, itself)
    return x


def _masked_dots(q, k, keep, self_BHNCK, masked, itself):
    dots = torch.matmul(q, k.transpose(-1, -2))
    if dots.dtype != torch.float32 and dots.dtype != torch.float64:
        dots = dots.float()  # softmax statistics in fp32 (R6)
    return _fill_masks(dots, keep, self_BHNCK, masked, itself)


def _eager_chunks(q, k, v, keep, self_BHNCK, *, masked, itself, dropout, training):
    # HF's order of operations (logsumexp, then exp(dots - lse)): bit-identical to the reference.
    dots = _masked_dots(q, k, keep, self_BHNCK, masked, itself)
    lse = torch.logsumexp(dots, dim=-1, keepdim=True)
    probs = torch.exp(dots - lse).to(v.dtype)
    probs = fast_dropout(probs, dropout, training=training)
    return torch.matmul(probs, v), lse.squeeze(-1)


def _softmax_chunks(q, k, v, keep, self_BHNCK, *, masked, itself, dropout, training):
    # One fused softmax instead of logsumexp + exp: for the "sdpa" kernel when attention dropout is on (the fused
    # CPU kernel then falls back to its math path with bernoulli masks, slower than this).
    probs = torch.softmax(_masked_dots(q, k, keep, self_BHNCK, masked, itself), dim=-1).to(v.dtype)
    return torch.matmul(fast_dropout(probs, dropout, training=training), v), None


def _sdpa_chunks(q, k, v, keep, self_BHNCK, *, masked, itself, dropout, training):
    # The fused kernel takes an additive bias: dots + (-1e9) and dots + (-1e5) give the same probabilities as
    # HF's replacement by -1e9 / -1e5 to fp32 precision (exp underflows to 0 unless nothing else is visible).
    B, H, N, C, E = q.shape
    bias = None
    if keep is not None or self_BHNCK is not None:
        shape = torch.broadcast_shapes(
            *(m.shape for m in (keep, self_BHNCK) if m is not None), (B, H, N, C, k.shape[-2])
        )
        bias = torch.zeros(shape, dtype=q.dtype, device=q.device)
        bias = _fill_masks(bias, keep, self_BHNCK, masked, itself).flatten(1, 2)
    out = F.scaled_dot_product_attention(
        q.flatten(1, 2), k.flatten(1, 2), v.flatten(1, 2), attn_mask=bias, dropout_p=dropout if training else 0.0,
        scale=1.0,
    )  # fmt: skip
    return out.view(B, H, N, C, E), None


def chunked_attention(
    q_BHNCE: Tensor,
    k_BHNCE: Tensor,
    v_BHNCE: Tensor,
    *,
    query_pos_BHNC: Tensor,
    key_keep_BHNC: Tensor | None,
    before: int,
    after: int,
    causal: bool,
    mask_self: bool,
    dropout: float = 0.0,
    training: bool = False,
    kernel: str = "eager",
) -> tuple[Tensor, Tensor | None]:
    """Each query chunk attends to its chunk and ``before``/``after`` neighbours (keys already scaled).

    Returns ``(out (B, H, N, C, E), logsumexp (B, H, N, C))``; the ``"sdpa"`` kernel returns no logsumexp (use
    ``"eager"`` when rounds must be combined). Positions decide the causal and self masks.
    """
    if kernel not in LSH_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {LSH_KERNELS}")
    k_BHNKE = look_adjacent(k_BHNCE, before, after)
    v_BHNKE = look_adjacent(v_BHNCE, before, after)
    key_pos_BHNK = look_adjacent(query_pos_BHNC, before, after)
    keep_BHNCK = None if key_keep_BHNC is None else look_adjacent(key_keep_BHNC, before, after)[..., None, :]
    if causal:
        causal_BHNCK = query_pos_BHNC[..., :, None] >= key_pos_BHNK[..., None, :]
        keep_BHNCK = causal_BHNCK if keep_BHNCK is None else keep_BHNCK & causal_BHNCK
    self_BHNCK = query_pos_BHNC[..., :, None] == key_pos_BHNK[..., None, :] if mask_self else None
    masked, itself = mask_values(q_BHNCE.dtype)
    attend = _eager_chunks
    if kernel == "sdpa":
        attend = _softmax_chunks if training and dropout > 0 else _sdpa_chunks
    return attend(
        q_BHNCE, k_BHNKE, v_BHNKE, keep_BHNCK, self_BHNCK, masked=masked, itself=itself, dropout=dropout,
        training=training,
    )  # fmt: skip


class _Permute(torch.autograd.Function):
    """``x.gather(2, order)`` for a permutation ``order`` of dim 2, whose backward is the gather by the inverse
    permutation (HF ``ReverseSort``) instead of autograd's scatter-add into zeros."""

    @staticmethod
    def forward(ctx, x_BHSE: Tensor, order_BHS: Tensor, inverse_BHS: Tensor) -> Tensor:
        ctx.save_for_backward(inverse_BHS)
        return x_BHSE.gather(2, order_BHS[..., None].expand_as(x_BHSE))

    @staticmethod
    def backward(ctx, grad_BHSE: Tensor):
        (inverse_BHS,) = ctx.saved_tensors
        return grad_BHSE.gather(2, inverse_BHS[..., None].expand_as(grad_BHSE)), None, None


def _split_heads(x_BTD: Tensor, num_heads: int) -> Tensor:
    B, T, _ = x_BTD.shape
    return x_BTD.view(B, T, num_heads, -1).transpose(1, 2)


def _merge_heads(x_BHTE: Tensor) -> Tensor:
    B, H, T, E = x_BHTE.shape
    return x_BHTE.transpose(1, 2).reshape(B, T, H * E)


def _chunking(seq_len: int, chunk_length: int, before: int, after: int) -> tuple[int, int, int]:
    """(chunk length, before, after) actually used: one chunk without neighbours when T <= C (HF)."""
    if seq_len <= chunk_length:
        return seq_len, 0, 0
    if seq_len % chunk_length:
        raise ValueError(f"sequence length {seq_len} is not a multiple of chunk_length {chunk_length}")
    return chunk_length, before, after


class LSHSelfAttention(nn.Module):
    """Shared-QK LSH self-attention; ``forward(x, keep, buckets=None) -> (out (B, T, H·E), buckets (B, H, R, T))``.

    Pass the returned ``buckets`` back to recompute the same function (reversible backward). ``num_buckets=None``
    uses ``default_num_buckets`` for each length (HF writes its first choice into the config instead).
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        num_heads: int,
        head_dim: int,
        chunk_length: int,
        num_chunks_before: int = 1,
        num_chunks_after: int = 0,
        num_hashes: int = 1,
        num_buckets: int | Sequence[int] | None = None,
        max_positions: int = 4096,
        causal: bool = False,
        dropout: float = 0.0,
        hash_seed: int | None = None,
        kernel: str = "eager",
    ):
        super().__init__()
        if kernel not in LSH_KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose from {LSH_KERNELS}")
        self.num_heads, self.head_dim, self.chunk_length = num_heads, head_dim, chunk_length
        self.num_chunks_before, self.num_chunks_after = num_chunks_before, num_chunks_after
        self.num_hashes, self.num_buckets, self.max_positions = num_hashes, num_buckets, max_positions
        self.causal, self.dropout, self.hash_seed, self.kernel = causal, dropout, hash_seed, kernel
        self.query_key = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.value = nn.Linear(hidden_size, num_heads * head_dim, bias=False)

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, head_dim={self.head_dim}, chunk={self.chunk_length}, "
            f"hashes={self.num_hashes}, buckets={self.num_buckets}, causal={self.causal}, kernel={self.kernel!r}"
        )

    def forward(
        self, x_BTD: Tensor, keep_BT: Tensor | None = None, *, buckets_BHRT: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        B, T, _ = x_BTD.shape
        H, E = self.num_heads, self.head_dim
        qk_BHTE = _split_heads(self.query_key(x_BTD), H)
        v_BHTE = _split_heads(self.value(x_BTD), H)
        # Unit-length keys: RMS-normalise, then / sqrt(E) (HF _len_and_dim_norm; eps 1e-6 as HF).
        k_BHTE = qk_BHTE * torch.rsqrt(qk_BHTE.pow(2).mean(-1, keepdim=True) + 1e-6) / math.sqrt(E)
        C, before, after = _chunking(T, self.chunk_length, self.num_chunks_before, self.num_chunks_after)
        if C == T:  # one chunk: full attention, no hashing (HF's do_standard_self_attention)
            pos_BHNC = torch.arange(T, device=x_BTD.device).expand(B, H, 1, T)
            keep_BHNC = None if keep_BT is None else keep_BT[:, None, None, :].expand(B, H, 1, T)
            out_BHNCE, _ = chunked_attention(
                qk_BHTE[:, :, None], k_BHTE[:, :, None], v_BHTE[:, :, None], query_pos_BHNC=pos_BHNC,
                key_keep_BHNC=keep_BHNC, before=0, after=0, causal=self.causal, mask_self=True,
                dropout=self.dropout, training=self.training, kernel=self.kernel,
            )  # fmt: skip
            return _merge_heads(out_BHNCE[:, :, 0]), None

        # The rotations come from a CPU generator seeded by hash_seed or by one draw from the global CPU RNG. The
        # draw happens even when buckets are passed back, so a reversible recomputation consumes the RNG exactly
        # as the forward did and the dropout masks after it stay the same.
        seed = self.hash_seed
        if seed is None:
            seed = int(torch.randint(2**62, (), dtype=torch.int64))
        if buckets_BHRT is None:
            num_buckets = self.num_buckets or default_num_buckets(T, self.chunk_length, self.max_positions)
            generator = torch.Generator().manual_seed(seed)
            buckets_BHRT = lsh_buckets(
                qk_BHTE, num_buckets=num_buckets, num_hashes=self.num_hashes, keep_BT=keep_BT, generator=generator
            )
        R = buckets_BHRT.shape[2]
        with torch.no_grad():
            # Stable sort by (bucket, position): rounds are offset, so the R·T items sort as one list.
            _, order_BHS = torch.sort(buckets_BHRT.flatten(2), dim=-1, stable=True)
            inverse_BHS = torch.empty_like(order_BHS)
            inverse_BHS.scatter_(-1, order_BHS, torch.arange(R * T, device=x_BTD.device).expand_as(order_BHS))
            pos_BHS = order_BHS % T
        index_BHSE = pos_BHS[..., None].expand(-1, -1, -1, E)
        N = R * T // C
        q_BHNCE = qk_BHTE.gather(2, index_BHSE).view(B, H, N, C, E)
        k_BHNCE = k_BHTE.gather(2, index_BHSE).view(B, H, N, C, E)
        v_BHNCE = v_BHTE.gather(2, index_BHSE).view(B, H, N, C, E)
        keep_BHNC = None
        if keep_BT is not None:
            keep_BHNC = keep_BT[:, None, :].expand(B, H, T).gather(2, pos_BHS).view(B, H, N, C)
        kernel = self.kernel if R == 1 else "eager"  # rounds are combined through the logsumexp
        out_BHNCE, lse_BHNC = chunked_attention(
            q_BHNCE, k_BHNCE, v_BHNCE, query_pos_BHNC=pos_BHS.view(B, H, N, C), key_keep_BHNC=keep_BHNC,
            before=before, after=after, causal=self.causal, mask_self=True, dropout=self.dropout,
            training=self.training, kernel=kernel,
        )  # fmt: skip
        out_BHSE = _Permute.apply(out_BHNCE.reshape(B, H, R * T, E), inverse_BHS, order_BHS)
        if R == 1:
            return _merge_heads(out_BHSE), buckets_BHRT
        lse_BHRT1 = lse_BHNC.reshape(B, H, R * T).gather(2, inverse_BHS).view(B, H, R, T, 1)
        weights_BHRT1 = torch.exp(lse_BHRT1 - torch.logsumexp(lse_BHRT1, dim=2, keepdim=True))  # softmax over R (HF)
        weights_BHRT1 = weights_BHRT1.to(out_BHSE.dtype)
        out_BHTE = (out_BHSE.view(B, H, R, T, E) * weights_BHRT1).sum(dim=2)
        return _merge_heads(out_BHTE), buckets_BHRT


class LocalSelfAttention(nn.Module):
    """Chunked local self-attention (HF ``LocalSelfAttention``): ``forward(x, keep) -> (out (B, T, H·E), None)``."""

    def __init__(
        self,
        hidden_size: int,
        *,
        num_heads: int,
        head_dim: int,
        chunk_length: int,
        num_chunks_before: int = 1,
        num_chunks_after: int = 0,
        causal: bool = False,
        dropout: float = 0.0,
        kernel: str = "eager",
    ):
        super().__init__()
        if kernel not in LSH_KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose from {LSH_KERNELS}")
        self.num_heads, self.head_dim, self.chunk_length = num_heads, head_dim, chunk_length
        self.num_chunks_before, self.num_chunks_after = num_chunks_before, num_chunks_after
        self.causal, self.dropout, self.kernel = causal, dropout, kernel
        self.query = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.key = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.value = nn.Linear(hidden_size, num_heads * head_dim, bias=False)

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_dim={self.head_dim}, chunk={self.chunk_length}, causal={self.causal}"

    def forward(
        self, x_BTD: Tensor, keep_BT: Tensor | None = None, *, buckets_BHRT: Tensor | None = None
    ) -> tuple[Tensor, None]:
        B, T, _ = x_BTD.shape
        H, E = self.num_heads, self.head_dim
        C, before, after = _chunking(T, self.chunk_length, self.num_chunks_before, self.num_chunks_after)
        N = T // C
        q_BHNCE = _split_heads(self.query(x_BTD), H).reshape(B, H, N, C, E)
        k_BHNCE = _split_heads(self.key(x_BTD), H).reshape(B, H, N, C, E) / math.sqrt(E)
        v_BHNCE = _split_heads(self.value(x_BTD), H).reshape(B, H, N, C, E)
        pos_BHNC = torch.arange(T, device=x_BTD.device).view(1, 1, N, C)
        keep_BHNC = None if keep_BT is None else keep_BT.view(B, 1, N, C)
        out_BHNCE, _ = chunked_attention(
            q_BHNCE, k_BHNCE, v_BHNCE, query_pos_BHNC=pos_BHNC, key_keep_BHNC=keep_BHNC, before=before,
            after=after, causal=self.causal, mask_self=False, dropout=self.dropout, training=self.training,
            kernel=self.kernel,
        )  # fmt: skip
        return _merge_heads(out_BHNCE.flatten(2, 3)), None
