"""Token classification (BIO tagging for NER) over any backbone's hidden states.

``TokenClassificationHead``: dropout + ``Linear(D, C)`` per token (HF ``BertForTokenClassification``); the loss is
fp32 cross-entropy over positions whose label is not -100 (special tokens, padding and the non-first pieces of a
word), 0 (not NaN) when there are none. Decoding BIO tags into entities and the entity-level F1 live in
``lmforge.eval.metrics`` (``bio_entities``, ``entity_f1``), so a CRF or span head can reuse them.

Legend: B batch, T tokens, D hidden width, C tags.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.heads.lm import IGNORE_INDEX
from lmforge.nn.init import init_dense_
from lmforge.nn.norms import upcast

__all__ = ["TokenClassificationHead"]


class TokenClassificationHead(nn.Module):
    def __init__(self, hidden_size: int, num_labels: int, *, dropout: float = 0.1):
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        init_dense_(self.classifier, std=0.02)

    def forward(self, hidden_BTD: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.classifier(self.dropout(hidden_BTD))  # (B, T, C)

    def loss(self, logits_BTC: Tensor, *, labels: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        labels_N = labels.flatten()
        if attention_mask is not None:  # padding never counts, whatever its label says
            labels_N = labels_N.masked_fill(~attention_mask.bool().flatten(), IGNORE_INDEX)
        total = F.cross_entropy(upcast(logits_BTC).flatten(0, -2), labels_N, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (labels_N != IGNORE_INDEX).sum().clamp(min=1)

    def extra_repr(self) -> str:
        return f"num_labels={self.num_labels}"
