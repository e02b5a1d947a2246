"""``BertConfig``: BERT (absolute positions) and RoFormer (rotary) baselines in one flat dataclass (R1).

Field names and defaults follow HF ``BertConfig`` so ``config.json`` round-trips (``convert.to_hf_config``).
Extra fields: ``position_embedding_type`` ("absolute" = BERT learned table; "rotary" = RoFormer: interleaved RoPE
on q and k in every layer, no absolute positions), ``is_decoder`` (causal self-attention, for CLM),
``attn_implementation`` (a key of ``lmforge.nn.attention.ATTENTION_KERNELS``) and ``tie_word_embeddings``.

Presets and their sources:
- ``tiny``: test size (style guide: hidden <= 64, 2 layers, vocab ~100).
- ``small``: BERT-Mini shape (L=4, H=256, A=4, intermediate 4H) from google-research/bert README ("24 smaller
  BERT models", Turc et al. 2019); our benchmark/demo size.
- ``base``: BERT-base (L=12, H=768, A=12, intermediate 3072) from google-research/bert; vocab 21128 =
  ``chinese_L-12_H-768_A-12/bert_config.json`` (the corpus is Chinese).
- ``roformer-tiny``/``roformer-small``: the BERT shapes above with ``position_embedding_type="rotary"`` (same-size
  comparison). ``roformer-base``: junnyu/roformer_chinese_base (HF ``RoFormerConfig``; vocab 50000, 1536
  positions), from ZhuiyiTechnology/roformer ``chinese_roformer_L-12_H-768_A-12``.

Deviations: ``max_position_embeddings`` bounds inputs only for absolute positions; with rotary it is used only for
export (HF RoFormer precomputes a table of that length), our RoPE has no length limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lmforge.models.checks import (
    check_at_least,
    check_choices,
    check_positive_floats,
    check_probabilities,
    check_token_ids,
)
from lmforge.nn.attention import ATTENTION_KERNELS
from lmforge.nn.ffn import ACTIVATIONS

__all__ = ["PRESETS", "BertConfig"]


@dataclass(kw_only=True)
class BertConfig:
    vocab_size: int
    """Vocabulary size (required; set from the tokenizer)."""
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    """FFN width (4 * hidden in BERT)."""
    hidden_act: str = "gelu"
    """Activation of the FFN and of the MLM-head transform; exact erf GELU as BERT."""
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    """Segment vocabulary; 0 disables segment embeddings."""
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    position_embedding_type: Literal["absolute", "rotary"] = "absolute"
    """"absolute" = BERT learned positions; "rotary" = RoFormer (interleaved RoPE, base 10000, on q and k)."""
    is_decoder: bool = False
    """Causal self-attention (CLM). ``build_clm`` forces it on."""
    attn_implementation: str = "sdpa"
    """Attention kernel: "sdpa" (fused) or "eager" (reference)."""
    tie_word_embeddings: bool = True
    """Tie the LM-head decoder to the word embeddings."""

    def __post_init__(self):
        check_at_least(self, ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"))
        check_at_least(self, ("intermediate_size", "max_position_embeddings"))
        check_at_least(self, ("type_vocab_size",), 0)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        check_choices(
            self,
            {
                "position_embedding_type": ("absolute", "rotary"),
                "hidden_act": sorted(ACTIVATIONS),
                "attn_implementation": sorted(ATTENTION_KERNELS),
            },
        )
        if self.position_embedding_type == "rotary" and self.head_dim % 2:
            raise ValueError(f"rotary needs an even head size, got {self.head_dim}")
        check_probabilities(self, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
        check_positive_floats(self, ("layer_norm_eps", "initializer_range"))
        check_token_ids(self)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


_TINY: dict[str, Any] = dict(
    vocab_size=128,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
)
_SMALL: dict[str, Any] = dict(
    vocab_size=21128,
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=1024,
    max_position_embeddings=512,
)
_BASE: dict[str, Any] = {
    **_SMALL,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": _TINY,
    "small": _SMALL,
    "base": _BASE,
    "roformer-tiny": {**_TINY, "position_embedding_type": "rotary"},
    "roformer-small": {**_SMALL, "position_embedding_type": "rotary"},
    "roformer-base": {
        **_BASE,
        "vocab_size": 50000,
        "max_position_embeddings": 1536,
        "position_embedding_type": "rotary",
    },
}
