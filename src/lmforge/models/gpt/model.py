"""GPT: pre-LN causal Transformer decoder assembled from ``lmforge.nn`` blocks; exact GPT-2 by default, with
switches for the modern recipe (RoPE, RMSNorm, SwiGLU, no bias, untied head, grouped-query attention, MoE FFN).

References: Radford et al. 2019 (GPT-2) and HF ``modeling_gpt2`` (``GPT2Model``, ``GPT2LMHeadModel``) for
random-weight parity (``tests/models/test_gpt.py``); karpathy/nanoGPT ``model.py`` (pre-LN blocks, weight tying,
``c_proj`` init scaled by 1/sqrt(2L)); LLaMA (Touvron et al. 2023) for the modern switches, checked against HF
``LlamaForCausalLM`` in the tests. Block: ``x = x + drop(attn(norm(x)))``, ``x = x + drop(ffn(norm(x)))``, then a
final norm; the head is ``lmforge.heads.lm.CausalLMHead`` (tied to the word embeddings unless untied).

Attention is ``nn.attention.MultiHeadAttention`` with fused ``qkv`` (rows [q | k | v], as HF's ``c_attn``),
``causal=True`` and lower-right alignment: SDPA's top-left ``is_causal`` is used only when query and key lengths
are equal, otherwise an explicit mask is built (cached decoding, chunked prefill; pytorch/pytorch#108108).

Deviations (also in ``docs/architectures/gpt.md``):
- ``token_type_ids``: GPT-2 has no segment table and HF adds ``wte(token_type_ids)``; we accept only all-zero
  ids (what our collators send) and ignore them, so training and generation see the same inputs.
- An all-ones ``attention_mask`` (packed CLM blocks) is dropped so the fused ``is_causal`` kernel is used; the
  check is one ``all()`` per forward.
- Left-padded generation passes ``position_ids = cumsum(attention_mask) - 1`` (as HF ``generate``), for learned
  positions and RoPE alike.
- ``attention_mask`` may also be the attention pattern itself, bool ``(B, 1, T, S)`` with True = attend (HF's custom
  4-D masks, huggingface/transformers#27539): several examples packed in one row attend within their own block
  only (block-diagonal), with ``position_ids`` restarting at each example (``tasks/sft.py``). The causal mask is
  still applied on top.

Legend: B batch, T new tokens, S keys (cached + new), D hidden, V vocabulary, L layers.
"""

from __future__ import annotations

from torch import Tensor, nn

from lmforge.heads.lm import CausalLMHead, LanguageModel, LMDecoder
from lmforge.models.common import checkpointed
from lmforge.models.gpt.config import GPTConfig
from lmforge.nn.attention import KeyValueCache, MultiHeadAttention, keep_from_padding_mask
from lmforge.nn.embeddings import TokenEmbeddings
from lmforge.nn.ffn import MLP, SwiGLU
from lmforge.nn.init import gpt2_residual_std, normal_, zeros_
from lmforge.nn.moe import MoEFeedForward
from lmforge.nn.norms import LayerNorm, RMSNorm
from lmforge.nn.positions import LearnedPositions, RotaryEmbedding

__all__ = ["GPTBlock", "GPTModel", "build_clm", "init_weights"]


def _norm(cfg: GPTConfig) -> nn.Module:
    if cfg.normalization == "rmsnorm":
        return RMSNorm(cfg.hidden_size, eps=cfg.layer_norm_epsilon)
    return LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_epsilon, bias=cfg.use_bias)


def _ffn(cfg: GPTConfig) -> nn.Module:
    if cfg.num_experts > 0:
        return MoEFeedForward(
            cfg.hidden_size,
            cfg.moe_intermediate_size or cfg.ffn_hidden_size,
            num_experts=cfg.num_experts,
            top_k=cfg.num_experts_per_tok,
            num_shared_experts=cfg.num_shared_experts,
            glu=cfg.ffn_type == "swiglu",
            activation="silu" if cfg.ffn_type == "swiglu" else cfg.activation_function,
            bias=cfg.use_bias,
            normalize_top_k=cfg.norm_topk_prob,
            balance_loss_weight=cfg.router_aux_loss_coef,
            z_loss_weight=cfg.router_z_loss_coef,
        )
    if cfg.ffn_type == "swiglu":
        return SwiGLU(cfg.hidden_size, cfg.ffn_hidden_size, bias=cfg.use_bias)
    return MLP(cfg.hidden_size, cfg.ffn_hidden_size, activation=cfg.activation_function, bias=cfg.use_bias)


