"""Multiple choice over any backbone's hidden states: each choice is its own sequence
(``[CLS] context [SEP] question choice [SEP]``), pooled and scored by one linear layer, softmax over the choices.

References: BERT's SWAG recipe and HF ``BertForMultipleChoice`` (inputs (B, C, T) flattened to B*C sequences, one
logit per sequence, ``view(B, C)``, cross-entropy over C); the CLUE C3 baselines use the same head. ``TaskModel``
(``heads/classification.py``) does the flattening, so the backbone never sees the choice axis, and hands this head
hidden states reshaped back to (B, C, T, D). A batch mixes questions with 2 to 4 choices: a missing choice is a row
with no real token (attention mask all zero) and gets the lowest logit, so it never wins and adds nothing to the
softmax. Pooling is the classifier's (``pool_hidden``: ``cls``, ``mean`` or ``last``); the loss is fp32 (R6).

Legend: B questions, C choices, T tokens, D hidden width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.heads.classification import pool_hidden
from lmforge.nn.init import init_dense_
from lmforge.nn.norms import upcast

__all__ = ["MultipleChoiceHead"]


class MultipleChoiceHead(nn.Module):
    """Pool each choice's sequence, dropout, linear to one score: logits (B, C)."""

    def __init__(self, hidden_size: int, *, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        if pooling not in ("cls", "mean", "last"):
            raise ValueError(f"pooling must be 'cls', 'mean' or 'last' (resolve 'auto' first), got {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.scorer = nn.Linear(hidden_size, 1)
        init_dense_(self.scorer, std=0.02)  # BERT's initializer_range

    def forward(self, hidden_BCTD: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if hidden_BCTD.dim() != 4:
            raise ValueError(f"multiple choice needs hidden states (B, C, T, D), got {tuple(hidden_BCTD.shape)}")
        B, C, T, D = hidden_BCTD.shape
        mask_BCT = attention_mask if attention_mask is not None else hidden_BCTD.new_ones(B, C, T, dtype=torch.long)
        pooled_ND = pool_hidden(hidden_BCTD.reshape(B * C, T, D), mask_BCT.reshape(B * C, T), self.pooling)
        logits_BC = self.scorer(self.dropout(pooled_ND)).view(B, C)
        present_BC = mask_BCT.bool().any(-1)  # a choice padded in to fill the batch has no real token
        return logits_BC.masked_fill(~present_BC, torch.finfo(logits_BC.dtype).min)

    def loss(self, logits_BC: Tensor, *, labels: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return F.cross_entropy(upcast(logits_BC), labels)

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}"
