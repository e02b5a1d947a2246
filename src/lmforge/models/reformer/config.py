"""``ReformerConfig``: HF ``ReformerConfig`` field names and defaults (``configuration_reformer.py``), flat (R1).

``num_hidden_layers`` is ``len(attn_layers)`` (a property, as in HF). Our own switches: ``use_reversible``
(reversible residuals; False = the same network with stored activations: faster, memory grows with depth) and
``attn_implementation`` ("eager" reference or "sdpa": fused chunk attention, used where no logsumexp is needed,
i.e. local layers and single-round LSH). ``chunk_size_feed_forward`` as HF (0 = unchunked); HF's
``chunk_size_lm_head`` is not implemented (the head is ``lmforge.heads``'s).

Presets and their sources:
- ``tiny``: test size (style guide: hidden <= 64, 2 layers, vocab ~100): one local and one LSH layer, chunks of
  16, 4 buckets, an 8x16 axial table (128 positions), dropout 0.
- ``crime-and-punishment``: the released ``google/reformer-crime-and-punishment`` config.json (6 layers
  local/lsh alternating, hidden 256, 2 heads of 64, FFN 512, chunks of 64, buckets (64, 128), one hash,
  axial 512x1024 = 524,288 positions, dims (64, 192), vocab 320, causal).
- ``bench``: the issue-#7 benchmark shape: crime-and-punishment with a 64x64 table (4,096 positions) and
  buckets chosen by HF's rule for 4,096 tokens (128).

Deviations from HF defaults: none, except ``num_buckets=None`` is resolved per input length every forward
(HF resolves it on the first forward and writes it back into the config); set it for reproducible bucketing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lmforge.models.checks import (
    check_at_least,
    check_choices,
    check_positive_floats,
    check_probabilities,
    check_token_ids,
)
from lmforge.nn.ffn import ACTIVATIONS
from lmforge.nn.lsh import LSH_KERNELS

__all__ = ["PRESETS", "ReformerConfig"]


@dataclass(kw_only=True)
class ReformerConfig:
    vocab_size: int
    """Vocabulary size (required; set from the tokenizer)."""
    hidden_size: int = 256
    """Width of one residual stream; the final norm and the head see 2 * hidden_size (the two streams)."""
    num_attention_heads: int = 12
    attention_head_size: int = 64
    attn_layers: tuple[str, ...] = ("local", "lsh", "local", "lsh", "local", "lsh")
    """One entry per layer, "local" or "lsh" (HF ``attn_layers``)."""
    feed_forward_size: int = 512
    hidden_act: str = "relu"
    hidden_dropout_prob: float = 0.05
    local_attn_chunk_length: int = 64
    local_num_chunks_before: int = 1
    local_num_chunks_after: int = 0
    local_attention_probs_dropout_prob: float = 0.05
    lsh_attn_chunk_length: int = 64
    lsh_num_chunks_before: int = 1
    lsh_num_chunks_after: int = 0
    lsh_attention_probs_dropout_prob: float = 0.0
    num_buckets: int | tuple[int, ...] | None = None
    """Even bucket count, or a list of even factors; None = HF's rule for each input length."""
    num_hashes: int = 1
    hash_seed: int | None = None
    """Fixed random rotations (tests, reproducible evaluation); None = fresh rotations every forward."""
    axial_pos_embds: bool = True
    axial_pos_shape: tuple[int, ...] = (64, 64)
    axial_pos_embds_dim: tuple[int, ...] = (64, 192)
    axial_norm_std: float = 1.0
    max_position_embeddings: int = 4096
    is_decoder: bool = False
    layer_norm_eps: float = 1e-12
    chunk_size_feed_forward: int = 0
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    """The id appended when an input is padded to the chunk multiple (HF default 0); padded rows are removed."""
    use_reversible: bool = True
    attn_implementation: str = "eager"

    def __post_init__(self):
        # JSON and YAML give lists; keep tuples so configs compare and hash alike.
        self.attn_layers = tuple(self.attn_layers)
        self.axial_pos_shape = tuple(self.axial_pos_shape)
        self.axial_pos_embds_dim = tuple(self.axial_pos_embds_dim)
        if isinstance(self.num_buckets, list | tuple):
            self.num_buckets = tuple(self.num_buckets)
        check_at_least(self, ("vocab_size", "hidden_size", "num_attention_heads", "attention_head_size"))
        check_at_least(self, ("feed_forward_size", "max_position_embeddings", "num_hashes"))
        check_at_least(self, ("local_attn_chunk_length", "lsh_attn_chunk_length"))
        check_at_least(self, ("local_num_chunks_before", "local_num_chunks_after", "chunk_size_feed_forward"), 0)
        check_at_least(self, ("lsh_num_chunks_before", "lsh_num_chunks_after"), 0)
        if not self.attn_layers or set(self.attn_layers) - {"local", "lsh"}:
            raise ValueError(f"attn_layers must be a non-empty list of 'local'/'lsh', got {list(self.attn_layers)}")
        check_choices(self, {"hidden_act": sorted(ACTIVATIONS), "attn_implementation": LSH_KERNELS})
        buckets = (self.num_buckets,) if isinstance(self.num_buckets, int) else self.num_buckets or ()
        if any(b < 2 or b % 2 for b in buckets):
            raise ValueError(f"num_buckets must be even (or a list of even factors), got {self.num_buckets}")
        if self.is_decoder and (self.local_num_chunks_after or self.lsh_num_chunks_after):
            raise ValueError("a causal Reformer (is_decoder=True) needs local/lsh_num_chunks_after = 0")
        if self.axial_pos_embds:
            if len(self.axial_pos_shape) != len(self.axial_pos_embds_dim):
                raise ValueError(
                    f"axial_pos_shape {list(self.axial_pos_shape)} and axial_pos_embds_dim "
                    f"{list(self.axial_pos_embds_dim)} need the same length"
                )
            if sum(self.axial_pos_embds_dim) != self.hidden_size:
                raise ValueError(
                    f"axial_pos_embds_dim {list(self.axial_pos_embds_dim)} must sum to hidden_size {self.hidden_size}"
                )
            if math.prod(self.axial_pos_shape) < self.max_position_embeddings:
                raise ValueError(
                    f"axial_pos_shape {list(self.axial_pos_shape)} has {math.prod(self.axial_pos_shape)} positions, "
                    f"fewer than max_position_embeddings {self.max_position_embeddings}"
                )
        check_positive_floats(self, ("layer_norm_eps", "initializer_range", "axial_norm_std"))
        check_probabilities(
            self,
            ("hidden_dropout_prob", "local_attention_probs_dropout_prob", "lsh_attention_probs_dropout_prob"),
        )
        check_token_ids(self, ("pad_token_id",))

    @property
    def num_hidden_layers(self) -> int:
        return len(self.attn_layers)

    def _chunk_lengths(self) -> list[int]:
        """The chunk length of each attention kind used in ``attn_layers``."""
        lengths = {"local": self.local_attn_chunk_length, "lsh": self.lsh_attn_chunk_length}
        return [lengths[kind] for kind in set(self.attn_layers)]

    @property
    def chunk_multiple(self) -> int:
        """Inputs longer than the smallest chunk are padded to a multiple of this (HF's lcm of the chunk lengths)."""
        return math.lcm(*self._chunk_lengths())

    @property
    def min_chunk_length(self) -> int:
        return min(self._chunk_lengths())


_TINY: dict[str, Any] = dict(
    vocab_size=128,
    hidden_size=32,
    num_attention_heads=2,
    attention_head_size=16,
    attn_layers=("local", "lsh"),
    feed_forward_size=64,
    local_attn_chunk_length=16,
    lsh_attn_chunk_length=16,
    num_buckets=4,
    axial_pos_shape=(8, 16),
    axial_pos_embds_dim=(16, 16),
    max_position_embeddings=128,
    hidden_dropout_prob=0.0,
    local_attention_probs_dropout_prob=0.0,
)
_CRIME: dict[str, Any] = dict(
    vocab_size=320,
    hidden_size=256,
    num_attention_heads=2,
    attention_head_size=64,
    attn_layers=("local", "lsh", "local", "lsh", "local", "lsh"),
    feed_forward_size=512,
    num_buckets=(64, 128),
    num_hashes=1,
    axial_pos_shape=(512, 1024),
    axial_pos_embds_dim=(64, 192),
    max_position_embeddings=524288,
    is_decoder=True,
    pad_token_id=0,
)

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": _TINY,
    "crime-and-punishment": _CRIME,
    "bench": {**_CRIME, "axial_pos_shape": (64, 64), "max_position_embeddings": 4096, "num_buckets": 128},
}
