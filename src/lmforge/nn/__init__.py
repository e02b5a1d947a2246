"""Shared building blocks (R2): explicit keyword arguments, no model config, no I/O.

Catalogue and conventions: ``docs/nn.md``. Import from the submodules (``lmforge.nn.attention``, ...); the names
below are re-exported for convenience.
"""

from lmforge.nn.attention import (
    ATTENTION_KERNELS,
    MultiHeadAttention,
    attend,
    causal_keep,
    eager_attention,
    keep_from_padding_mask,
    sdpa_attention,
)
from lmforge.nn.embeddings import TokenEmbeddings
from lmforge.nn.ffn import ACTIVATIONS, GLU, MLP, GeGLU, SwiGLU
from lmforge.nn.norms import LayerNorm, RMSNorm, ScaleNorm
from lmforge.nn.positions import (
    LearnedPositions,
    RotaryEmbedding,
    ScaledSinusoid,
    SinusoidalPositions,
    T5RelativePositionBias,
    apply_rotary,
)

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_KERNELS",
    "GLU",
    "MLP",
    "GeGLU",
    "LayerNorm",
    "LearnedPositions",
    "MultiHeadAttention",
    "RMSNorm",
    "RotaryEmbedding",
    "ScaleNorm",
    "ScaledSinusoid",
    "SinusoidalPositions",
    "SwiGLU",
    "T5RelativePositionBias",
    "TokenEmbeddings",
    "apply_rotary",
    "attend",
    "causal_keep",
    "eager_attention",
    "keep_from_padding_mask",
    "sdpa_attention",
]
