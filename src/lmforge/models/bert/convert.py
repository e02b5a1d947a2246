"""State-dict and config conversion between our BERT/RoFormer LM and HF ``BertForMaskedLM`` /
``BertLMHeadModel`` (absolute) or ``RoFormerForMaskedLM`` / ``RoFormerForCausalLM`` (rotary).

No ``transformers`` import here (``lmforge/hf/`` is the only importer): HF config fields are plain dicts and the
key map is written out below. Parity is tested in ``tests/models/test_bert.py`` with random weights, both ways.

Mapping notes:
- HF keys carry the ``bert.``/``roformer.`` prefix; ours carry ``backbone.``/``head.`` (``LanguageModel``).
- HF's tied ``cls.predictions.decoder.weight`` (= word embeddings) and ``cls.predictions.decoder.bias``
  (= ``cls.predictions.bias``) are optional on import but must then equal their originals; both are written on
  export so ``load_state_dict(strict=True)`` works.
- RoFormer's ``roformer.encoder.embed_positions.weight`` is a fixed sinusoid table (HF builds it, we compute RoPE
  per call). On import it is checked against the formula (a table clobbered by weight init, HF #29807, raises);
  on export it is regenerated in float64 as HF's ``create_weight`` does.
- Real hub checkpoints also carry a pooler, an NSP head and sometimes a ``position_ids`` buffer; these are not part
  of our model and are dropped only when listed in ``ignore_prefixes`` (``HF_UNUSED_PREFIXES``, the default).

Deviations: ``type_vocab_size=0`` has no HF equivalent and raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from lmforge.models.bert.config import BertConfig
from lmforge.models.common import param_pairs, raise_on_mismatch

__all__ = ["HF_UNUSED_PREFIXES", "from_hf_config", "from_hf_state_dict", "to_hf_config", "to_hf_state_dict"]

# Weights in HF checkpoints that our model does not have: pooler, NSP head, the old position_ids buffer.
HF_UNUSED_PREFIXES: tuple[str, ...] = (
    "bert.pooler.",
    "roformer.pooler.",
    "cls.seq_relationship.",
    "bert.embeddings.position_ids",
)
# Our module -> HF BERT/RoFormer module inside one encoder layer.
_LAYER_NAMES = {
    "attention.q_proj": "attention.self.query",
    "attention.k_proj": "attention.self.key",
    "attention.v_proj": "attention.self.value",
    "attention.o_proj": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "ffn.up": "intermediate.dense",
    "ffn.down": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
_ACT_TO_HF = {"gelu_tanh": "gelu_pytorch_tanh"}
_ACT_FROM_HF = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}


def _prefix(cfg: BertConfig) -> str:
    return "roformer" if cfg.position_embedding_type == "rotary" else "bert"


def _key_pairs(cfg: BertConfig, *, head: bool = True) -> list[tuple[str, str]]:
    """(our key, HF key) for every tensor both models store once (``head=False``: the backbone's only)."""
    hf, pairs = _prefix(cfg), []
    pairs.append(("backbone.embeddings.word_embeddings.weight", f"{hf}.embeddings.word_embeddings.weight"))
    if cfg.type_vocab_size > 0:
        pairs.append(
            ("backbone.embeddings.token_type_embeddings.weight", f"{hf}.embeddings.token_type_embeddings.weight")
        )
    if cfg.position_embedding_type == "absolute":
        pairs.append(("backbone.embeddings.position_embeddings.weight", f"{hf}.embeddings.position_embeddings.weight"))
    for p in ("weight", "bias"):
        pairs.append((f"backbone.embeddings.norm.{p}", f"{hf}.embeddings.LayerNorm.{p}"))
    for i in range(cfg.num_hidden_layers):
        pairs += param_pairs(f"backbone.layers.{i}", f"{hf}.encoder.layer.{i}", _LAYER_NAMES)
    if not head:
        return pairs
    pairs += param_pairs("head", "cls.predictions.transform", {"dense": "dense", "norm": "LayerNorm"})
    pairs.append(("head.decoder.bias", "cls.predictions.bias"))
    if not cfg.tie_word_embeddings:
        pairs.append(("head.decoder.weight", "cls.predictions.decoder.weight"))
    return pairs


def _roformer_table(cfg: BertConfig) -> Tensor:
    """HF ``RoFormerSinusoidalPositionalEmbedding.create_weight``: ``cat(sin(p w), cos(p w))``, float64 -> fp32."""
    dim = cfg.head_dim
    inv_freq = 10_000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = torch.outer(torch.arange(cfg.max_position_embeddings, dtype=torch.float64), inv_freq)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


def _check_convertible(cfg: BertConfig) -> None:
    if cfg.type_vocab_size < 1:
        raise ValueError("HF BERT/RoFormer need type_vocab_size >= 1; got type_vocab_size=0")


def from_hf_state_dict(
    sd: Mapping[str, Tensor],
    cfg: BertConfig,
    *,
    ignore_prefixes: Iterable[str] = HF_UNUSED_PREFIXES,
    head: bool = True,
) -> dict[str, Tensor]:
    """HF ``{Bert,RoFormer}{ForMaskedLM,LMHeadModel}`` state dict -> our ``LanguageModel`` state dict.

    ``head=False``: only the backbone (``bert.``/``roformer.`` keys of any ``*Model``/``*For*`` checkpoint; every
    other key is ignored), returned under our ``backbone.`` keys."""
    _check_convertible(cfg)
    if not head:
        sd = {k: v for k, v in sd.items() if k.startswith(f"{_prefix(cfg)}.")}
    ignore_prefixes = tuple(ignore_prefixes)
    pairs = _key_pairs(cfg, head=head)
    ours = {our: sd[theirs] for our, theirs in pairs if theirs in sd}
    used = {theirs for _, theirs in pairs}
    word_key = f"{_prefix(cfg)}.embeddings.word_embeddings.weight"
    duplicates = {"cls.predictions.decoder.bias": "cls.predictions.bias"} if head else {}
    if cfg.tie_word_embeddings and head:
        duplicates["cls.predictions.decoder.weight"] = word_key
    for copy, original in duplicates.items():
        if copy in sd and original in sd and not torch.equal(sd[copy], sd[original]):
            raise ValueError(f"{copy} differs from {original}, but our model stores them once (tied)")
    used |= set(duplicates)
    table_key = "roformer.encoder.embed_positions.weight"
    if cfg.position_embedding_type == "rotary" and table_key in sd:
        table = sd[table_key].float()
        expected = _roformer_table(cfg)
        if table.shape != expected.shape or not torch.allclose(table, expected, atol=1e-5, rtol=0):
            raise ValueError(
                f"{table_key} is not the RoFormer sinusoid table for head_dim={cfg.head_dim}, "
                f"max_position_embeddings={cfg.max_position_embeddings} (HF #29807?); remove the key to load anyway"
            )
        used.add(table_key)
    missing = [theirs for _, theirs in pairs if theirs not in sd]
    unknown = [k for k in sd if k not in used and not k.startswith(ignore_prefixes)]
    raise_on_mismatch(missing, unknown, "HF state dict")
    return ours


def to_hf_state_dict(our_sd: Mapping[str, Tensor], cfg: BertConfig) -> dict[str, Tensor]:
    """Our ``LanguageModel`` state dict -> HF ``{Bert,RoFormer}{ForMaskedLM,LMHeadModel}`` state dict.

    Tied entries (decoder weight/bias) reference the same tensors as their originals; HF's ``save_pretrained``
    deduplicates them, plain safetensors ``save_file`` would not.
    """
    _check_convertible(cfg)
    pairs = _key_pairs(cfg)
    missing = [our for our, _ in pairs if our not in our_sd]
    unknown = set(our_sd) - {our for our, _ in pairs}
    raise_on_mismatch(missing, unknown, "our state dict")
    hf = {theirs: our_sd[our] for our, theirs in pairs}
    hf["cls.predictions.decoder.bias"] = hf["cls.predictions.bias"]
    if cfg.tie_word_embeddings:
        hf["cls.predictions.decoder.weight"] = hf[f"{_prefix(cfg)}.embeddings.word_embeddings.weight"]
    if cfg.position_embedding_type == "rotary":
        hf["roformer.encoder.embed_positions.weight"] = _roformer_table(cfg)
    return hf


def to_hf_config(cfg: BertConfig) -> dict[str, Any]:
    """Plain dict of HF config fields (``BertConfig`` or ``RoFormerConfig``) for ``cfg``."""
    _check_convertible(cfg)
    rotary = cfg.position_embedding_type == "rotary"
    head = ("RoFormerForCausalLM" if rotary else "BertLMHeadModel") if cfg.is_decoder else None
    head = head or ("RoFormerForMaskedLM" if rotary else "BertForMaskedLM")
    hf: dict[str, Any] = {
        "model_type": "roformer" if rotary else "bert",
        "architectures": [head],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": _ACT_TO_HF.get(cfg.hidden_act, cfg.hidden_act),
        "hidden_dropout_prob": cfg.hidden_dropout_prob,
        "attention_probs_dropout_prob": cfg.attention_probs_dropout_prob,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": cfg.pad_token_id,
        "is_decoder": cfg.is_decoder,
        "tie_word_embeddings": cfg.tie_word_embeddings,
    }
    if rotary:
        hf |= {"embedding_size": cfg.hidden_size, "rotary_value": False}
    return hf


def from_hf_config(hf: Mapping[str, Any], **overrides: Any) -> BertConfig:
    """``BertConfig`` from an HF ``config.json`` dict of a BERT or RoFormer model; unsupported options raise."""
    model_type = hf.get("model_type")
    if model_type not in ("bert", "roformer"):
        raise ValueError(f"expected model_type 'bert' or 'roformer', got {model_type!r}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"unsupported position_embedding_type {hf['position_embedding_type']!r}")
    if hf.get("add_cross_attention") or hf.get("rotary_value"):
        raise ValueError("cross-attention and rotary_value=True are not supported")
    if model_type == "roformer" and hf.get("embedding_size") not in (None, hf.get("hidden_size", 768)):
        raise ValueError(f"embedding_size {hf['embedding_size']} != hidden_size is not supported")
    names = (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "initializer_range",
        "pad_token_id",
        "is_decoder",
        "tie_word_embeddings",
    )
    fields: dict[str, Any] = {name: hf[name] for name in names if name in hf}
    if "hidden_act" in hf:
        fields["hidden_act"] = _ACT_FROM_HF.get(hf["hidden_act"], hf["hidden_act"])
    fields["position_embedding_type"] = "rotary" if model_type == "roformer" else "absolute"
    return BertConfig(**(fields | overrides))
