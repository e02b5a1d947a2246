"""BERT / RoFormer baseline: post-LN Transformer encoder (or causal decoder) assembled from ``lmforge.nn`` blocks.

References: Devlin et al. 2019 (google-research/bert ``modeling.py``); HF ``modeling_bert`` (``BertModel``,
``BertForMaskedLM``, ``BertLMHeadModel``) and ``modeling_roformer`` (Su et al. 2021) for random-weight parity
(``tests/models/test_bert.py``). Layer: ``x = LN(x + drop(attn(x)))``, ``x = LN(x + drop(ffn(x)))``.

Deviations (also in ``docs/architectures/bert.md``):
- No pooler and no NSP head (pretraining is MLM only); HF checkpoints' pooler weights are dropped on import.
- RoFormer RoPE is computed for any length (HF precomputes ``max_position_embeddings`` positions).
- ``build_clm`` puts the BERT prediction head (transform + LN + tied decoder + bias) on a causal encoder, exactly
  as HF ``BertLMHeadModel``/``RoFormerForCausalLM``, so MLM and CLM checkpoints share weights and convert to HF.
- Padding query rows are computed like real ones (HF does the same); only keys are masked.

Legend: B batch, T tokens, D hidden, F intermediate, V vocabulary.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from lmforge.heads.lm import LanguageModel, LMDecoder, MaskedLMHead
from lmforge.models.bert.config import BertConfig
from lmforge.nn.attention import MultiHeadAttention, keep_from_padding_mask
from lmforge.nn.embeddings import TokenEmbeddings
from lmforge.nn.ffn import MLP
from lmforge.nn.init import normal_, zeros_
from lmforge.nn.norms import LayerNorm
from lmforge.nn.positions import LearnedPositions, RotaryEmbedding

__all__ = ["BertLayer", "BertModel", "build_clm", "build_mlm", "init_weights"]


class BertLayer(nn.Module):
    """One post-LN block: self-attention and FFN, each followed by dropout, residual add and LayerNorm."""

    def __init__(self, cfg: BertConfig, *, rope: RotaryEmbedding | None):
        super().__init__()
        self.attention = MultiHeadAttention(
            cfg.hidden_size,
            num_heads=cfg.num_attention_heads,
            bias=True,
            rope=rope,
            kernel=cfg.attn_implementation,
            causal=cfg.is_decoder,
            dropout=cfg.attention_probs_dropout_prob,
        )
        self.attention_norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = MLP(cfg.hidden_size, cfg.intermediate_size, activation=cfg.hidden_act, bias=True)
        self.ffn_norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x_BTD: Tensor, keep: Tensor | None) -> Tensor:
        attended_BTD, _ = self.attention(x_BTD, keep)
        x_BTD = self.attention_norm(x_BTD + self.dropout(attended_BTD))
        return self.ffn_norm(x_BTD + self.dropout(self.ffn(x_BTD)))


class BertModel(nn.Module):
    """BERT/RoFormer backbone: ``forward(input_ids, attention_mask, token_type_ids) -> hidden (B, T, D)``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        absolute = config.position_embedding_type == "absolute"
        self.embeddings = TokenEmbeddings(
            config.vocab_size,
            config.hidden_size,
            type_vocab_size=config.type_vocab_size,
            max_positions=config.max_position_embeddings if absolute else 0,
            pad_token_id=config.pad_token_id,
            norm=LayerNorm(config.hidden_size, eps=config.layer_norm_eps),
            dropout=config.hidden_dropout_prob,
        )
        # RoFormer: interleaved pairs (bert4keras / HF modeling_roformer), base 10000, over the whole head dim.
        rope = None if absolute else RotaryEmbedding(config.head_dim, pairing="interleaved", base=10_000.0)
        self.layers = nn.ModuleList(BertLayer(config, rope=rope) for _ in range(config.num_hidden_layers))
        init_weights(self, config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        keep_B11S = None if attention_mask is None else keep_from_padding_mask(attention_mask)
        x_BTD = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x_BTD = layer(x_BTD, keep_B11S)
        return x_BTD


def init_weights(model: nn.Module, cfg: BertConfig) -> None:
    """BERT init for every module under ``model`` (backbone or head).

    Weights and embeddings N(0, initializer_range) (HF ``BertPreTrainedModel._init_weights``; google-research/bert
    uses a truncated normal with the same std), biases 0, LayerNorm 1/0, the padding row of the word embeddings 0
    (HF), untied decoder weights N(0, initializer_range) and the output bias 0.
    """
    std = cfg.initializer_range
    for module in model.modules():
        if isinstance(module, nn.Linear):
            normal_(module.weight, std=std)
            if module.bias is not None:
                zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            normal_(module.weight, std=std)
            if module.padding_idx is not None:
                zeros_(module.weight[module.padding_idx])
        elif isinstance(module, LearnedPositions):
            normal_(module.weight, std=std)
        elif isinstance(module, LayerNorm):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if module.bias is not None:
                zeros_(module.bias)
        elif isinstance(module, LMDecoder):
            if module.weight is not None:
                normal_(module.weight, std=std)
            if module.bias is not None:
                zeros_(module.bias)


def _prediction_head(cfg: BertConfig, backbone: BertModel) -> MaskedLMHead:
    head = MaskedLMHead(
        cfg.hidden_size,
        cfg.vocab_size,
        transform=True,
        activation=cfg.hidden_act,
        norm="layernorm",
        norm_eps=cfg.layer_norm_eps,
        bias=True,
        tied_embedding=backbone.get_input_embeddings() if cfg.tie_word_embeddings else None,
    )
    init_weights(head, cfg)
    return head


def build_mlm(cfg: BertConfig) -> LanguageModel:
    """BERT/RoFormer masked LM: backbone + BERT prediction head (dense, act, LN, tied decoder, bias)."""
    if cfg.is_decoder:
        raise ValueError("build_mlm needs a bidirectional encoder (is_decoder=False); use build_clm for causal LM")
    backbone = BertModel(cfg)
    return LanguageModel(backbone, _prediction_head(cfg, backbone), objective="mlm")


def build_clm(cfg: BertConfig) -> LanguageModel:
    """Causal LM on the same architecture (``is_decoder`` forced on; head as HF ``BertLMHeadModel``)."""
    cfg = dataclasses.replace(cfg, is_decoder=True)
    backbone = BertModel(cfg)
    return LanguageModel(backbone, _prediction_head(cfg, backbone), objective="clm")
