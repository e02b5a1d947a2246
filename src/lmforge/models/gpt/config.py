"""``GPTConfig``: GPT-2 and its modern variants (RoPE, RMSNorm, SwiGLU, no bias, untied head, GQA, MoE) in one
flat dataclass (R1).

Field names are HF's: GPT-2's where GPT-2 has the concept (``activation_function``, ``layer_norm_epsilon``,
``resid_pdrop``/``embd_pdrop``/``attn_pdrop``; ``hidden_size`` etc. are ``GPT2Config`` attribute aliases of
``n_embd``...), LLaMA/Mixtral/DeepSeek names for the modern switches (``num_key_value_heads``, ``rope_theta``,
``num_experts_per_tok``, ``num_shared_experts``, ``moe_intermediate_size``, ``router_aux_loss_coef``,
``norm_topk_prob``) and Switch Transformers' ``router_z_loss_coef``. Our own switch names:
``position_embedding_type`` ("absolute" | "rotary", as ``BertConfig``), ``normalization`` ("layernorm" |
"rmsnorm"), ``ffn_type`` ("mlp" | "swiglu"), ``use_bias``; ``num_experts > 0`` turns every FFN into an MoE.

Presets and their sources:
- ``tiny``: test size (style guide: hidden <= 64, 2 layers, vocab ~100); ``tiny-modern``: all switches on
  (LLaMA-style: RoPE, RMSNorm, SwiGLU, no bias, untied, 2 KV heads); ``tiny-moe``: ``tiny-modern`` with 4 experts,
  top-2 and one shared expert.
- ``small`` (124M), ``medium`` (355M): OpenAI GPT-2 (HF ``gpt2`` / ``gpt2-medium`` config.json; vocab 50257,
  1024 positions). Chinese runs take ``vocab_size`` from the tokenizer.
- ``bench``: the issue-#6 benchmark shape (hidden 256, 4 layers, 4 heads; BERT-small's size), vocab 32000 (our
  byte-level BPE default), 512 positions.

Deviations from HF ``GPT2Config`` defaults: dropouts default to 0.0 (nanoGPT's pretraining setting; HF 0.1), and
RoPE uses the "half" pairing (GPT-NeoX / LLaMA ``rotate_half``) over the whole head dim, base ``rope_theta``.
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

__all__ = ["PRESETS", "GPTConfig"]


def _round_up(value: float, multiple: int) -> int:
    return multiple * -(-int(value) // multiple)


@dataclass(kw_only=True)
class GPTConfig:
    vocab_size: int
    """Vocabulary size (required; set from the tokenizer)."""
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_key_value_heads: int | None = None
    """Grouped-query attention: key/value heads (None = num_attention_heads, i.e. multi-head)."""
    intermediate_size: int | None = None
    """FFN width; None = 4 * hidden (mlp) or 8/3 * hidden rounded up to a multiple of 64 (swiglu, same params)."""
    activation_function: str = "gelu_new"
    """FFN activation (mlp only; swiglu is always SiLU). "gelu_new" = GELU tanh approximation, as GPT-2."""
    max_position_embeddings: int = 1024
    """Learned position table size (absolute). Rotary has no length limit; the field then only sizes exports."""
    position_embedding_type: Literal["absolute", "rotary"] = "absolute"
    rope_theta: float = 10_000.0
    normalization: Literal["layernorm", "rmsnorm"] = "layernorm"
    layer_norm_epsilon: float = 1e-5
    ffn_type: Literal["mlp", "swiglu"] = "mlp"
    use_bias: bool = True
    """Biases in every Linear and LayerNorm (GPT-2); False as nanoGPT's train.py / LLaMA."""
    tie_word_embeddings: bool = True
    resid_pdrop: float = 0.0
    embd_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    initializer_range: float = 0.02
    attn_implementation: str = "sdpa"
    """Attention kernel: "sdpa" (fused) or "eager" (reference)."""
    num_experts: int = 0
    """Routed experts per MoE FFN; 0 = dense FFN in every layer."""
    num_experts_per_tok: int = 2
    num_shared_experts: int = 0
    moe_intermediate_size: int | None = None
    """Width of each expert (and of each shared expert); None = the dense FFN width."""
    norm_topk_prob: bool = True
    """Renormalise the top-k router probabilities to sum to 1 (Mixtral); False = raw softmax (DeepSeek-MoE)."""
    router_aux_loss_coef: float = 1e-2
    router_z_loss_coef: float = 1e-3
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self):
        check_at_least(self, ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"))
        check_at_least(self, ("max_position_embeddings",))
        check_at_least(self, ("intermediate_size", "moe_intermediate_size"), optional=True)
        check_at_least(self, ("num_experts", "num_shared_experts"), 0)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.kv_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} must be a multiple of num_key_value_heads "
                f"{self.num_key_value_heads}"
            )
        check_choices(
            self,
            {
                "position_embedding_type": ("absolute", "rotary"),
                "normalization": ("layernorm", "rmsnorm"),
                "ffn_type": ("mlp", "swiglu"),
                "attn_implementation": sorted(ATTENTION_KERNELS),
                "activation_function": sorted(ACTIVATIONS),
            },
        )
        if self.position_embedding_type == "rotary" and self.head_dim % 2:
            raise ValueError(f"rotary needs an even head size, got {self.head_dim}")
        check_positive_floats(self, ("layer_norm_epsilon", "initializer_range"))
        check_probabilities(self, ("resid_pdrop", "embd_pdrop", "attn_pdrop"))
        if self.num_experts and not 1 <= self.num_experts_per_tok <= self.num_experts:
            raise ValueError(f"num_experts_per_tok must be in [1, {self.num_experts}], got {self.num_experts_per_tok}")
        if self.router_aux_loss_coef < 0 or self.router_z_loss_coef < 0:
            raise ValueError("router_aux_loss_coef and router_z_loss_coef must be >= 0")
        check_token_ids(self, ("bos_token_id", "eos_token_id"))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_heads(self) -> int:
        return self.num_attention_heads if self.num_key_value_heads is None else self.num_key_value_heads

    @property
    def ffn_hidden_size(self) -> int:
        if self.intermediate_size is not None:
            return self.intermediate_size
        if self.ffn_type == "swiglu":  # 2/3 of 4*hidden keeps the parameter count of the MLP (Shazeer 2020)
            return _round_up(8 * self.hidden_size / 3, 64)
        return 4 * self.hidden_size


_TINY: dict[str, Any] = dict(
    vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64
)
_MODERN: dict[str, Any] = dict(
    position_embedding_type="rotary",
    normalization="rmsnorm",
    layer_norm_epsilon=1e-6,
    ffn_type="swiglu",
    use_bias=False,
    tie_word_embeddings=False,
)
_SMALL: dict[str, Any] = dict(
    vocab_size=50257, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=1024
)

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": _TINY,
    "tiny-modern": {**_TINY, **_MODERN, "num_key_value_heads": 2},
    "tiny-moe": {
        **_TINY,
        **_MODERN,
        "num_key_value_heads": 2,
        "num_experts": 4,
        "num_shared_experts": 1,
        "moe_intermediate_size": 32,
    },
    "small": _SMALL,
    "small-modern": {**_SMALL, **_MODERN},
    "medium": {**_SMALL, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
    "bench": dict(
        vocab_size=32000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=512
    ),
}
