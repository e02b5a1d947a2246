"""CANINE (Clark et al. 2022): a tokenizer-free encoder over Unicode codepoints, assembled from ``lmforge.nn``.

References: google-research/language ``language/canine/modeling.py`` (TF, the original) and HF
``modeling_canine.CanineModel`` (random-weight parity in ``tests/models/test_canine.py``).

    codepoints -> hash embeddings + segment + position, LN, dropout                    (B, T, D)
      -> initial character layer: a BERT layer with block-local attention (chunks of local_transformer_stride)
      -> downsample: strided conv (rate), [CLS] kept as molecule 0, LN                  (B, M, D), M = T // rate
      -> deep stack: num_hidden_layers BERT layers over molecules (mask = max-pooled char mask)
      -> pooled = tanh(dense(molecule 0))                                               (B, D)
      -> upsample: repeat molecules to T, concat the initial char encoding, "same" conv, LN  (B, T, D)
      -> final character layer: a BERT layer with full attention                        (B, T, D)

Every layer is ``lmforge.models.bert.model.BertLayer`` (post-LN, as HF ``CanineLayer``): composed, not copied.
Block-local attention runs that same layer on ``(B * C, W, D)`` chunks (``lmforge.nn.canine.to_chunks``).

Deviations: none in the maths. One trap kept on purpose for parity: in a chunk whose keys are all padding, HF's
additive ``finfo.min`` mask swamps the scores and the softmax is uniform, so those padding rows get the chunk mean
of the values (our kernels return zeros for key-less rows); padding reaches real outputs through the upsampling
conv, so ``_local_layer`` reproduces the uniform rows.

Legend: B batch, T characters, M molecules, N chunks (B * C), W chunk width, D hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from lmforge.models.bert.model import BertLayer
from lmforge.models.canine.config import CanineConfig
from lmforge.models.common import checkpointed
from lmforge.nn.attention import attend, keep_from_padding_mask
from lmforge.nn.canine import Downsample, HashEmbedding, Upsample, downsample_mask, from_chunks, to_chunks
from lmforge.nn.init import apply_init_, init_dense_, init_embedding_, init_norm_, normal_
from lmforge.nn.norms import LayerNorm
from lmforge.nn.positions import LearnedPositions

__all__ = ["CanineEmbeddings", "CanineModel", "CanineOutput", "init_weights"]


@dataclass
class CanineOutput:
    sequence: Tensor  # (B, T, D) final character encodings
    pooled: Tensor  # (B, D) tanh(dense(molecule 0))
    molecules: Tensor  # (B, M, D) deep-stack output
    # with output_hidden_states, HF CanineModel's L + 5: chars (B, T, D) embeddings, after the initial layer;
    # molecules (B, M, D) downsampled, after each deep layer; chars upsampled, after the final layer (= sequence)
    hidden_states: tuple[Tensor, ...] | None = None


class CanineEmbeddings(nn.Module):
    """``dropout(LN(hash(codepoints) + segment + position))`` (HF ``CanineEmbeddings``)."""

    def __init__(self, cfg: CanineConfig):
        super().__init__()
        self.hash = HashEmbedding(cfg.hidden_size, num_hashes=cfg.num_hash_functions, num_buckets=cfg.num_hash_buckets)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.position_embeddings = LearnedPositions(cfg.max_position_embeddings, cfg.hidden_size)
        self.norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids_BT: Tensor, token_type_ids_BT: Tensor | None = None) -> Tensor:
        x_BTD = self.hash(input_ids_BT) + self.position_embeddings(input_ids_BT.shape[1])
        if token_type_ids_BT is None:
            x_BTD = x_BTD + self.token_type_embeddings.weight[0]
        else:
            x_BTD = x_BTD + self.token_type_embeddings(token_type_ids_BT)
        return self.dropout(self.norm(x_BTD))


def _key_mask(keep_BT: Tensor) -> Tensor | None:
    """``(B, 1, 1, T)`` key mask, or None when every key is real: the attention kernels then need no mask (SDPA
    takes its fused path; the same outputs)."""
    return None if bool(keep_BT.all()) else keep_from_padding_mask(keep_BT)


def _local_layer(layer: BertLayer, x_BTD: Tensor, keep_BT: Tensor, width: int) -> Tensor:
    """``layer`` with attention restricted to consecutive chunks of ``width`` characters (HF/TF local attention,
    from/to width = stride, no [CLS] sharing)."""
    batch, length, _ = x_BTD.shape
    x_NWD, keep_NW, inside_NW = to_chunks(x_BTD, keep_BT, width)
    attention = layer.attention
    attended_NWD, _ = attention(x_NWD, _key_mask(keep_NW))
    # All-padding chunk: HF's softmax over finfo.min-masked scores is uniform -> the mean of the chunk's values.
    has_key_N = keep_NW.any(-1)
    if not bool(has_key_N.all()):
        inside_NW1 = inside_NW[..., None].to(x_NWD.dtype)
        mean_ND = (x_NWD * inside_NW1).sum(1) / inside_NW1.sum(1)
        uniform_N1D = attention.o_proj(attention.v_proj(mean_ND))[:, None]  # v and o are affine: mean commutes
        attended_NWD = torch.where(has_key_N[:, None, None], attended_NWD, uniform_N1D)
    x_NWD = layer.attention_norm(x_NWD + layer.dropout(attended_NWD))
    x_NWD = layer.ffn_norm(x_NWD + layer.dropout(layer.ffn(x_NWD)))
    return from_chunks(x_NWD, batch, length)


def _layer_at(layer: BertLayer, x_BTD: Tensor, keep_B11T: Tensor | None, query_BT: Tensor) -> Tensor:
    """``layer(x)[query]`` as ``(N, D)`` in row-major order, computing only the N query rows: every position is a key,
    only the selected ones are queries (TF CANINE's ``final_seq_char_positions`` for MLM; HF raises
    ``NotImplementedError``). Queries are gathered per example and padded to the longest selection."""
    attention = layer.attention
    counts_B = query_BT.sum(1)
    width = max(int(counts_B.max()), 1)
    # (B, P) indices of each example's selected positions, padded with position 0 (dropped at the end)
    order_BT = torch.sort((~query_BT).to(torch.int8), dim=1, stable=True).indices
    index_BP = order_BT[:, :width]
    valid_BP = torch.arange(width, device=x_BTD.device) < counts_B[:, None]
    xq_BPD = x_BTD.gather(1, index_BP[..., None].expand(-1, -1, x_BTD.shape[-1]))
    heads, dim = attention.num_heads, attention.head_dim
    q_BHPK = attention.q_proj(xq_BPD).unflatten(-1, (heads, dim)).transpose(1, 2)
    k_BHTK = attention.k_proj(x_BTD).unflatten(-1, (heads, dim)).transpose(1, 2)
    v_BHTK = attention.v_proj(x_BTD).unflatten(-1, (heads, dim)).transpose(1, 2)
    dropout = attention.dropout if attention.training else 0.0
    out_BHPK = attend(q_BHPK, k_BHTK, v_BHTK, keep_B11T, kernel=attention.kernel, dropout_p=dropout)
    attended_BPD = attention.o_proj(out_BHPK.transpose(1, 2).flatten(-2))
    xq_BPD = layer.attention_norm(xq_BPD + layer.dropout(attended_BPD))
    xq_BPD = layer.ffn_norm(xq_BPD + layer.dropout(layer.ffn(xq_BPD)))
    return xq_BPD[valid_BP]


class CanineModel(nn.Module):
    """CANINE backbone. ``forward(input_ids, attention_mask, token_type_ids) -> sequence (B, T, D)`` (the
    backbone contract of ``lmforge.heads``); ``encode`` also returns the pooled output and the molecules."""

    def __init__(self, config: CanineConfig):
        super().__init__()
        self.config = cfg = config
        self.embeddings = CanineEmbeddings(cfg)
        self.initial_layer = BertLayer(cfg, rope=None)
        self.downsample = Downsample(
            cfg.hidden_size, rate=cfg.downsampling_rate, activation=cfg.hidden_act, norm_eps=cfg.layer_norm_eps
        )
        self.layers = nn.ModuleList(BertLayer(cfg, rope=None) for _ in range(cfg.num_hidden_layers))
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.upsample = Upsample(
            cfg.hidden_size,
            rate=cfg.downsampling_rate,
            kernel_size=cfg.upsampling_kernel_size,
            activation=cfg.hidden_act,
            norm_eps=cfg.layer_norm_eps,
            dropout=cfg.hidden_dropout_prob,
        )
        self.final_layer = BertLayer(cfg, rope=None)
        self.gradient_checkpointing = False  # models.common.checkpointed: the three stacks' layers
        init_weights(self, cfg)

    def get_input_embeddings(self) -> HashEmbedding:
        return self.embeddings.hash

    def encode(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        query_mask: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> CanineOutput:
        """``query_mask (B, T)`` (MLM training): the final character layer computes only those positions and
        ``sequence`` is ``(N, D)``, their rows in row-major order (the same values as the full ``sequence[query]``).
        ``output_hidden_states``: also ``hidden_states``, the L + 5 tensors of HF ``CanineModel`` (each of the three
        stacks gives its input and each layer's output; the stacks' lengths differ: T, M, T)."""
        cfg = self.config
        length = input_ids.shape[1]
        if not cfg.downsampling_rate <= length <= cfg.max_position_embeddings:
            raise ValueError(
                f"CANINE needs {cfg.downsampling_rate} <= characters <= {cfg.max_position_embeddings}, got {length}"
            )
        keep_BT = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        embedded_BTD = self.embeddings(input_ids, token_type_ids)
        checkpointing = self.gradient_checkpointing
        chars_BTD = checkpointed(_local_layer, self.initial_layer, embedded_BTD, keep_BT, cfg.local_transformer_stride,
                                 enabled=checkpointing)  # fmt: skip
        molecules_BMD = self.downsample(chars_BTD)
        states = [embedded_BTD, chars_BTD, molecules_BMD] if output_hidden_states else None
        keep_molecules = _key_mask(downsample_mask(keep_BT, cfg.downsampling_rate))
        for layer in self.layers:
            molecules_BMD = checkpointed(layer, molecules_BMD, keep_molecules, enabled=checkpointing)
            if states is not None:
                states.append(molecules_BMD)
        pooled_BD = torch.tanh(self.pooler(molecules_BMD[:, 0]))
        sequence_BTD = self.upsample(chars_BTD, molecules_BMD)
        if states is not None:
            states.append(sequence_BTD)
        keep_B11T = _key_mask(keep_BT)
        if query_mask is None:
            sequence_BTD = checkpointed(self.final_layer, sequence_BTD, keep_B11T, enabled=checkpointing)
        else:
            sequence_BTD = checkpointed(_layer_at, self.final_layer, sequence_BTD, keep_B11T, query_mask.bool(),
                                        enabled=checkpointing)  # fmt: skip
        if states is not None:
            states.append(sequence_BTD)
        hidden_states = None if states is None else tuple(states)
        return CanineOutput(
            sequence=sequence_BTD, pooled=pooled_BD, molecules=molecules_BMD, hidden_states=hidden_states
        )

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states)
        return (out.sequence, out.hidden_states) if output_hidden_states else out.sequence


def init_weights(model: nn.Module, cfg: CanineConfig) -> None:
    """HF ``CaninePreTrainedModel`` init (BERT's): Linear and Conv1d weights, embeddings and positions
    N(0, initializer_range), biases 0, LayerNorm 1/0; the same for any head built on top."""
    std = cfg.initializer_range
    apply_init_(
        model,
        [
            ((nn.Linear, nn.Conv1d), partial(init_dense_, std=std)),
            (nn.Embedding, partial(init_embedding_, std=std)),
            (LearnedPositions, lambda module: normal_(module.weight, std=std)),
            (LayerNorm, init_norm_),
        ],
    )
