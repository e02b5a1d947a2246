"""``CanineConfig``: the tokenizer-free CANINE encoder (Clark et al. 2022) in one flat dataclass (R1).

Field names and defaults are HF ``CanineConfig``'s (= TF ``CanineModelConfig`` in google-research/language
``language/canine/modeling.py``), so ``config.json`` round-trips (``convert.to_hf_config``). Our extras:
``attn_implementation`` (a key of ``lmforge.nn.attention.ATTENTION_KERNELS``) and ``hash_head_transform`` for
the pretraining head (``lmforge.models.canine.pretraining``).

There is no ``vocab_size``: inputs are Unicode codepoints (``lmforge.data.tokenizer`` kind ``codepoint``; PAD 0,
CLS 0xE000, SEP 0xE001, BOS 0xE002, MASK 0xE003 in the private-use area).

Presets and their sources:
- ``tiny``: test size (style guide: hidden <= 64, 2 layers); 4 hashes x 64 buckets, local chunks of 8 characters.
- ``small``: the issue-#8 benchmark shape (hidden 256, 4 deep layers, 4 heads, intermediate 1024 = BERT-Mini,
  as ``bert`` preset ``small``), CANINE's hashing (8 x 16384) and 128-character local chunks.
- ``base``: CANINE-S / CANINE-C (HF ``google/canine-s`` config.json = the TF defaults): hidden 768, 12 layers,
  12 heads, intermediate 3072, 8 hashes x 16384 buckets, 16384 positions, rate 4, upsampling kernel 4, local
  stride 128, 16 segment types.

Deviation: HF sizes the position table by ``num_hash_buckets`` and the position-id buffer by
``max_position_embeddings``; we size the table by ``max_position_embeddings`` and the converter requires the two
to be equal (they are in every released checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.models.checks import check_at_least, check_choices, check_positive_floats, check_probabilities
from lmforge.nn.attention import ATTENTION_KERNELS
from lmforge.nn.canine import HASH_PRIMES
from lmforge.nn.ffn import ACTIVATIONS

__all__ = ["PRESETS", "CanineConfig"]


@dataclass(kw_only=True)
class CanineConfig:
    hidden_size: int = 768
    num_hidden_layers: int = 12
    """Layers of the deep (molecule) stack; the two character layers come on top."""
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 16384
    """Character positions (learned table)."""
    type_vocab_size: int = 16
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    bos_token_id: int = 0xE000
    eos_token_id: int = 0xE001
    downsampling_rate: int = 4
    """Characters per molecule (conv kernel = stride)."""
    upsampling_kernel_size: int = 4
    num_hash_functions: int = 8
    num_hash_buckets: int = 16384
    local_transformer_stride: int = 128
    """Chunk width of the block-local initial character layer."""
    attn_implementation: str = "sdpa"
    """Attention kernel: "sdpa" (fused) or "eager" (reference)."""
    hash_head_transform: bool = True
    """Pretraining head: dense + activation + LayerNorm before the tied hash decoder (BERT's MLM transform)."""

    def __post_init__(self):
        check_at_least(self, ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"))
        check_at_least(self, ("max_position_embeddings", "downsampling_rate", "upsampling_kernel_size"))
        check_at_least(self, ("num_hash_functions", "num_hash_buckets", "local_transformer_stride"))
        check_at_least(self, ("type_vocab_size",))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_hash_functions > len(HASH_PRIMES):
            raise ValueError(f"num_hash_functions must be <= {len(HASH_PRIMES)}, got {self.num_hash_functions}")
        if self.hidden_size % self.num_hash_functions:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be a multiple of num_hash_functions {self.num_hash_functions}"
            )
        check_choices(self, {"hidden_act": sorted(ACTIVATIONS), "attn_implementation": sorted(ATTENTION_KERNELS)})
        check_probabilities(self, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
        check_positive_floats(self, ("layer_norm_eps", "initializer_range"))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def is_decoder(self) -> bool:
        """CANINE is an encoder; the BERT layers it is built from read this flag."""
        return False


_SMALL: dict[str, Any] = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_hash_functions=4,
        num_hash_buckets=64,
        local_transformer_stride=8,
    ),
    "small": _SMALL,
    "base": {},  # the class defaults are CANINE-S
}