class GPTBlock(nn.Module):
    """One pre-LN block: ``x + drop(attn(norm(x)))`` then ``x + drop(ffn(norm(x)))``; returns ``(x, present)``."""

    def __init__(self, cfg: GPTConfig, *, rope: RotaryEmbedding | None):
        super().__init__()
        self.attention_norm = _norm(cfg)
        self.attention = MultiHeadAttention(
            cfg.hidden_size,
            num_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.kv_heads,
            bias=cfg.use_bias,
            fused_qkv=True,
            rope=rope,
            kernel=cfg.attn_implementation,
            causal=True,
            dropout=cfg.attn_pdrop,
        )
        self.ffn_norm = _norm(cfg)
        self.ffn = _ffn(cfg)
        self.is_moe = isinstance(self.ffn, MoEFeedForward)
        self.dropout = nn.Dropout(cfg.resid_pdrop)

    def forward(
        self,
        x_BTD: Tensor,
        keep_B11S: Tensor | None,
        *,
        keep_BT: Tensor | None = None,
        past_key_value: KeyValueCache | None = None,
        use_cache: bool = False,
        position_ids: Tensor | None = None,
    ) -> tuple[Tensor, KeyValueCache | None]:
        attended_BTD, present = self.attention(
            self.attention_norm(x_BTD),
            keep_B11S,
            past_key_value=past_key_value,
            use_cache=use_cache,
            position_ids=position_ids,
        )
        x_BTD = x_BTD + self.dropout(attended_BTD)
        normed_BTD = self.ffn_norm(x_BTD)
        ffn_BTD = self.ffn(normed_BTD, keep_BT) if self.is_moe else self.ffn(normed_BTD)  # MoE: padding-free stats
        return x_BTD + self.dropout(ffn_BTD), present


