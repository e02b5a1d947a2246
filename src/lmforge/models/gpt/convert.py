"""State-dict and config conversion between our GPT causal LM and HF ``GPT2LMHeadModel``.

No ``transformers`` import here (``lmforge/hf/`` is the only importer): HF config fields are plain dicts and the
key map is written out below. Parity (logits and greedy generations, both directions) is tested in
``tests/models/test_gpt.py`` with random weights in fp32.

Mapping notes:
- HF GPT-2 uses ``Conv1D``, whose weight is ``(in, out)``: the transpose of ``nn.Linear.weight``. Every
  ``c_attn``/``c_proj``/``c_fc`` weight is transposed both ways (nanoGPT's ``from_pretrained`` does the same).
- ``c_attn`` rows are [q | k | v], the layout of our fused ``qkv``, so it maps one to one.
- ``lm_head.weight`` is tied to ``transformer.wte.weight``: optional on import (it must then equal it), written on
  export so ``load_state_dict(strict=True)`` works; HF ``save_pretrained`` stores it once.
- Old checkpoints carry the causal-mask buffers ``attn.bias``/``attn.masked_bias``; they are not weights and are
  dropped (``HF_UNUSED_SUFFIXES``).

Only the GPT-2 subset of ``GPTConfig`` has an HF twin (learned positions, LayerNorm with bias, GELU MLP, dense
FFN, multi-head attention); anything else raises ``ValueError`` naming the options (export such models with
``lmforge export --format lmforge``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lmforge.models.common import param_pairs, raise_on_mismatch
from lmforge.models.gpt.config import GPTConfig

__all__ = [
    "HF_UNUSED_SUFFIXES",
    "from_hf_config",
    "from_hf_state_dict",
    "from_llama_config",
    "from_llama_state_dict",
    "to_hf_config",
    "to_hf_state_dict",
]

HF_UNUSED_SUFFIXES: tuple[str, ...] = (".attn.bias", ".attn.masked_bias")
_ACT_TO_HF = {"gelu_tanh": "gelu_pytorch_tanh"}
_ACT_FROM_HF = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}
# Our module -> HF GPT-2 module inside one block.
_LAYER_NAMES = {
    "attention_norm": "ln_1",
    "attention.qkv": "attn.c_attn",
    "attention.o_proj": "attn.c_proj",
    "ffn_norm": "ln_2",
    "ffn.up": "mlp.c_fc",
    "ffn.down": "mlp.c_proj",
}
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _check_gpt2(cfg: GPTConfig) -> None:
    gpt2 = dict(position_embedding_type="absolute", normalization="layernorm", ffn_type="mlp", use_bias=True,
                num_experts=0, kv_heads=cfg.num_attention_heads)  # fmt: skip
    different = {name: getattr(cfg, name) for name, value in gpt2.items() if getattr(cfg, name) != value}
    if different:
        raise ValueError(
            f"only GPT-2-shaped configs convert to HF GPT2LMHeadModel; these options differ: {different} "
            "(use `lmforge export --format lmforge` for the modern variants)"
        )


def _key_pairs(cfg: GPTConfig, *, head: bool = True) -> list[tuple[str, str]]:
    """(our key, HF key) for every tensor both models store once (``head=False``: the backbone's only)."""
    pairs = [
        ("backbone.embeddings.word_embeddings.weight", "transformer.wte.weight"),
        ("backbone.embeddings.position_embeddings.weight", "transformer.wpe.weight"),
    ]
    for i in range(cfg.num_hidden_layers):
        pairs += param_pairs(f"backbone.layers.{i}", f"transformer.h.{i}", _LAYER_NAMES)
    pairs += [("backbone.norm.weight", "transformer.ln_f.weight"), ("backbone.norm.bias", "transformer.ln_f.bias")]
    if head and not cfg.tie_word_embeddings:
        pairs.append(("head.decoder.weight", "lm_head.weight"))
    return pairs


def _transpose_if_conv1d(hf_key: str, tensor: Tensor) -> Tensor:
    return tensor.t().contiguous() if hf_key.endswith(_CONV1D) else tensor


def from_hf_state_dict(sd: Mapping[str, Tensor], cfg: GPTConfig, *, head: bool = True) -> dict[str, Tensor]:
    """HF ``GPT2LMHeadModel`` state dict -> our ``LanguageModel`` state dict. ``head=False``: only the backbone
    (``transformer.`` keys of any ``GPT2*`` checkpoint, e.g. ``GPT2ForSequenceClassification``)."""
    _check_gpt2(cfg)
    if not head:
        sd = {k: v for k, v in sd.items() if k.startswith("transformer.")}
    pairs = _key_pairs(cfg, head=head)
    used = {theirs for _, theirs in pairs}
    if cfg.tie_word_embeddings and head:
        if "lm_head.weight" in sd and not torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"]):
            raise ValueError("lm_head.weight differs from transformer.wte.weight, but the config ties them")
        used.add("lm_head.weight")
    missing = [theirs for _, theirs in pairs if theirs not in sd]
    unknown = [k for k in sd if k not in used and not k.endswith(HF_UNUSED_SUFFIXES)]
    raise_on_mismatch(missing, unknown, "HF GPT-2 state dict")
    return {ours: _transpose_if_conv1d(theirs, sd[theirs]) for ours, theirs in pairs}


def to_hf_state_dict(our_sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """Our ``LanguageModel`` state dict -> HF ``GPT2LMHeadModel`` state dict (tied ``lm_head.weight`` included,
    sharing storage with ``transformer.wte.weight``: save with ``save_pretrained``, not a raw ``save_file``)."""
    _check_gpt2(cfg)
    pairs = _key_pairs(cfg)
    missing = [ours for ours, _ in pairs if ours not in our_sd]
    unknown = set(our_sd) - {ours for ours, _ in pairs}
    raise_on_mismatch(missing, unknown, "our GPT state dict")
    hf = {theirs: _transpose_if_conv1d(theirs, our_sd[ours]) for ours, theirs in pairs}
    if cfg.tie_word_embeddings:
        hf["lm_head.weight"] = hf["transformer.wte.weight"]
    return hf


def to_hf_config(cfg: GPTConfig) -> dict[str, Any]:
    """Plain dict of HF ``GPT2Config`` fields for ``cfg`` (``model_type`` and ``architectures`` included)."""
    _check_gpt2(cfg)
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_position_embeddings,
        "n_embd": cfg.hidden_size,
        "n_layer": cfg.num_hidden_layers,
        "n_head": cfg.num_attention_heads,
        "n_inner": cfg.intermediate_size,  # None = 4 * n_embd in HF too
        "activation_function": _ACT_TO_HF.get(cfg.activation_function, cfg.activation_function),
        "resid_pdrop": cfg.resid_pdrop,
        "embd_pdrop": cfg.embd_pdrop,
        "attn_pdrop": cfg.attn_pdrop,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "initializer_range": cfg.initializer_range,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
    }


def from_hf_config(hf: Mapping[str, Any], **overrides: Any) -> GPTConfig:
    """``GPTConfig`` from an HF GPT-2 ``config.json`` dict; options our model does not implement raise."""
    if hf.get("model_type") != "gpt2":
        raise ValueError(f"expected model_type 'gpt2', got {hf.get('model_type')!r}")
    unsupported = {
        "add_cross_attention": (False, hf.get("add_cross_attention", False)),
        "scale_attn_weights": (True, hf.get("scale_attn_weights", True)),
        "scale_attn_by_inverse_layer_idx": (False, hf.get("scale_attn_by_inverse_layer_idx", False)),
    }
    different = {name: got for name, (want, got) in unsupported.items() if got != want}
    if different:
        raise ValueError(f"unsupported GPT-2 options {different}")
    names = {
        "vocab_size": "vocab_size",
        "n_positions": "max_position_embeddings",
        "n_embd": "hidden_size",
        "n_layer": "num_hidden_layers",
        "n_head": "num_attention_heads",
        "n_inner": "intermediate_size",
        "resid_pdrop": "resid_pdrop",
        "embd_pdrop": "embd_pdrop",
        "attn_pdrop": "attn_pdrop",
        "layer_norm_epsilon": "layer_norm_epsilon",
        "initializer_range": "initializer_range",
        "tie_word_embeddings": "tie_word_embeddings",
        "bos_token_id": "bos_token_id",
        "eos_token_id": "eos_token_id",
    }
    fields: dict[str, Any] = {ours: hf[theirs] for theirs, ours in names.items() if theirs in hf}
    if "activation_function" in hf:
        fields["activation_function"] = _ACT_FROM_HF.get(hf["activation_function"], hf["activation_function"])
    return GPTConfig(**(fields | overrides))


# ----------------------------------------------------------------------------- LLaMA (import only)
# HF ``LlamaForCausalLM`` is our GPT with every modern switch on: RoPE ("half" pairing = HF ``rotate_half``, base
# ``rope_theta``), RMSNorm with gain, SwiGLU (``silu(gate) * up``), no biases, GQA; q/k/v are fused into ``qkv``.
_LLAMA_LAYER_NAMES = {
    "attention_norm": "input_layernorm",
    "attention.o_proj": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn.gate": "mlp.gate_proj",
    "ffn.up": "mlp.up_proj",
    "ffn.down": "mlp.down_proj",
}


def from_llama_config(hf: Mapping[str, Any], **overrides: Any) -> GPTConfig:
    """``GPTConfig`` for an HF LLaMA ``config.json`` dict; a field our GPT cannot represent exactly raises."""
    if hf.get("model_type") != "llama":
        raise ValueError(f"expected model_type 'llama', got {hf.get('model_type')!r}")
    rope = hf.get("rope_parameters") or {}  # transformers 5 keeps rope_theta/rope_type here
    rope_scaling = hf.get("rope_scaling") or {}
    hidden, heads = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    checks = {
        "hidden_act": (hf.get("hidden_act", "silu"), "silu"),
        "attention_bias": (hf.get("attention_bias", False), False),
        "mlp_bias": (hf.get("mlp_bias", False), False),
        "rope_type": (rope.get("rope_type", rope_scaling.get("rope_type", "default")), "default"),
        "head_dim": (hf.get("head_dim") or hidden // heads, hidden // heads),
        "pretraining_tp": (hf.get("pretraining_tp", 1), 1),
    }
    for name, (got, supported) in checks.items():
        if got != supported:
            raise ValueError(
                f"LLaMA config field {name}={got!r} is not supported by lmforge's GPT (needs {supported!r})"
            )
    fields: dict[str, Any] = dict(
        position_embedding_type="rotary", normalization="rmsnorm", ffn_type="swiglu", use_bias=False,
        vocab_size=hf.get("vocab_size", 32000), hidden_size=hidden, num_attention_heads=heads,
        num_hidden_layers=hf.get("num_hidden_layers", 32), num_key_value_heads=hf.get("num_key_value_heads"),
        intermediate_size=hf.get("intermediate_size", 11008), layer_norm_epsilon=hf.get("rms_norm_eps", 1e-6),
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
        max_position_embeddings=hf.get("max_position_embeddings", 2048), attn_pdrop=hf.get("attention_dropout", 0.0),
        tie_word_embeddings=hf.get("tie_word_embeddings", False), initializer_range=hf.get("initializer_range", 0.02),
        bos_token_id=hf.get("bos_token_id"), eos_token_id=hf.get("eos_token_id"),
    )  # fmt: skip
    if isinstance(fields["eos_token_id"], list):
        raise ValueError(f"LLaMA config field eos_token_id={fields['eos_token_id']!r}: lmforge takes one id")
    return GPTConfig(**(fields | overrides))


def from_llama_state_dict(sd: Mapping[str, Tensor], cfg: GPTConfig, *, head: bool = True) -> dict[str, Tensor]:
    """HF ``LlamaForCausalLM`` (``head=False``: any ``Llama*``, backbone only) state dict -> ours."""
    if not head:
        sd = {k: v for k, v in sd.items() if k.startswith("model.")}
    pairs = [("backbone.embeddings.word_embeddings.weight", "model.embed_tokens.weight")]
    pairs.append(("backbone.norm.weight", "model.norm.weight"))
    fused = {}
    for i in range(cfg.num_hidden_layers):
        pairs += param_pairs(f"backbone.layers.{i}", f"model.layers.{i}", _LLAMA_LAYER_NAMES, params=("weight",))
        fused[f"backbone.layers.{i}.attention.qkv.weight"] = [
            f"model.layers.{i}.self_attn.{p}_proj.weight" for p in ("q", "k", "v")
        ]
    used = {theirs for _, theirs in pairs} | {key for keys in fused.values() for key in keys}
    if head and not cfg.tie_word_embeddings:
        pairs.append(("head.decoder.weight", "lm_head.weight"))
        used.add("lm_head.weight")
    elif head and "lm_head.weight" in sd:
        if not torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"]):
            raise ValueError("lm_head.weight differs from model.embed_tokens.weight, but the config ties them")
        used.add("lm_head.weight")
    optional = {"lm_head.weight"} if cfg.tie_word_embeddings else set()  # a tied copy need not be stored
    missing = [k for k in used if k not in sd and k not in optional]
    unknown = [k for k in sd if k not in used and not k.endswith("rotary_emb.inv_freq")]
    raise_on_mismatch(missing, unknown, "HF LLaMA state dict")
    ours = {our: sd[theirs] for our, theirs in pairs}
    ours |= {our: torch.cat([sd[k] for k in keys], dim=0) for our, keys in fused.items()}
    return ours
