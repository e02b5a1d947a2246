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

from functools import partial

from torch import Tensor, nn

from lmforge.heads.lm import LanguageModel, LMDecoder, MaskedLMHead
from lmforge.models.bert.config import BertConfig
from lmforge.models.common import EncoderStack, bert_prediction_head, build_language_model
from lmforge.nn.attention import MultiHeadAttention, keep_from_padding_mask
from lmforge.nn.embeddings import TokenEmbeddings
from lmforge.nn.ffn import MLP
from lmforge.nn.init import apply_init_, init_dense_, init_embedding_, init_norm_, normal_
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


class BertModel(EncoderStack):
    """BERT/RoFormer backbone: ``forward(input_ids, attention_mask, token_type_ids) -> hidden (B, T, D)``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        rotary = config.position_embedding_type == "rotary"  # RoFormer: no learned position table
        self.embeddings = TokenEmbeddings(
            config.vocab_size,
            config.hidden_size,
            type_vocab_size=config.type_vocab_size,
            max_positions=0 if rotary else config.max_position_embeddings,
            pad_token_id=config.pad_token_id,
            norm=LayerNorm(config.hidden_size, eps=config.layer_norm_eps),
            dropout=config.hidden_dropout_prob,
        )
        # RoFormer: interleaved pairs (bert4keras / HF modeling_roformer), base 10000, over the whole head dim.
        rope = RotaryEmbedding(config.head_dim, pairing="interleaved", base=10_000.0) if rotary else None
        self.layers = nn.ModuleList(BertLayer(config, rope=rope) for _ in range(config.num_hidden_layers))
        init_weights(self, config)

    def keep_mask(self, attention_mask: Tensor) -> Tensor:
        return keep_from_padding_mask(attention_mask)  # (B, 1, 1, S) for the attention kernels


def init_weights(model: nn.Module, cfg: BertConfig) -> None:
    """BERT init for every module under ``model`` (backbone or head).

    Weights and embeddings N(0, initializer_range) (HF ``BertPreTrainedModel._init_weights``; google-research/bert
    uses a truncated normal with the same std), biases 0, LayerNorm 1/0, the padding row of the word embeddings 0
    (HF), untied decoder weights N(0, initializer_range) and the output bias 0.
    """
    std = cfg.initializer_range
    apply_init_(
        model,
        [
            ((nn.Linear, LMDecoder), partial(init_dense_, std=std)),
            (nn.Embedding, partial(init_embedding_, std=std)),
            (LearnedPositions, lambda module: normal_(module.weight, std=std)),
            (LayerNorm, init_norm_),
        ],
    )


def _prediction_head(cfg: BertConfig, backbone: BertModel) -> MaskedLMHead:
    head = bert_prediction_head(cfg, backbone, tied=cfg.tie_word_embeddings)
    init_weights(head, cfg)
    return head


def build_mlm(cfg: BertConfig) -> LanguageModel:
    """BERT/RoFormer masked LM: backbone + BERT prediction head (dense, act, LN, tied decoder, bias)."""
    return build_language_model(cfg, BertModel, _prediction_head, "mlm")


def build_clm(cfg: BertConfig) -> LanguageModel:
    """Causal LM on the same architecture (``is_decoder`` forced on; head as HF ``BertLMHeadModel``)."""
    return build_language_model(cfg, BertModel, _prediction_head, "clm")
