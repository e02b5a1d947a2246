"""``FLASHConfig``: shared by FLASH-Quad (``"flash-quad"``: GAU layers with quadratic attention) and FLASH
(``"flash"``: GAU layers with mixed-chunk attention), one flat dataclass (R1).

Names follow JunnYu/FLASHQuad_pytorch (``FLASHQuadConfig``/``FLASHConfig``) where they exist, mapped to HF words:
``intermediate_size`` = e (= ``expansion_factor * hidden``), ``attention_key_size`` = s (JunnYu ``s`` /
``query_key_dim``). Switches that differ between the references (architectures.md 1.2):
``relative_position`` ("toeplitz" = paper/JunnYu learned Toeplitz, "t5" = lucidrains one-head T5 buckets x sqrt(s),
"none"), ``rope_pairing`` ("half" = JunnYu's FLASH-Quad ``rope``, "interleaved" = rotary_embedding_torch),
``rotary_dim`` (None = all s dims; lucidrains: 32), ``quad_length`` (n of the quadratic kernel; FLASH-Quad: fixed
512 as JunnYu, None = valid keys; FLASH: None = the chunk size G), ``linear_normalizer`` and
``reduce_group_non_causal_attn`` (FLASH only), ``shift_tokens``, ``position_scale_init`` (scaled sinusoid; None =
1/sqrt(d) as JunnYu's FLASH-Quad).

Presets and their sources (the same names exist for both models, see ``FLASH_QUAD_PRESETS``/``FLASH_PRESETS``):
- ``tiny``: test size (hidden <= 64, 2 layers, vocab ~100; G=8 so tests cross chunk boundaries).
- ``small``: JunnYu's pretraining size (``run_mlm_wwm.py``: 12 layers, d=768, e=1536, s=128; FLASH G=256).
- ``base`` (FLASH-Quad only): ``FLASHQuadConfig`` defaults, 24 layers.
- ``bench``: the benchmark shape of issue #5 (d=256, 4 layers, e=512, s=128, G=256, causal-ready).
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
from lmforge.nn.ffn import ACTIVATIONS

__all__ = ["FLASH_PRESETS", "FLASH_QUAD_PRESETS", "FLASHConfig"]


@dataclass(kw_only=True)
class FLASHConfig:
    vocab_size: int
    """Vocabulary size (required; set from the tokenizer)."""
    hidden_size: int = 768
    num_hidden_layers: int = 12
    intermediate_size: int = 1536
    """e: width of u and v (paper: 2d)."""
    attention_key_size: int = 128
    """s: width of the shared q/k projection."""
    group_size: int = 256
    """G: chunk length of mixed-chunk attention (FLASH only)."""
    norm_type: Literal["scalenorm", "layernorm"] = "scalenorm"
    """Pre-norm of every layer (and FLASH-Quad's embedding/head norms)."""
    layer_norm_eps: float = 1e-5
    hidden_act: str = "silu"
    """Activation of FLASH-Quad's MLM-head transform (BERT head); the GAU itself always uses SiLU."""
    use_bias: bool = True
    """Biases of the GAU projections and offsets of the scale/offset heads."""
    type_vocab_size: int = 2
    """Segment vocabulary (JunnYu FLASH-Quad: 2, FLASH: 0 = none)."""
    max_position_embeddings: int = 512
    """Toeplitz bias length (2L-1 offsets) and the default fixed kernel n of FLASH-Quad."""
    relative_position: Literal["toeplitz", "t5", "none"] = "toeplitz"
    rope_pairing: Literal["half", "interleaved"] = "half"
    rotary_dim: int | None = None
    """RoPE on the first rotary_dim features of q/k (None = all s)."""
    rope_theta: float = 10_000.0
    quad_length: int | None = 512
    """n in relu(q k^T / n + b)^2: fixed (training length) or None (FLASH-Quad: valid keys; FLASH: G)."""
    linear_normalizer: Literal["group", "valid_length"] = "group"
    reduce_group_non_causal_attn: bool = True
    shift_tokens: bool = False
    position_scale_init: float | None = None
    """Init of the scaled-sinusoid scalar; None = 1/sqrt(hidden_size) (JunnYu FLASH-Quad), lucidrains uses 1."""
    dropout: float = 0.0
    """Hidden dropout (embeddings, residual branches)."""
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    is_decoder: bool = False
    """Causal (CLM); ``build_clm`` forces it on."""

    def __post_init__(self):
        check_at_least(self, ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"))
        check_at_least(self, ("attention_key_size", "group_size", "max_position_embeddings"))
        check_at_least(self, ("quad_length",), optional=True)
        check_at_least(self, ("type_vocab_size",), 0)
        if self.rotary_size % 2 or not 0 < self.rotary_size <= self.attention_key_size:
            raise ValueError(f"rotary_dim must be even and in (0, attention_key_size], got {self.rotary_size}")
        check_choices(
            self,
            {
                "norm_type": ("scalenorm", "layernorm"),
                "relative_position": ("toeplitz", "t5", "none"),
                "rope_pairing": ("half", "interleaved"),
                "linear_normalizer": ("group", "valid_length"),
                "hidden_act": sorted(ACTIVATIONS),
            },
        )
        if self.is_decoder and self.linear_normalizer == "valid_length":
            raise ValueError("linear_normalizer='valid_length' is bidirectional only; use 'group' with is_decoder")
        check_probabilities(self, ("dropout", "attention_dropout"))
        check_positive_floats(self, ("layer_norm_eps", "initializer_range"))
        check_token_ids(self)

    @property
    def rotary_size(self) -> int:
        return self.attention_key_size if self.rotary_dim is None else self.rotary_dim


_TINY: dict[str, Any] = dict(
    vocab_size=128,
    hidden_size=32,
    num_hidden_layers=2,
    intermediate_size=64,
    attention_key_size=16,
    group_size=8,
    max_position_embeddings=64,
    quad_length=64,
)
_SMALL: dict[str, Any] = dict(vocab_size=12000, hidden_size=768, num_hidden_layers=12, intermediate_size=1536)
_BENCH: dict[str, Any] = dict(
    vocab_size=21128, hidden_size=256, num_hidden_layers=4, intermediate_size=512, attention_key_size=128
)

# FLASH-Quad as JunnYu/FLASHQuad_pytorch flash/gau.py + flash/flash.py: Toeplitz bias, half-pairing RoPE over all s,
# n fixed at 512, ScaleNorm, token types, scaled sinusoid init 1/sqrt(d).
FLASH_QUAD_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": _TINY,
    "small": _SMALL,
    "base": {**_SMALL, "num_hidden_layers": 24},
    "bench": {**_BENCH, "max_position_embeddings": 512},
}

# FLASH as lucidrains/FLASH-pytorch FLASHTransformer (JunnYu flash/flash_lucidrains.py): T5 bias, interleaved RoPE on
# 32 dims, kernel n = G, no token types, scaled sinusoid init 1, group-normalised linear part (our convention).
_FLASH_SWITCHES: dict[str, Any] = dict(
    relative_position="t5",
    rope_pairing="interleaved",
    type_vocab_size=0,
    quad_length=None,
    position_scale_init=1.0,
)
FLASH_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**_TINY, **_FLASH_SWITCHES, "rotary_dim": 8},
    "small": {**_SMALL, **_FLASH_SWITCHES, "rotary_dim": 32, "group_size": 256},
    "bench": {**_BENCH, **_FLASH_SWITCHES, "rotary_dim": 32, "group_size": 256},
}
