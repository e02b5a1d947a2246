"""State-dict and config conversion between our Reformer LMs and HF ``ReformerModelWithLMHead`` (causal) /
``ReformerForMaskedLM`` (bidirectional).

No ``transformers`` import here (``lmforge/hf/`` is the only importer). Parity is tested in
``tests/models/test_reformer.py`` with random weights, a fixed ``hash_seed`` and dropout 0.

Mapping notes:
- HF's ``lm_head.decoder.bias`` is the bias the forward adds. ``lm_head.bias`` was the same parameter before
  transformers 5; since 5.x it is a separate parameter the forward never uses, so after training it differs. On
  import ``decoder.bias`` is taken and ``lm_head.bias`` ignored; on export both are written (equal).
- Axial tables keep HF's layout (``weights.i`` of shape ``[1, .., shape_i, .., 1, dim_i]``), learned positions
  are HF's ``position_embeddings.embedding.weight``.
- Our ``use_reversible`` and ``attn_implementation`` have no HF twin (HF is always reversible and eager): they do
  not change the function, so export drops them and import takes the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from lmforge.models.common import param_pairs, raise_on_mismatch
from lmforge.models.reformer.config import ReformerConfig

__all__ = ["from_hf_config", "from_hf_state_dict", "to_hf_config", "to_hf_state_dict"]

_HF_FIELDS = (
    "vocab_size", "hidden_size", "num_attention_heads", "attention_head_size", "attn_layers", "feed_forward_size",
    "hidden_act", "hidden_dropout_prob", "local_attn_chunk_length", "local_num_chunks_before",
    "local_num_chunks_after", "local_attention_probs_dropout_prob", "lsh_attn_chunk_length", "lsh_num_chunks_before",
    "lsh_num_chunks_after", "lsh_attention_probs_dropout_prob", "num_buckets", "num_hashes", "hash_seed",
    "axial_pos_embds", "axial_pos_shape", "axial_pos_embds_dim", "axial_norm_std", "max_position_embeddings",
    "is_decoder", "layer_norm_eps", "chunk_size_feed_forward", "initializer_range", "pad_token_id",
)  # fmt: skip
_FFN_NAMES = {"feed_forward.norm": "feed_forward.layer_norm", "feed_forward.up": "feed_forward.dense.dense",
              "feed_forward.down": "feed_forward.output.dense"}  # fmt: skip


def _key_pairs(cfg: ReformerConfig, *, head: bool = True) -> list[tuple[str, str]]:
    """(our key, HF key) for every tensor both models store once (``head=False``: the backbone's only)."""
    ours, theirs = "backbone.embeddings", "reformer.embeddings"
    pairs = [(f"{ours}.word_embeddings.weight", f"{theirs}.word_embeddings.weight")]
    if cfg.axial_pos_embds:
        pairs += [(f"{ours}.position_embeddings.weights.{i}", f"{theirs}.position_embeddings.weights.{i}")
                  for i in range(len(cfg.axial_pos_shape))]  # fmt: skip
    else:
        pairs.append((f"{ours}.position_embeddings.weight", f"{theirs}.position_embeddings.embedding.weight"))
    for i, kind in enumerate(cfg.attn_layers):
        mine, other = f"backbone.layers.{i}", f"reformer.encoder.layers.{i}"
        projections = ("query_key", "value") if kind == "lsh" else ("query", "key", "value")
        pairs += [(f"{mine}.attention.attention.{p}.weight", f"{other}.attention.self_attention.{p}.weight")
                  for p in projections]  # fmt: skip
        pairs.append((f"{mine}.attention.o_proj.weight", f"{other}.attention.output.dense.weight"))
        pairs += param_pairs(mine, other, {"attention.norm": "attention.layer_norm", **_FFN_NAMES})
    pairs += param_pairs("backbone", "reformer.encoder", {"norm": "layer_norm"})
    if head:
        pairs += param_pairs("head", "lm_head", {"decoder": "decoder"})
    return pairs


def from_hf_state_dict(sd: Mapping[str, Tensor], cfg: ReformerConfig, *, head: bool = True) -> dict[str, Tensor]:
    """HF ``ReformerModelWithLMHead`` / ``ReformerForMaskedLM`` state dict -> our ``LanguageModel`` state dict.
    ``head=False``: only the backbone (``reformer.`` keys of any ``Reformer*`` checkpoint)."""
    if not head:
        sd = {k: v for k, v in sd.items() if k.startswith("reformer.")}
    pairs = _key_pairs(cfg, head=head)
    missing = [theirs for _, theirs in pairs if theirs not in sd]
    unknown = [k for k in sd if k not in {theirs for _, theirs in pairs} | {"lm_head.bias"}]
    raise_on_mismatch(missing, unknown, "HF Reformer state dict")
    return {ours: sd[theirs] for ours, theirs in pairs}


def to_hf_state_dict(our_sd: Mapping[str, Tensor], cfg: ReformerConfig) -> dict[str, Tensor]:
    """Our ``LanguageModel`` state dict -> HF state dict (``lm_head.bias`` = ``lm_head.decoder.bias``)."""
    pairs = _key_pairs(cfg)
    missing = [ours for ours, _ in pairs if ours not in our_sd]
    unknown = set(our_sd) - {ours for ours, _ in pairs}
    raise_on_mismatch(missing, unknown, "our Reformer state dict")
    hf = {theirs: our_sd[ours] for ours, theirs in pairs}
    hf["lm_head.bias"] = hf["lm_head.decoder.bias"]
    return hf


def to_hf_config(cfg: ReformerConfig) -> dict[str, Any]:
    """Plain dict of HF ``ReformerConfig`` fields (``model_type`` and ``architectures`` included)."""
    fields = {name: getattr(cfg, name) for name in _HF_FIELDS}
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    architecture = "ReformerModelWithLMHead" if cfg.is_decoder else "ReformerForMaskedLM"
    return {"model_type": "reformer", "architectures": [architecture], **fields, "tie_word_embeddings": False}


def from_hf_config(hf: Mapping[str, Any], **overrides: Any) -> ReformerConfig:
    """``ReformerConfig`` from an HF Reformer ``config.json`` dict."""
    if hf.get("model_type") != "reformer":
        raise ValueError(f"expected model_type 'reformer', got {hf.get('model_type')!r}")
    if hf.get("chunk_size_lm_head", 0):
        raise ValueError("chunk_size_lm_head is not supported (it does not change the logits: set it to 0)")
    fields = {name: hf[name] for name in _HF_FIELDS if name in hf}
    return ReformerConfig(**(fields | overrides))
