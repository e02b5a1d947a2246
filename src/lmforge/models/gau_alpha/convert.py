"""Load GAU-alpha weights in the parameter naming of the JunnYu/GAU-alpha-pytorch port
(``junnyu/chinese_GAU-alpha-char_L-24_H-768``: ``GAUAlphaForMaskedLM``) from local files, and write them back.

No ``transformers`` import: config.json is a plain dict, weights are read with ``torch.load(weights_only=True)`` or
``safetensors``. Key map (``i`` = layer; the ``gau_alpha.`` prefix is optional, a bare ``GAUAlphaModel`` has none):

| JunnYu port                                      | ours (``LanguageModel``)                         |
|--------------------------------------------------|--------------------------------------------------|
| gau_alpha.embeddings.word_embeddings.weight      | backbone.embeddings.word_embeddings.weight       |
| gau_alpha.embeddings.token_type_embeddings.weight| backbone.embeddings.token_type_embeddings.weight |
| gau_alpha.encoder.layer.i.gau.i_dense.{weight,bias}| backbone.layers.i.gau.proj.{weight,bias}       |
| gau_alpha.encoder.layer.i.gau.o_dense.{weight,bias}| backbone.layers.i.gau.out.{weight,bias}        |
| ...gau.q_scaleoffset.{weight,bias} + k_scaleoffset | backbone.layers.i.gau.scale_offset.{weight,bias} rows 0, 1 |
| cls.predictions.decoder.weight (tied copy)       | - (must equal the word embeddings)               |

The port's RoPE writes ``cat(evens', odds')`` instead of interleaving, a permutation applied to both q and k, so
``q k^T`` and therefore the weights are unchanged (architectures.md 1.1). Unknown or missing keys raise one
``ValueError`` listing all of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lmforge.models.common import raise_on_mismatch
from lmforge.models.gau_alpha.config import GAUAlphaConfig

__all__ = [
    "from_junnyu_config",
    "from_junnyu_state_dict",
    "load_junnyu_checkpoint",
    "read_state_dict",
    "to_junnyu_state_dict",
]


def _pairs(cfg: GAUAlphaConfig, prefix: str) -> list[tuple[str, str]]:
    """(our key, JunnYu key) for every tensor stored once on both sides (scale/offset handled separately)."""
    pairs = [("backbone.embeddings.word_embeddings.weight", f"{prefix}embeddings.word_embeddings.weight")]
    if cfg.type_vocab_size > 0:
        pairs.append(
            ("backbone.embeddings.token_type_embeddings.weight", f"{prefix}embeddings.token_type_embeddings.weight")
        )
    params = ("weight", "bias") if cfg.use_bias else ("weight",)
    for i in range(cfg.num_hidden_layers):
        ours, theirs = f"backbone.layers.{i}.gau", f"{prefix}encoder.layer.{i}.gau"
        for p in params:
            pairs += [(f"{ours}.proj.{p}", f"{theirs}.i_dense.{p}"), (f"{ours}.out.{p}", f"{theirs}.o_dense.{p}")]
    return pairs


def _scale_offset_keys(cfg: GAUAlphaConfig, prefix: str, layer: int) -> dict[str, tuple[str, str]]:
    theirs = f"{prefix}encoder.layer.{layer}.gau"
    params = ("weight", "bias") if cfg.use_bias else ("weight",)
    return {p: (f"{theirs}.q_scaleoffset.{p}", f"{theirs}.k_scaleoffset.{p}") for p in params}


def _detect_prefix(sd: Mapping[str, Tensor]) -> str:
    return "gau_alpha." if any(k.startswith("gau_alpha.") for k in sd) else ""


def from_junnyu_state_dict(sd: Mapping[str, Tensor], cfg: GAUAlphaConfig) -> dict[str, Tensor]:
    """JunnYu ``GAUAlphaForMaskedLM`` (or ``GAUAlphaModel``) state dict -> our ``LanguageModel`` state dict."""
    prefix = _detect_prefix(sd)
    pairs = _pairs(cfg, prefix)
    expected = {theirs for _, theirs in pairs}
    ours = {our: sd[theirs] for our, theirs in pairs if theirs in sd}
    for i in range(cfg.num_hidden_layers):
        for p, (q_key, k_key) in _scale_offset_keys(cfg, prefix, i).items():
            expected |= {q_key, k_key}
            if q_key in sd and k_key in sd:
                ours[f"backbone.layers.{i}.gau.scale_offset.{p}"] = torch.stack([sd[q_key], sd[k_key]])
    tied_key, word_key = "cls.predictions.decoder.weight", f"{prefix}embeddings.word_embeddings.weight"
    if tied_key in sd and word_key in sd and not torch.equal(sd[tied_key], sd[word_key]):
        raise ValueError(f"{tied_key} differs from {word_key}, but GAU-alpha ties them (stored once)")
    missing = sorted(expected - set(sd))
    unknown = sorted(set(sd) - expected - {tied_key})
    raise_on_mismatch(missing, unknown, "GAU-alpha (JunnYu) state dict")
    return ours


def to_junnyu_state_dict(our_sd: Mapping[str, Tensor], cfg: GAUAlphaConfig) -> dict[str, Tensor]:
    """Our ``LanguageModel`` state dict -> JunnYu ``GAUAlphaForMaskedLM`` naming (tied decoder written out)."""
    prefix = "gau_alpha."
    pairs = _pairs(cfg, prefix)
    expected = {our for our, _ in pairs}
    params = ("weight", "bias") if cfg.use_bias else ("weight",)
    expected |= {f"backbone.layers.{i}.gau.scale_offset.{p}" for i in range(cfg.num_hidden_layers) for p in params}
    raise_on_mismatch(sorted(expected - set(our_sd)), sorted(set(our_sd) - expected), "our GAU-alpha state dict")
    out = {theirs: our_sd[our] for our, theirs in pairs}
    for i in range(cfg.num_hidden_layers):
        for p, (q_key, k_key) in _scale_offset_keys(cfg, prefix, i).items():
            out[q_key], out[k_key] = our_sd[f"backbone.layers.{i}.gau.scale_offset.{p}"].unbind(0)
    out["cls.predictions.decoder.weight"] = out[f"{prefix}embeddings.word_embeddings.weight"]
    return out


def from_junnyu_config(hf: Mapping[str, Any], **overrides: Any) -> GAUAlphaConfig:
    """``GAUAlphaConfig`` from the port's ``config.json`` dict; options we do not implement raise."""
    if hf.get("hidden_act", "swish") not in ("swish", "silu"):
        raise ValueError(f"GAU-alpha uses swish/SiLU, got hidden_act {hf['hidden_act']!r}")
    if hf.get("embedding_size") not in (None, hf.get("hidden_size", 768)):
        raise ValueError(f"embedding_size {hf['embedding_size']} != hidden_size is not supported")
    names = (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "attention_key_size",
        "normalization",
        "attention_scale",
        "use_bias",
        "type_vocab_size",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "layer_norm_eps",
        "max_position_embeddings",
        "pad_token_id",
    )
    return GAUAlphaConfig(**({name: hf[name] for name in names if name in hf} | overrides))


def read_state_dict(directory: str | Path) -> dict[str, Tensor]:
    """Weights of a local HF-style directory (``lmforge.models.loading.read_weights``: safetensors, or
    ``pytorch_model.bin`` with ``weights_only=True``)."""
    from lmforge.models.loading import read_weights

    return read_weights(directory)


def load_junnyu_checkpoint(directory: str | Path, *, task: str = "mlm"):
    """Build our GAU-alpha ``LanguageModel`` (``task`` "mlm" or "clm") from a local JunnYu-format directory."""
    from lmforge.models.gau_alpha.model import build_clm, build_mlm

    if task not in ("mlm", "clm"):
        raise ValueError(f"task must be 'mlm' or 'clm', got {task!r}")
    cfg = from_junnyu_config(json.loads((Path(directory) / "config.json").read_text(encoding="utf-8")))
    model = (build_mlm if task == "mlm" else build_clm)(cfg)
    model.load_state_dict(from_junnyu_state_dict(read_state_dict(directory), cfg), strict=True)
    return model
