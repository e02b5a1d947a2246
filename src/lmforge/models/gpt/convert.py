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

__all__ = ["HF_UNUSED_SUFFIXES", "from_hf_config", "from_hf_state_dict", "to_hf_config", "to_hf_state_dict"]

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


def _key_pairs(cfg: GPTConfig) -> list[tuple[str, str]]:
    """(our key, HF key) for every tensor both models store once."""
    pairs = [
        ("backbone.embeddings.word_embeddings.weight", "transformer.wte.weight"),
        ("backbone.embeddings.position_embeddings.weight", "transformer.wpe.weight"),
    ]
    for i in range(cfg.num_hidden_layers):
        pairs += param_pairs(f"backbone.layers.{i}", f"transformer.h.{i}", _LAYER_NAMES)
    pairs += [("backbone.norm.weight", "transformer.ln_f.weight"), ("backbone.norm.bias", "transformer.ln_f.bias")]
    if not cfg.tie_word_embeddings:
        pairs.append(("head.decoder.weight", "lm_head.weight"))
    return pairs


def _transpose_if_conv1d(hf_key: str, tensor: Tensor) -> Tensor:
    return tensor.t().contiguous() if hf_key.endswith(_CONV1D) else tensor


def from_hf_state_dict(sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """HF ``GPT2LMHeadModel`` state dict -> our ``LanguageModel`` state dict."""
    _check_gpt2(cfg)
    pairs = _key_pairs(cfg)
    used = {theirs for _, theirs in pairs}
    if cfg.tie_word_embeddings:
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
