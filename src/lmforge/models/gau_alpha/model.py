"""GAU-alpha: a post-norm encoder of Gated Attention Units only (no FFN), assembled from ``lmforge.nn`` blocks.

References: ZhuiyiTechnology/GAU-alpha ``models.py`` (``GAU_alpha(RoFormerV2)``) and bert4keras ``RoFormerV2`` /
``GatedAttentionUnit``; PyTorch port JunnYu/GAU-alpha-pytorch (``layer.py``, ``modeling_gau_alpha.py``), whose
parameter names ``convert.py`` reads. Equations per layer (architectures.md section 1.1):
``u, v, z = silu(x W_i)``, ``q, k = RoPE(z * gamma_q), RoPE(z * gamma_k)``,
``A = softmax_plus(q k^T / sqrt(s))`` over the valid keys, ``x = RMSNorm(x + dropout((u * A v) W_o))``.

Deviations (also in ``docs/architectures/gau-alpha.md``):
- Embedding dropout comes *before* the parameter-free norm (bert4keras); the port does norm then dropout (only
  training differs).
- RoPE is computed for any length (the port's 512-row sin/cos buffers fail beyond 512).
- Padded query rows are computed like real ones; only keys are masked (the port fills masked scores with -1e4,
  we with the dtype minimum, which is the same after softmax).
- ``build_clm`` makes every GAU causal; ``n`` in softmax_plus then counts the keys each query sees.

Legend: B batch, T tokens, D hidden, V vocabulary.
"""

from __future__ import annotations

from torch import Tensor, nn

from lmforge.heads.lm import LanguageModel, LMDecoder, MaskedLMHead
from lmforge.models.common import EncoderStack, build_language_model
from lmforge.models.gau_alpha.config import GAUAlphaConfig
from lmforge.nn.embeddings import TokenEmbeddings
from lmforge.nn.gau import GatedAttentionUnit, ScaleOffset, SoftmaxPlus, SquaredReLU
from lmforge.nn.init import keras_fan, roformerv2_std, trunc_normal_, zeros_
from lmforge.nn.norms import RMSNorm
from lmforge.nn.positions import RotaryEmbedding

__all__ = ["GAUAlphaLayer", "GAUAlphaModel", "build_clm", "build_mlm", "init_weights"]


def _normalizer(cfg: GAUAlphaConfig) -> nn.Module:
    if cfg.normalization == "softmax_plus":
        return SoftmaxPlus(
            cfg.attention_key_size,
            scale=cfg.attention_scale,
            log_base_length=cfg.softmax_plus_log_base,
            min_length=cfg.softmax_plus_min_length,
        )
    return SquaredReLU(cfg.attention_key_size, scale=cfg.attention_scale)


class GAUAlphaLayer(nn.Module):
    """``x = RMSNorm(x + dropout(GAU(x)))`` with a parameter-free RMS norm (post-norm, no FFN)."""

    def __init__(self, cfg: GAUAlphaConfig, *, rope: RotaryEmbedding):
        super().__init__()
        self.gau = GatedAttentionUnit(
            cfg.hidden_size,
            expansion=cfg.intermediate_size,
            key_size=cfg.attention_key_size,
            normalizer=_normalizer(cfg),
            bias=cfg.use_bias,
            rope=rope,
            causal=cfg.is_decoder,
            attention_dropout=cfg.attention_probs_dropout_prob,
        )
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, elementwise_affine=False)

    def forward(self, x_BTD: Tensor, keep_BT: Tensor | None) -> Tensor:
        return self.norm(x_BTD + self.dropout(self.gau(x_BTD, keep_BT)))


class GAUAlphaModel(EncoderStack):
    """GAU-alpha backbone: ``forward(input_ids, attention_mask, token_type_ids) -> hidden (B, T, D)``."""

    def __init__(self, config: GAUAlphaConfig):
        super().__init__()
        self.config = config
        self.embeddings = TokenEmbeddings(
            config.vocab_size,
            config.hidden_size,
            type_vocab_size=config.type_vocab_size,
            pad_token_id=config.pad_token_id,
            norm=RMSNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False),
            dropout=config.hidden_dropout_prob,
            order="dropout_norm",  # RoFormerV2: no absolute positions, dropout then norm
        )
        # Interleaved pairs over all s dims (bert4keras); JunnYu's cat(evens, odds) output is the same q k^T.
        rope = RotaryEmbedding(config.attention_key_size, pairing="interleaved", base=config.rope_theta)
        self.layers = nn.ModuleList(GAUAlphaLayer(config, rope=rope) for _ in range(config.num_hidden_layers))
        init_weights(self, config)


def init_weights(model: nn.Module, cfg: GAUAlphaConfig) -> None:
    """RoFormerV2 init with GAU-alpha's ``order=3`` (bert4keras ``RoFormerV2.initializer``; ``lmforge.nn.init``).

    Every kernel and embedding table: truncated normal (+-2 std), std = 1.13684723 / sqrt(fan) * L^(-1/3) with
    bert4keras' fan rule (``keras_fan``: the input width, or the output width for tables > 10000 rows). Biases and
    offsets 0, q/k scales 1 (bert4keras ``ScaleOffset``). The padding row is *not* zeroed (bert4keras has none).
    """
    layers = cfg.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.Linear):
            fan = keras_fan((module.in_features, module.out_features))  # Keras kernel order (in, out)
            trunc_normal_(module.weight, std=roformerv2_std(fan, num_layers=layers, order=3))
            if module.bias is not None:
                zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            trunc_normal_(module.weight, std=roformerv2_std(keras_fan(module.weight.shape), num_layers=layers, order=3))
        elif isinstance(module, ScaleOffset):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                zeros_(module.bias)
        elif isinstance(module, LMDecoder) and module.weight is not None:
            trunc_normal_(module.weight, std=roformerv2_std(keras_fan(module.weight.shape), num_layers=layers, order=3))


def _head(cfg: GAUAlphaConfig, backbone: GAUAlphaModel) -> MaskedLMHead:
    # bert4keras with_mlm='linear': dropout, tied embedding transpose, no bias, no transform.
    return MaskedLMHead(
        cfg.hidden_size,
        cfg.vocab_size,
        transform=False,
        bias=False,
        tied_embedding=backbone.get_input_embeddings(),
        dropout=cfg.hidden_dropout_prob,
    )


def build_mlm(cfg: GAUAlphaConfig) -> LanguageModel:
    """GAU-alpha masked LM: backbone + tied linear head without bias."""
    return build_language_model(cfg, GAUAlphaModel, _head, "mlm")


def build_clm(cfg: GAUAlphaConfig) -> LanguageModel:
    """Causal LM: every GAU causal (``is_decoder`` forced on), same tied head."""
    return build_language_model(cfg, GAUAlphaModel, _head, "clm")
