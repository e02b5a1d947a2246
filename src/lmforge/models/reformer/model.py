"""Reformer (Kitaev, Kaiser & Levskaya 2020): LSH and local chunked attention, axial positions, chunked FFN and
reversible residuals, assembled from ``lmforge.nn.lsh``, ``nn.axial`` and ``nn.reversible``.

Reference for random-weight parity: HF ``ReformerModelWithLMHead`` / ``ReformerForMaskedLM``
(``tests/models/test_reformer.py``; keys mapped by ``convert.py``). Layer ``i`` is HF's ``ReformerLayer``:
two streams ``x1, x2`` (both the embeddings at the start), ``x1 += drop(o_proj(attn(norm(x2))))``,
``x2 += ffn(x1)`` with ``ffn = drop(down(act(drop(up(norm(.))))))`` (dropout *before* the activation, as HF);
then ``LayerNorm(cat(x1, x2))`` over 2·hidden_size and dropout. The head reads 2·hidden_size features.

Lengths (``docs/architectures/reformer.md``): an input longer than the smallest chunk is padded to the lcm of the
chunk lengths with ``pad_token_id`` and masked (HF does this only in eval and raises in training; we do it
always), and the padded rows are removed from the output. Axial positions accept any length up to the table.

Deviations: dropout masks come from ``nn.dropout.fast_dropout`` (rates quantised to 1/65536; CPU speed);
``token_type_ids`` are ignored (Reformer has no segment table); ``num_buckets=None`` is resolved per
length each forward; reversible backward works in eval mode too (HF asserts training mode, transformers #10370).

Legend: B batch, T tokens, D hidden (one stream), V vocabulary.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.heads.lm import CausalLMHead, LanguageModel, LMDecoder
from lmforge.models.common import build_language_model, checkpointed
from lmforge.models.reformer.config import ReformerConfig
from lmforge.nn.axial import AxialPositionEmbeddings
from lmforge.nn.dropout import FastDropout
from lmforge.nn.ffn import apply_chunked, get_activation
from lmforge.nn.init import apply_init_, init_dense_, init_norm_, normal_
from lmforge.nn.lsh import LocalSelfAttention, LSHSelfAttention
from lmforge.nn.norms import LayerNorm
from lmforge.nn.positions import LearnedPositions
from lmforge.nn.reversible import reversible_layers, sequential_layers

__all__ = ["ReformerModel", "build_clm", "build_mlm", "init_weights"]


class ReformerEmbeddings(nn.Module):
    """``drop(word(ids)) + drop(positions)``; axial or learned positions (HF ``ReformerEmbeddings``)."""

    def __init__(self, cfg: ReformerConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        if cfg.axial_pos_embds:
            self.position_embeddings = AxialPositionEmbeddings(cfg.axial_pos_shape, cfg.axial_pos_embds_dim)
        else:
            self.position_embeddings = LearnedPositions(cfg.max_position_embeddings, cfg.hidden_size)
        self.dropout = FastDropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids_BT: Tensor) -> Tensor:
        positions_TD = self.position_embeddings(input_ids_BT.shape[1])
        return self.dropout(self.word_embeddings(input_ids_BT)) + self.dropout(positions_TD)


class ReformerAttentionBlock(nn.Module):
    """The reversible ``f``: ``drop(o_proj(attention(norm(x))))``; LSH buckets go to / come from ``state``."""

    def __init__(self, cfg: ReformerConfig, kind: str):
        super().__init__()
        self.norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        common = dict(num_heads=cfg.num_attention_heads, head_dim=cfg.attention_head_size, causal=cfg.is_decoder,
                      kernel=cfg.attn_implementation)  # fmt: skip
        if kind == "lsh":
            self.attention = LSHSelfAttention(
                cfg.hidden_size, chunk_length=cfg.lsh_attn_chunk_length, num_chunks_before=cfg.lsh_num_chunks_before,
                num_chunks_after=cfg.lsh_num_chunks_after, num_hashes=cfg.num_hashes, num_buckets=cfg.num_buckets,
                max_positions=cfg.max_position_embeddings, dropout=cfg.lsh_attention_probs_dropout_prob,
                hash_seed=cfg.hash_seed, **common,
            )  # fmt: skip
        else:
            self.attention = LocalSelfAttention(
                cfg.hidden_size, chunk_length=cfg.local_attn_chunk_length,
                num_chunks_before=cfg.local_num_chunks_before, num_chunks_after=cfg.local_num_chunks_after,
                dropout=cfg.local_attention_probs_dropout_prob, **common,
            )  # fmt: skip
        self.o_proj = nn.Linear(cfg.num_attention_heads * cfg.attention_head_size, cfg.hidden_size, bias=False)
        self.dropout = FastDropout(cfg.hidden_dropout_prob)

    def forward(self, x_BTD: Tensor, *, state: dict[str, Any], keep_BT: Tensor | None = None) -> Tensor:
        out_BTA, buckets = self.attention(self.norm(x_BTD), keep_BT, buckets_BHRT=state.get("buckets"))
        if buckets is not None:
            state["buckets"] = buckets  # the reversible backward recomputes with the same buckets
        return self.dropout(self.o_proj(out_BTA))


class ReformerFeedForward(nn.Module):
    """The reversible ``g``: ``drop(down(act(drop(up(norm(x))))))``, applied ``chunk_size`` positions at a time."""

    def __init__(self, cfg: ReformerConfig):
        super().__init__()
        self.norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.up = nn.Linear(cfg.hidden_size, cfg.feed_forward_size)
        self.down = nn.Linear(cfg.feed_forward_size, cfg.hidden_size)
        self.activation = get_activation(cfg.hidden_act)
        self.dropout = FastDropout(cfg.hidden_dropout_prob)
        self.chunk_size = cfg.chunk_size_feed_forward

    def _position_wise(self, x_BTD: Tensor) -> Tensor:
        return self.dropout(self.down(self.activation(self.dropout(self.up(self.norm(x_BTD))))))

    def forward(self, x_BTD: Tensor) -> Tensor:
        return apply_chunked(self._position_wise, x_BTD, self.chunk_size, dim=1)


class ReformerLayer(nn.Module):
    def __init__(self, cfg: ReformerConfig, kind: str):
        super().__init__()
        self.attention = ReformerAttentionBlock(cfg, kind)
        self.feed_forward = ReformerFeedForward(cfg)


class ReformerModel(nn.Module):
    """Reformer backbone: ``forward(input_ids, attention_mask, token_type_ids) -> hidden (B, T, 2·D)``.

    ``output_hidden_states=True`` returns ``(hidden, states)``: L + 1 tensors (B, T, 2·D), both streams
    concatenated as HF's ``all_hidden_states`` (the embeddings twice, then ``cat(x1, x2)`` after each layer = one
    attention ``f`` + one feed-forward ``g``), except that the last is the output (after the final LayerNorm; HF
    keeps the un-normed streams there). Chunk padding is cut from every state.
    """

    def __init__(self, config: ReformerConfig):
        super().__init__()
        self.config = config
        self.output_size = 2 * config.hidden_size  # heads read both streams (heads.classification reads this)
        self.embeddings = ReformerEmbeddings(config)
        self.layers = nn.ModuleList(ReformerLayer(config, kind) for kind in config.attn_layers)
        self.norm = LayerNorm(2 * config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = FastDropout(config.hidden_dropout_prob)
        self.gradient_checkpointing = False  # models.common.checkpointed (sequential layers only, see forward)
        init_weights(self, config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def padding_for(self, seq_len: int) -> int:
        """Tokens appended to reach a chunk multiple: HF's rule (none when the input fits in the smallest chunk)."""
        multiple = self.config.chunk_multiple
        if seq_len % multiple == 0 or seq_len <= self.config.min_chunk_length:
            return 0
        return multiple - seq_len % multiple

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        T = input_ids.shape[1]
        pad = self.padding_for(T)
        if T + pad > self.config.max_position_embeddings:
            raise ValueError(
                f"{T} tokens (padded to {T + pad}, the chunk multiple) exceed max_position_embeddings "
                f"{self.config.max_position_embeddings}"
            )
        keep_BT = None if attention_mask is None else attention_mask.bool()
        if pad:
            input_ids = F.pad(input_ids, (0, pad), value=self.config.pad_token_id or 0)
            keep_BT = torch.ones_like(input_ids[:, :T], dtype=torch.bool) if keep_BT is None else keep_BT
            keep_BT = F.pad(keep_BT, (0, pad), value=False)
        elif keep_BT is not None and bool(keep_BT.all()):
            keep_BT = None  # no padding: no pad bucket and no mask (HF checks the same sum)
        x_BTD = self.embeddings(input_ids)
        layers = [(layer.attention, layer.feed_forward) for layer in self.layers]
        run = reversible_layers if self.config.use_reversible else sequential_layers
        # Reversible layers already recompute every activation in backward: checkpointing them would add nothing.
        checkpointing = self.gradient_checkpointing and not self.config.use_reversible
        if not output_hidden_states and not checkpointing:
            x1_BTD, x2_BTD = run(x_BTD, x_BTD, layers, keep_BT=keep_BT)
            hidden_BTH = self.dropout(self.norm(torch.cat([x1_BTD, x2_BTD], dim=-1)))
            return hidden_BTH[:, :T] if pad else hidden_BTH
        # One layer per call: the same maths (and RNG draws); a reversible call then keeps each layer's output.
        x1_BTD, x2_BTD = x_BTD, x_BTD
        states = [torch.cat([x1_BTD, x2_BTD], dim=-1)[:, :T]] if output_hidden_states else []
        for layer in layers:
            x1_BTD, x2_BTD = checkpointed(run, x1_BTD, x2_BTD, [layer], keep_BT=keep_BT, enabled=checkpointing)
            if output_hidden_states:
                states.append(torch.cat([x1_BTD, x2_BTD], dim=-1)[:, :T])
        hidden_BTH = self.dropout(self.norm(torch.cat([x1_BTD, x2_BTD], dim=-1)))[:, :T]
        if not output_hidden_states:
            return hidden_BTH
        states[-1] = hidden_BTH
        return hidden_BTH, tuple(states)


