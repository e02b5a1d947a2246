"""FLASH-Quad and FLASH (Hua et al. 2022, "Transformer Quality in Linear Time", arXiv 2202.10447): pre-norm stacks
of gated attention units, assembled from ``lmforge.nn`` blocks. One config, two backbones.

- ``FLASHQuadModel``: every layer ``x = x + GAU(norm(x))`` with the quadratic kernel ``relu(q k^T / n + b)^2``
  (JunnYu/FLASHQuad_pytorch ``flash/gau.py`` + ``flash/flash.py``; ``convert.py`` reads its names).
- ``FLASHModel``: every layer ``x = x + MixedChunkGAU(norm(x))`` (quadratic inside chunks of G, linear across
  chunks), then a final LayerNorm (lucidrains/FLASH-pytorch ``FLASHTransformer``: layers, then
  ``to_logits = LayerNorm + Linear``; JunnYu ``flash/flash_lucidrains.py`` puts that LayerNorm in the MLM head).

Inputs: token (+ segment) embeddings + scaled sinusoid (``ScaledSinusoid``); FLASH-Quad then applies the norm and
dropout to the embeddings (JunnYu), FLASH does not (lucidrains). Heads: FLASH-Quad uses the BERT prediction head
with ScaleNorm (JunnYu: ``BertOnlyMLMHead`` with its LayerNorm swapped), FLASH a tied decoder with bias.

Deviations (``docs/architectures/flash.md``): n of the kernel counts valid keys or is a fixed length (never the
padded batch length); only keys are masked (JunnYu also zeroes padded query rows, which never reach a loss);
FLASH's linear part is divided by G in both directions (lucidrains: by the batch length when bidirectional);
the Toeplitz bias clamps offsets beyond ``max_position_embeddings``.

Legend: B batch, T tokens, D hidden, V vocabulary.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from lmforge.heads.lm import LanguageModel, LMDecoder, MaskedLMHead
from lmforge.models.common import EncoderStack, bert_prediction_head, build_language_model
from lmforge.models.flash.config import FLASHConfig
from lmforge.nn.embeddings import TokenEmbeddings
from lmforge.nn.flash import MixedChunkGAU
from lmforge.nn.gau import GatedAttentionUnit, ReLUSquaredKernel, ScaleOffset, ToeplitzRelativeBias
from lmforge.nn.init import apply_init_, init_dense_, init_embedding_, normal_
from lmforge.nn.norms import LayerNorm, ScaleNorm
from lmforge.nn.positions import RotaryEmbedding, ScaledSinusoid, T5RelativePositionBias

__all__ = [
    "FLASHEmbeddings",
    "FLASHLayer",
    "FLASHModel",
    "FLASHQuadModel",
    "build_flash_clm",
    "build_flash_mlm",
    "build_quad_clm",
    "build_quad_mlm",
    "init_weights",
]


def _norm(cfg: FLASHConfig) -> nn.Module:
    if cfg.norm_type == "scalenorm":
        return ScaleNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
    return LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


def _relative_bias(cfg: FLASHConfig) -> nn.Module | None:
    if cfg.relative_position == "toeplitz":
        return ToeplitzRelativeBias(cfg.max_position_embeddings)
    if cfg.relative_position == "t5":  # lucidrains: one head, 32 buckets, max distance 128, times sqrt(s)
        return T5RelativePositionBias(1, bidirectional=not cfg.is_decoder, scale=cfg.attention_key_size**0.5)
    return None


def _rope(cfg: FLASHConfig) -> RotaryEmbedding:
    return RotaryEmbedding(cfg.rotary_size, pairing=cfg.rope_pairing, base=cfg.rope_theta)


class FLASHEmbeddings(nn.Module):
    """``dropout(norm(word + segment + scale * sinusoid))``; ``use_norm=False`` skips the norm (lucidrains)."""

    def __init__(self, cfg: FLASHConfig, *, use_norm: bool):
        super().__init__()
        self.tokens = TokenEmbeddings(
            cfg.vocab_size, cfg.hidden_size, type_vocab_size=cfg.type_vocab_size, pad_token_id=cfg.pad_token_id
        )
        init_scale = cfg.hidden_size**-0.5 if cfg.position_scale_init is None else cfg.position_scale_init
        self.positions = ScaledSinusoid(cfg.hidden_size, init_scale=init_scale)
        self.norm = _norm(cfg) if use_norm else None
        self.dropout = nn.Dropout(cfg.dropout)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.tokens.word_embeddings

    def forward(self, input_ids_BT: Tensor, token_type_ids_BT: Tensor | None) -> Tensor:
        x_BTD = self.tokens(input_ids_BT, token_type_ids_BT) + self.positions(input_ids_BT.shape[1])
        return self.dropout(x_BTD if self.norm is None else self.norm(x_BTD))


def _gau(cfg: FLASHConfig, *, mixed_chunk: bool) -> nn.Module:
    common = dict(
        expansion=cfg.intermediate_size,
        key_size=cfg.attention_key_size,
        bias=cfg.use_bias,
        rope=_rope(cfg),
        relative_bias=_relative_bias(cfg),
        causal=cfg.is_decoder,
        attention_dropout=cfg.attention_dropout,
    )
    if not mixed_chunk:  # FLASH-Quad: the kernel relu(q k^T / n + b)^2 over the whole sequence
        normalizer = ReLUSquaredKernel(cfg.attention_key_size, length=cfg.quad_length)
        return GatedAttentionUnit(cfg.hidden_size, normalizer=normalizer, **common)
    return MixedChunkGAU(
        cfg.hidden_size,
        group_size=cfg.group_size,
        shift_tokens=cfg.shift_tokens,
        quad_length=cfg.quad_length,
        linear_normalizer=cfg.linear_normalizer,
        reduce_groups=cfg.reduce_group_non_causal_attn,
        **common,
    )


class FLASHLayer(nn.Module):
    """``x = x + dropout(GAU(norm(x)))``: the quadratic GAU (FLASH-Quad) or ``MixedChunkGAU`` (FLASH)."""

    def __init__(self, cfg: FLASHConfig, *, mixed_chunk: bool):
        super().__init__()
        self.norm = _norm(cfg)
        self.gau = _gau(cfg, mixed_chunk=mixed_chunk)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x_BTD: Tensor, keep_BT: Tensor | None) -> Tensor:
        return x_BTD + self.dropout(self.gau(self.norm(x_BTD), keep_BT))


class FLASHQuadModel(EncoderStack):
    """FLASH-Quad backbone: ``forward(input_ids, attention_mask, token_type_ids) -> hidden (B, T, D)``."""

    mixed_chunk = False

    def __init__(self, config: FLASHConfig):
        super().__init__()
        self.config = config
        self.embeddings = FLASHEmbeddings(config, use_norm=not self.mixed_chunk)
        self.layers = nn.ModuleList(
            FLASHLayer(config, mixed_chunk=self.mixed_chunk) for _ in range(config.num_hidden_layers)
        )
        if self.mixed_chunk:
            self.final_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        init_weights(self, config)


class FLASHModel(FLASHQuadModel):
    """FLASH backbone: mixed-chunk layers, embeddings without a norm, a final LayerNorm (lucidrains)."""

    mixed_chunk = True


def init_weights(model: nn.Module, cfg: FLASHConfig) -> None:
    """Init of every module under ``model`` (backbone or head), as JunnYu's ``_init_weights`` + the paper.

    Linear weights and embedding tables N(0, initializer_range) with zero biases and a zero padding row (JunnYu,
    HF style); scale/offset gammas and the Toeplitz ``w`` N(0, 0.02), offsets 0 (paper pseudo-code 1
    ``scale_offset``/``rel_pos_bias``; lucidrains ``OffsetScale``); norms and the sinusoid scalar at their block
    defaults (ScaleNorm sqrt(d), LayerNorm 1/0, scale from ``position_scale_init``).
    """
    std = cfg.initializer_range
    apply_init_(
        model,
        [
            ((nn.Linear, LMDecoder), partial(init_dense_, std=std)),
            (nn.Embedding, partial(init_embedding_, std=std)),
            (ScaleOffset, partial(init_dense_, std=0.02)),
            (ToeplitzRelativeBias, lambda module: normal_(module.weight, std=0.02)),
        ],
    )


def _quad_head(cfg: FLASHConfig, backbone: FLASHQuadModel) -> MaskedLMHead:
    head = bert_prediction_head(cfg, backbone, norm=cfg.norm_type)  # JunnYu: BERT's head, ScaleNorm by default
    init_weights(head, cfg)
    return head


def _flash_head(cfg: FLASHConfig, backbone: FLASHModel) -> MaskedLMHead:
    head = MaskedLMHead(
        cfg.hidden_size, cfg.vocab_size, transform=False, bias=True, tied_embedding=backbone.get_input_embeddings()
    )
    init_weights(head, cfg)
    return head


def build_quad_mlm(cfg: FLASHConfig) -> LanguageModel:
    """FLASH-Quad masked LM: backbone + BERT head with ScaleNorm, tied decoder with bias."""
    return build_language_model(cfg, FLASHQuadModel, _quad_head, "mlm")


def build_quad_clm(cfg: FLASHConfig) -> LanguageModel:
    """FLASH-Quad causal LM (``is_decoder`` forced on)."""
    return build_language_model(cfg, FLASHQuadModel, _quad_head, "clm")


def build_flash_mlm(cfg: FLASHConfig) -> LanguageModel:
    """FLASH masked LM: mixed-chunk backbone + tied decoder with bias."""
    return build_language_model(cfg, FLASHModel, _flash_head, "mlm")


def build_flash_clm(cfg: FLASHConfig) -> LanguageModel:
    """FLASH causal LM: exclusive prefix over chunks (``is_decoder`` forced on)."""
    return build_language_model(cfg, FLASHModel, _flash_head, "clm")
