"""``GAUAlphaConfig``: GAU-alpha (ZhuiyiTechnology/GAU-alpha) in one flat dataclass (R1).

Field names and defaults follow the JunnYu/GAU-alpha-pytorch ``GAUAlphaConfig`` (HF style), so a
``chinese_GAU-alpha-char_L-24_H-768/config.json`` maps field by field (``convert.from_junnyu_config``). Extra fields:
``softmax_plus_min_length`` (the 2023 bert4keras ``max(n, 16)`` clamp; 1 = off, the released checkpoint),
``softmax_plus_log_base`` (the training length 512 in ``log_512(n)``), ``rope_theta`` and ``is_decoder`` (causal GAU
for CLM). ``hidden_act`` is fixed to swish/SiLU (the only value any GAU-alpha release uses).

Presets and their sources:
- ``tiny``: test size (style guide: hidden <= 64, 2 layers, vocab ~100).
- ``small``: our CPU/demo size: d=256, 8 GAU layers (two GAU layers cost about one Transformer block, so this is
  BERT-Mini's L4 H256 budget), e=2d, s=128; vocab 12000 as the GAU-alpha char vocabulary.
- ``demo``: ``lmforge demo``'s model, sized for its time budget: the small preset's layer recipe at about a quarter
  of its compute per token (d=128, 4 GAU layers, e=256, s=64), so 250 steps fit on one core; no dropout (a run
  shorter than one epoch gains nothing from it).
- ``base``: ``chinese_GAU-alpha-char_L-24_H-768`` (GAU-alpha README / JunnYu ``config.json``): vocab 12000, d=768,
  24 layers, e=1536, s=128.
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

__all__ = ["PRESETS", "GAUAlphaConfig"]


@dataclass(kw_only=True)
class GAUAlphaConfig:
    vocab_size: int
    """Vocabulary size (required; set from the tokenizer)."""
    hidden_size: int = 768
    """d: model width."""
    num_hidden_layers: int = 24
    """GAU layers; one GAU replaces attention *and* FFN, so base has 24."""
    intermediate_size: int = 1536
    """e: width of u and v."""
    attention_key_size: int = 128
    """s: width of the shared q/k projection z (RoPE over all of it; must be even)."""
    normalization: Literal["softmax_plus", "squared_relu"] = "softmax_plus"
    """Attention normaliser: softmax_plus (GAU-alpha) or bert4keras squared_relu, both with per-example valid n."""
    softmax_plus_min_length: int = 1
    """Clamp n from below in log(n): 1 = GAU-alpha release (and JunnYu), 16 = bert4keras since 2023-03."""
    softmax_plus_log_base: int = 512
    """The training length in ``log(n) / log(512)``."""
    attention_scale: bool = True
    """Divide q k^T by sqrt(s) before normalising."""
    use_bias: bool = False
    """Biases of the GAU projections and offsets of the q/k scale-offset heads (GAU-alpha: none)."""
    type_vocab_size: int = 2
    """Segment vocabulary; 0 disables segment embeddings."""
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    """eps of the parameter-free RMS norm (JunnYu 1e-12; bert4keras uses K.epsilon() = 1e-7)."""
    max_position_embeddings: int = 512
    """Recorded for export only: RoPE is computed per call for any length."""
    rope_theta: float = 10_000.0
    pad_token_id: int | None = 0
    is_decoder: bool = False
    """Causal GAU (CLM); ``build_clm`` forces it on."""

    def __post_init__(self):
        check_at_least(self, ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"))
        check_at_least(self, ("attention_key_size", "softmax_plus_min_length"))
        check_at_least(self, ("softmax_plus_log_base",), 2)
        check_at_least(self, ("type_vocab_size",), 0)
        if self.attention_key_size % 2:
            raise ValueError(f"attention_key_size must be even for RoPE, got {self.attention_key_size}")
        check_choices(self, {"normalization": ("softmax_plus", "squared_relu")})
        check_probabilities(self, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
        check_positive_floats(self, ("layer_norm_eps",))
        check_token_ids(self)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, intermediate_size=64, attention_key_size=16),
    "small": dict(
        vocab_size=12000, hidden_size=256, num_hidden_layers=8, intermediate_size=512, attention_key_size=128
    ),
    "demo": dict(
        vocab_size=12000,
        hidden_size=128,
        num_hidden_layers=4,
        intermediate_size=256,
        attention_key_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    ),
    "base": dict(
        vocab_size=12000, hidden_size=768, num_hidden_layers=24, intermediate_size=1536, attention_key_size=128
    ),
}