def init_weights(model: nn.Module, cfg: ReformerConfig) -> None:
    """HF ``ReformerPreTrainedModel._init_weights``: Linear and embedding weights N(0, initializer_range=0.02),
    biases 0, norms 1/0, axial tables N(0, axial_norm_std=1.0)."""
    std = cfg.initializer_range
    apply_init_(
        model,
        [
            ((nn.Linear, LMDecoder), partial(init_dense_, std=std)),
            ((nn.Embedding, LearnedPositions), lambda module: normal_(module.weight, std=std)),
            (AxialPositionEmbeddings, lambda module: [normal_(w, std=cfg.axial_norm_std) for w in module.weights]),
            (LayerNorm, init_norm_),
        ],
    )


def _head(cfg: ReformerConfig, backbone: nn.Module) -> CausalLMHead:
    head = CausalLMHead(2 * cfg.hidden_size, cfg.vocab_size, bias=True)  # HF ReformerOnlyLMHead: untied, bias
    init_weights(head, cfg)
    return head


def build_clm(cfg: ReformerConfig) -> LanguageModel:
    """Causal Reformer LM (HF ``ReformerModelWithLMHead``)."""
    return build_language_model(cfg, ReformerModel, _head, "clm")


def build_mlm(cfg: ReformerConfig) -> LanguageModel:
    """Bidirectional Reformer MLM (HF ``ReformerForMaskedLM``)."""
    return build_language_model(cfg, ReformerModel, _head, "mlm")
