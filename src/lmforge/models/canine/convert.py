"""State-dict and config conversion between our ``CanineModel`` and HF ``CanineModel``.

No ``transformers`` import (``lmforge/hf/`` is the only importer): HF config fields are a plain dict and the key
map is written out below. Parity: ``tests/models/test_canine.py`` (random weights, both directions).

Mapping notes:
- Every transformer layer is our ``BertLayer``; inside a layer the names are BERT's (``bert.convert``'s map).
- HF ``CanineFor*`` checkpoints prefix the backbone with ``canine.``; it is stripped on import, and task heads
  (``qa_outputs``, ``classifier``) are dropped only when listed in ``ignore_prefixes``.
- HF's non-persistent ``char_embeddings.position_ids`` buffer is ignored when present (old checkpoints).
- HF's position table has ``num_hash_buckets`` rows, ours ``max_position_embeddings``: the two must be equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from lmforge.models.bert.convert import _LAYER_NAMES as BERT_LAYER_NAMES
from lmforge.models.canine.config import CanineConfig
from lmforge.models.common import param_pairs, raise_on_mismatch

__all__ = ["HF_UNUSED_PREFIXES", "from_hf_config", "from_hf_state_dict", "to_hf_config", "to_hf_state_dict"]

HF_UNUSED_PREFIXES: tuple[str, ...] = ("char_embeddings.position_ids", "qa_outputs.", "classifier.")
_HF_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "downsampling_rate",
    "upsampling_kernel_size",
    "num_hash_functions",
    "num_hash_buckets",
    "local_transformer_stride",
)


def _check_convertible(cfg: CanineConfig) -> None:
    if cfg.max_position_embeddings != cfg.num_hash_buckets:
        raise ValueError(
            "HF CANINE sizes its position table by num_hash_buckets: max_position_embeddings "
            f"({cfg.max_position_embeddings}) must equal num_hash_buckets ({cfg.num_hash_buckets})"
        )


def _key_pairs(cfg: CanineConfig) -> list[tuple[str, str]]:
    """(our key, HF key) for every tensor of the backbone."""
    pairs = [
        (f"embeddings.hash.shards.{k}.weight", f"char_embeddings.HashBucketCodepointEmbedder_{k}.weight")
        for k in range(cfg.num_hash_functions)
    ]
    pairs += [
        ("embeddings.position_embeddings.weight", "char_embeddings.char_position_embeddings.weight"),
        ("embeddings.token_type_embeddings.weight", "char_embeddings.token_type_embeddings.weight"),
    ]
    pairs += param_pairs("embeddings", "char_embeddings", {"norm": "LayerNorm"})
    pairs += param_pairs("initial_layer", "initial_char_encoder.layer.0", BERT_LAYER_NAMES)
    pairs += param_pairs("downsample", "chars_to_molecules", {"conv": "conv", "norm": "LayerNorm"})
    for i in range(cfg.num_hidden_layers):
        pairs += param_pairs(f"layers.{i}", f"encoder.layer.{i}", BERT_LAYER_NAMES)
    pairs += param_pairs("", "", {"pooler": "pooler.dense"})
    pairs += param_pairs("upsample", "projection", {"conv": "conv", "norm": "LayerNorm"})
    pairs += param_pairs("final_layer", "final_char_encoder.layer.0", BERT_LAYER_NAMES)
    return [(ours.lstrip("."), theirs.lstrip(".")) for ours, theirs in pairs]


def from_hf_state_dict(
    sd: Mapping[str, Tensor], cfg: CanineConfig, *, ignore_prefixes: Iterable[str] = HF_UNUSED_PREFIXES
) -> dict[str, Tensor]:
    """HF ``CanineModel`` (or ``CanineFor*``, prefix ``canine.``) state dict -> our ``CanineModel`` state dict."""
    _check_convertible(cfg)
    ignore_prefixes = tuple(ignore_prefixes)
    if any(key.startswith("canine.") for key in sd):
        sd = {key.removeprefix("canine."): value for key, value in sd.items()}
    pairs = _key_pairs(cfg)
    missing = [theirs for _, theirs in pairs if theirs not in sd]
    used = {theirs for _, theirs in pairs}
    unknown = [key for key in sd if key not in used and not key.startswith(ignore_prefixes)]
    raise_on_mismatch(missing, unknown, "HF CANINE state dict")
    return {ours: sd[theirs] for ours, theirs in pairs}


def to_hf_state_dict(our_sd: Mapping[str, Tensor], cfg: CanineConfig) -> dict[str, Tensor]:
    """Our ``CanineModel`` state dict -> HF ``CanineModel`` state dict."""
    _check_convertible(cfg)
    pairs = _key_pairs(cfg)
    missing = [ours for ours, _ in pairs if ours not in our_sd]
    unknown = set(our_sd) - {ours for ours, _ in pairs}
    raise_on_mismatch(missing, unknown, "our CANINE state dict")
    return {theirs: our_sd[ours] for ours, theirs in pairs}


def to_hf_config(cfg: CanineConfig) -> dict[str, Any]:
    """Plain dict of HF ``CanineConfig`` fields for ``cfg``."""
    _check_convertible(cfg)
    return {"model_type": "canine", "architectures": ["CanineModel"]} | {f: getattr(cfg, f) for f in _HF_FIELDS}


def from_hf_config(hf: Mapping[str, Any], **overrides: Any) -> CanineConfig:
    """``CanineConfig`` from an HF ``config.json`` dict; other model types raise."""
    if hf.get("model_type") != "canine":
        raise ValueError(f"not a CANINE config: model_type {hf.get('model_type')!r}")
    return CanineConfig(**({f: hf[f] for f in _HF_FIELDS if f in hf} | overrides))
