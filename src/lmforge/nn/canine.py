"""CANINE's character-level blocks: hash embeddings, block-local chunking, strided downsampling, upsampling.

References: Clark et al. 2022, "CANINE: Pre-training an Efficient Tokenization-Free Encoder for Language
Representation" (TACL); google-research/language ``language/canine/modeling.py`` and HF ``modeling_canine``
(``CanineEmbeddings._hash_bucket_tensors``, ``CharactersToMolecules``, ``ConvProjection``,
``CanineModel._downsample_attention_mask`` / ``_repeat_molecules``, ``CanineAttention(local=True)``).

- Hash embeddings: hash k maps codepoint c to bucket ``((c + 1) * PRIMES[k]) % num_buckets``; each hash has its
  own ``(num_buckets, D / K)`` table and the K shards are concatenated to D. No vocabulary, no [UNK].
- Block-local attention (the initial character layer) = full attention inside consecutive chunks of ``width``
  characters (from/to width = stride, no CLS sharing, HF/TF defaults). ``to_chunks`` turns a ``(B, T, D)``
  sequence into ``(B * C, width, D)`` chunks so any full-attention layer becomes a block-local one.
- Downsampling: Conv1d(kernel = stride = rate, "valid") + activation; the last molecule is dropped and the [CLS]
  character encoding is prepended as its own position; LayerNorm. No residual (the source: mean pooling diverges).
- Molecule mask = max-pool of the character mask with the same rate (a molecule is real if any char in it is).
- Upsampling: each molecule but [CLS] repeated ``rate`` times, the last one ``remainder + rate`` more times, so the
  character length is restored exactly; concatenated with the initial character encoding (2D) and projected by
  Conv1d(kernel k, stride 1, "same": (k - 1) // 2 zeros left, the rest right) + activation + LayerNorm + dropout.

Implementation: both convolutions keep ``nn.Conv1d`` parameters (HF names) but run as matmuls: the
downsampling one over a free reshape into windows, the upsampling one over unfolded windows (measured on
this CPU: 2.7x and 1.03x faster than ``nn.Conv1d`` forward + backward).

Deviations: none in the maths. Padding characters are computed like real ones and *do* reach real outputs through
the two convolutions, exactly as in HF and TF: CANINE is not padding-invariant, so parity tests compare padded
batches with the same padding on both sides.

Legend: B batch, T characters, M molecules (T // rate), C chunks, W chunk width, D width, K hash functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.ffn import get_activation
from lmforge.nn.norms import LayerNorm

__all__ = [
    "HASH_PRIMES",
    "Downsample",
    "HashEmbedding",
    "Upsample",
    "downsample_mask",
    "from_chunks",
    "hash_buckets",
    "repeat_molecules",
    "to_chunks",
]

# language/canine/modeling.py ``_PRIMES`` (= HF ``_PRIMES``): at most 16 hash functions.
HASH_PRIMES: tuple[int, ...] = (31, 43, 59, 61, 73, 97, 103, 113, 137, 149, 157, 173, 181, 193, 211, 223)


def hash_buckets(codepoints: Tensor, *, num_hashes: int, num_buckets: int) -> Tensor:
    """``(...,)`` codepoints -> ``(..., K)`` bucket ids, ``((c + 1) * prime_k) % num_buckets``."""
    if not 1 <= num_hashes <= len(HASH_PRIMES):
        raise ValueError(f"num_hashes must be in [1, {len(HASH_PRIMES)}], got {num_hashes}")
    primes_K = torch.tensor(HASH_PRIMES[:num_hashes], dtype=torch.long, device=codepoints.device)
    return ((codepoints.long()[..., None] + 1) * primes_K) % num_buckets


class HashEmbedding(nn.Module):
    """K hashed tables of ``(num_buckets, dim // K)``, concatenated: ``(B, T) codepoints -> (B, T, D)``.

    The tables are ``shards[k].weight`` (HF ``HashBucketCodepointEmbedder_k``); they double as the output
    embeddings of the hash-bucket prediction head (``lmforge.models.canine.pretraining``)."""

    def __init__(self, dim: int, *, num_hashes: int, num_buckets: int):
        super().__init__()
        if dim % num_hashes:
            raise ValueError(f"dim {dim} must be a multiple of num_hashes {num_hashes}")
        hash_buckets(torch.zeros(1), num_hashes=num_hashes, num_buckets=num_buckets)  # validates num_hashes
        self.num_hashes, self.num_buckets = num_hashes, num_buckets
        self.shards = nn.ModuleList(nn.Embedding(num_buckets, dim // num_hashes) for _ in range(num_hashes))

    def forward(self, codepoints_BT: Tensor) -> Tensor:
        buckets_BTK = hash_buckets(codepoints_BT, num_hashes=self.num_hashes, num_buckets=self.num_buckets)
        return torch.cat([table(buckets_BTK[..., k]) for k, table in enumerate(self.shards)], dim=-1)

    def extra_repr(self) -> str:
        return f"num_hashes={self.num_hashes}, num_buckets={self.num_buckets}"


def to_chunks(x_BTD: Tensor, keep_BT: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Split into chunks of ``width``: ``(B * C, W, D)`` values, ``(B * C, W)`` keep mask (False on the positions
    added to fill the last chunk) and ``(B * C, W)`` "inside the sequence" flags."""
    batch, length, _ = x_BTD.shape
    pad = -length % width
    inside_BT = torch.ones(batch, length, dtype=torch.bool, device=x_BTD.device)
    if pad:
        x_BTD = F.pad(x_BTD, (0, 0, 0, pad))
        keep_BT, inside_BT = F.pad(keep_BT, (0, pad)), F.pad(inside_BT, (0, pad))
    return x_BTD.reshape(-1, width, x_BTD.shape[-1]), keep_BT.reshape(-1, width), inside_BT.reshape(-1, width)


def from_chunks(x_NWD: Tensor, batch: int, length: int) -> Tensor:
    """Inverse of ``to_chunks``: ``(B * C, W, D) -> (B, T, D)``."""
    return x_NWD.reshape(batch, -1, x_NWD.shape[-1])[:, :length]


def downsample_mask(keep_BT: Tensor, rate: int) -> Tensor:
    """Molecule mask ``(B, T // rate)``: max-pool of the character mask (HF ``_downsample_attention_mask``)."""
    return F.max_pool1d(keep_BT[:, None].float(), kernel_size=rate, stride=rate)[:, 0].bool()


class Downsample(nn.Module):
    """Characters -> molecules: ``LN(cat([cls], act(conv(chars))[:, :-1]))``, ``(B, T, D) -> (B, T // rate, D)``."""

    def __init__(self, dim: int, *, rate: int, activation: str = "gelu", norm_eps: float = 1e-12):
        super().__init__()
        self.rate = rate
        self.conv = nn.Conv1d(dim, dim, kernel_size=rate, stride=rate)
        self.activation = get_activation(activation)
        self.norm = LayerNorm(dim, eps=norm_eps)

    def forward(self, chars_BTD: Tensor) -> Tensor:
        if chars_BTD.shape[1] < self.rate:
            raise ValueError(f"need at least downsampling_rate={self.rate} characters, got {chars_BTD.shape[1]}")
        # kernel = stride: the conv is one matmul over non-overlapping windows, a free reshape (no im2col, and a
        # plain matmul backward instead of the CPU conv kernels'); weight (D, D_in, rate) read as (D, rate * D_in)
        batch, length = chars_BTD.shape[:2]
        windows_BMX = chars_BTD[:, : length - length % self.rate].reshape(batch, length // self.rate, -1)
        weight_DX = self.conv.weight.permute(0, 2, 1).reshape(self.conv.out_channels, -1)
        molecules_BMD = self.activation(F.linear(windows_BMX, weight_DX, self.conv.bias))
        # the last molecule makes room for [CLS], kept as its own position in the deep stack
        return self.norm(torch.cat([chars_BTD[:, :1], molecules_BMD[:, :-1]], dim=1))


def repeat_molecules(molecules_BMD: Tensor, *, rate: int, length: int) -> Tensor:
    """``(B, M, D) -> (B, T, D)``: molecules 1.. repeated ``rate`` times, the last ``length % rate + rate`` more
    times (it compensates for the molecule dropped in ``Downsample``)."""
    repeated_BTD = molecules_BMD[:, 1:].repeat_interleave(rate, dim=1)
    tail_BTD = molecules_BMD[:, -1:].expand(-1, length % rate + rate, -1)
    return torch.cat([repeated_BTD, tail_BTD], dim=1)


class Upsample(nn.Module):
    """``(initial chars (B, T, D), molecules (B, M, D)) -> (B, T, D)``: repeat, concatenate, "same" conv, act, LN,
    dropout (HF ``ConvProjection``)."""

    def __init__(
        self,
        dim: int,
        *,
        rate: int,
        kernel_size: int,
        activation: str = "gelu",
        norm_eps: float = 1e-12,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.rate, self.kernel_size = rate, kernel_size
        self.conv = nn.Conv1d(2 * dim, dim, kernel_size=kernel_size, stride=1)
        self.activation = get_activation(activation)
        self.norm = LayerNorm(dim, eps=norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, chars_BTD: Tensor, molecules_BMD: Tensor) -> Tensor:
        length = chars_BTD.shape[1]
        repeated_BTD = repeat_molecules(molecules_BMD, rate=self.rate, length=length)
        x_BTX = torch.cat([chars_BTD, repeated_BTD], dim=-1)
        left = (self.kernel_size - 1) // 2  # TF "same": the extra zero goes to the right
        x_BTX = F.pad(x_BTX, (0, 0, left, self.kernel_size - 1 - left))
        # the conv as one matmul over unfolded windows (B, T, 2D * k); weight (D, 2D, k) read as (D, 2D * k)
        windows_BTX = x_BTX.unfold(1, self.kernel_size, 1).flatten(-2)
        out_BTD = F.linear(windows_BTX, self.conv.weight.flatten(1), self.conv.bias)
        out_BTD = self.activation(out_BTD)
        return self.dropout(self.norm(out_BTD))
