"""Input embeddings: token + optional segment (token type) + optional learned absolute positions, then an
optional norm and dropout.

References: BERT (Devlin et al. 2019; google-research/bert ``embedding_postprocessor``; HF ``BertEmbeddings``):
word + token-type + position, LayerNorm, dropout. RoFormer/RoFormerV2 drop the absolute positions (RoPE instead);
RoFormerV2/GAU-alpha apply dropout *before* a parameter-free norm (``order="dropout_norm"``).

Deviations: missing ``token_type_ids`` means all zeros (as HF). Parameter names (``word_embeddings``,
``token_type_embeddings``, ``position_embeddings``) follow HF so converters stay one-to-one.

Legend: B batch, T tokens, D model width.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from lmforge.nn.positions import LearnedPositions

__all__ = ["TokenEmbeddings"]


class TokenEmbeddings(nn.Module):
    """``dropout(norm(word + segment + position))`` (or ``norm(dropout(...))``), each part optional but the word.

    ``norm`` is any module (``LayerNorm``, ``RMSNorm(elementwise_affine=False)``, ...) or None for none.
    ``type_vocab_size=0`` disables segments; ``max_positions=0`` disables learned positions.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        *,
        type_vocab_size: int = 0,
        max_positions: int = 0,
        pad_token_id: int | None = None,
        norm: nn.Module | None = None,
        dropout: float = 0.0,
        order: Literal["norm_dropout", "dropout_norm"] = "norm_dropout",
    ):
        super().__init__()
        if order not in ("norm_dropout", "dropout_norm"):
            raise ValueError(f"order must be 'norm_dropout' or 'dropout_norm', got {order!r}")
        self.word_embeddings = nn.Embedding(vocab_size, dim, padding_idx=pad_token_id)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, dim) if type_vocab_size > 0 else None
        self.position_embeddings = LearnedPositions(max_positions, dim) if max_positions > 0 else None
        self.norm = norm
        self.dropout = nn.Dropout(dropout)
        self.order = order

    def forward(
        self,
        input_ids_BT: Tensor,
        token_type_ids_BT: Tensor | None = None,
        *,
        position_offset: int = 0,
        position_ids_BT: Tensor | None = None,
    ) -> Tensor:
        """``position_ids_BT`` (explicit positions, e.g. left-padded generation) replaces ``position_offset``."""
        x_BTD = self.word_embeddings(input_ids_BT)
        if self.token_type_embeddings is not None:
            if token_type_ids_BT is None:
                x_BTD = x_BTD + self.token_type_embeddings.weight[0]  # all segment 0
            else:
                x_BTD = x_BTD + self.token_type_embeddings(token_type_ids_BT)
        elif token_type_ids_BT is not None and bool((token_type_ids_BT != 0).any()):
            raise ValueError("token_type_ids given but this embedding has no segment table (type_vocab_size=0)")
        if self.position_embeddings is not None:
            seq_len = input_ids_BT.shape[1]
            x_BTD = x_BTD + self.position_embeddings(seq_len, offset=position_offset, positions=position_ids_BT)
        if self.order == "dropout_norm":
            x_BTD = self.dropout(x_BTD)
        if self.norm is not None:
            x_BTD = self.norm(x_BTD)
        if self.order == "norm_dropout":
            x_BTD = self.dropout(x_BTD)
        return x_BTD