class GPTModel(nn.Module):
    """GPT backbone. Plain call: ``forward(input_ids, attention_mask, token_type_ids) -> hidden (B, T, D)``
    (after the final norm). With ``use_cache=True`` it returns ``(hidden, past_key_values)``, one ``(k, v)`` per
    layer, keys already rotated; ``attention_mask`` then covers cached + new tokens ``(B, S)``. With
    ``output_hidden_states=True`` the tuple ends with the L + 1 hidden states (embeddings, after each block; the
    last after the final norm, HF GPT-2's convention): ``(hidden, states)`` or ``(hidden, past, states)``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        absolute = config.position_embedding_type == "absolute"
        self.embeddings = TokenEmbeddings(
            config.vocab_size,
            config.hidden_size,
            max_positions=config.max_position_embeddings if absolute else 0,
            dropout=config.embd_pdrop,
        )
        # LLaMA / GPT-NeoX RoPE: "half" pairing (rotate_half) over the whole head dim.
        rope = None if absolute else RotaryEmbedding(config.head_dim, pairing="half", base=config.rope_theta)
        self.layers = nn.ModuleList(GPTBlock(config, rope=rope) for _ in range(config.num_hidden_layers))
        self.norm = _norm(config)
        self.gradient_checkpointing = False  # models.common.checkpointed; never with a KV cache (inference)
        init_weights(self, config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        past_key_values: list[KeyValueCache] | None = None,
        use_cache: bool = False,
        position_ids: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> Tensor | tuple:
        past_len = 0 if past_key_values is None else past_key_values[0][0].shape[-2]
        new_len = input_ids.shape[1]
        limit = self.config.max_position_embeddings
        if self.config.position_embedding_type == "absolute" and past_len + new_len > limit:
            raise ValueError(f"{past_len} cached + {new_len} new tokens exceed max_position_embeddings={limit}")
        keep_B11S = keep_BT = None
        if attention_mask is not None and attention_mask.ndim == 4:  # the pattern itself: packed examples
            if attention_mask.shape != (input_ids.shape[0], 1, new_len, past_len + new_len):
                raise ValueError(
                    f"a 4-D attention_mask must be (batch, 1, new, cached + new) = "
                    f"{(input_ids.shape[0], 1, new_len, past_len + new_len)}, got {tuple(attention_mask.shape)}"
                )
            keep_B11S = attention_mask.bool()  # (B, 1, T, S); the layers still AND the causal mask
            keep_BT = keep_B11S[:, 0].diagonal(offset=past_len, dim1=-2, dim2=-1)  # a real token sees itself
        elif attention_mask is not None:
            if attention_mask.shape != (input_ids.shape[0], past_len + new_len):
                raise ValueError(
                    f"attention_mask must be (batch, cached + new) = {(input_ids.shape[0], past_len + new_len)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            if not bool(attention_mask.all()):  # all ones: keep the fused is_causal path
                keep_B11S = keep_from_padding_mask(attention_mask)
                keep_BT = attention_mask[:, past_len:].bool()
        x_BTD = self.embeddings(input_ids, token_type_ids, position_offset=past_len, position_ids_BT=position_ids)
        presents: list[KeyValueCache] = []
        states = [x_BTD] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            x_BTD, present = checkpointed(
                layer,
                x_BTD,
                keep_B11S,
                keep_BT=keep_BT,
                past_key_value=None if past_key_values is None else past_key_values[i],
                use_cache=use_cache,
                position_ids=position_ids,
                enabled=self.gradient_checkpointing and not use_cache,
            )
            presents.append(present)
            if states is not None:
                states.append(x_BTD)
        x_BTD = self.norm(x_BTD)
        if states is None:
            return (x_BTD, presents) if use_cache else x_BTD
        states[-1] = x_BTD  # after the final norm: the last state is the output
        return (x_BTD, presents, tuple(states)) if use_cache else (x_BTD, tuple(states))


def init_weights(model: nn.Module, cfg: GPTConfig) -> None:
    """GPT-2 init for every module under ``model`` (backbone or head).

    Linear, embedding and position weights N(0, initializer_range=0.02), biases 0, norms 1/0 (HF
    ``GPT2PreTrainedModel._init_weights``, nanoGPT ``_init_weights``). Projections that write into the residual
    stream (attention ``o_proj``, every FFN/expert ``down``) N(0, 0.02 / sqrt(2L)): GPT-2 section 2.3, nanoGPT's
    ``c_proj`` rule (``lmforge.nn.init.gpt2_residual_std``).
    """
    std = cfg.initializer_range
    residual_std = gpt2_residual_std(std, num_layers=cfg.num_hidden_layers)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            is_residual = name.endswith(("attention.o_proj", ".down"))
            normal_(module.weight, std=residual_std if is_residual else std)
            if module.bias is not None:
                zeros_(module.bias)
        elif isinstance(module, nn.Embedding | LearnedPositions):
            normal_(module.weight, std=std)
        elif isinstance(module, LayerNorm | RMSNorm):
            nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                zeros_(module.bias)
        elif isinstance(module, LMDecoder):
            if module.weight is not None:
                normal_(module.weight, std=std)
            if module.bias is not None:
                zeros_(module.bias)


def build_clm(cfg: GPTConfig) -> LanguageModel:
    """GPT causal LM: backbone + ``CausalLMHead`` (no bias; tied to the word embeddings unless untied)."""
    backbone = GPTModel(cfg)
    head = CausalLMHead(
        cfg.hidden_size,
        cfg.vocab_size,
        bias=False,
        tied_embedding=backbone.get_input_embeddings() if cfg.tie_word_embeddings else None,
    )
    init_weights(head, cfg)
    return LanguageModel(backbone, head, objective="clm")
