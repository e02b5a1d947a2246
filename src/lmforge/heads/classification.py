"""Sequence classification over any backbone's hidden states, and ``TaskModel``: backbone + one task head.

Contract of a task head (classification, span QA, token tagging): ``head(hidden_BTD, attention_mask) -> logits``
and ``head.loss(logits, attention_mask=..., **targets) -> scalar``; ``TaskModel`` joins a backbone (the contract of
``heads/lm.py``) with such a head, so every registered architecture gets every task with no per-model code (HF's
backbone + heads, one level only: R9).

References: BERT's classifier (google-research/bert ``run_classifier.py``: dropout + linear on the pooled [CLS]);
HF ``BertForSequenceClassification`` (pooler = dense + tanh over [CLS]); HF ``GPT2ForSequenceClassification`` (the
last non-padding token, since a causal model has seen the whole text only there). JunnYu's GAU-alpha CLUE
scripts use [CLS] without a pooler, as bert4keras RoFormerV2 does.

Choices: ``pooling="auto"`` is ``"last"`` for causal backbones and ``"mean"`` otherwise (``default_pooling``):
masked-LM pretraining never trains the ``[CLS]`` vector, and with 200 labels mean pooling of our pretrained
GAU-alpha scored 7 points above ``[CLS]`` (``benchmarks/quality.md``); the tanh pooler is optional
(``use_pooler``), off by default since none of our pretraining objectives trains one. ``"cls"`` stays available
for checkpoints trained with a sentence-level objective (JunnYu's GAU-alpha CLUE scripts, bert4keras RoFormerV2).
Losses are fp32 cross-entropy (R6).

Legend: B batch, T tokens, D hidden width, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.init import init_dense_
from lmforge.nn.norms import upcast

__all__ = [
    "Pooling",
    "SequenceClassificationHead",
    "TaskModel",
    "TaskOutput",
    "backbone_output_size",
    "default_pooling",
    "is_causal_backbone",
    "pool_hidden",
]

Pooling = Literal["auto", "cls", "mean", "last"]


@dataclass
class TaskOutput:
    loss: Tensor | None
    logits: Tensor  # (B, C) sequence classes, (B, T, C) token tags, (B, T, 2) span start/end
    hidden_states: Tensor  # (B, T, D), the backbone output
    all_hidden_states: tuple[Tensor, ...] | None = None  # per layer, with output_hidden_states (heads/lm.py)


def is_causal_backbone(config: Any, *, builders: dict[str, Any] | None = None) -> bool:
    """``config.is_decoder`` when the architecture has that switch; otherwise causal iff it registers a ``clm``
    builder and no ``mlm`` one (GPT). ``builders`` is the registry entry's; without it, no switch means causal."""
    if hasattr(config, "is_decoder"):
        return bool(config.is_decoder)
    if builders is None:
        return True
    return "clm" in builders and "mlm" not in builders


def backbone_output_size(backbone: nn.Module) -> int:
    """Width D of the backbone's hidden states: ``backbone.output_size`` if it declares one, else measured on a
    probe input (reversible backbones such as Reformer return ``2 * hidden_size``, HF ``ReformerModel`` too)."""
    declared = getattr(backbone, "output_size", None)
    if isinstance(declared, int):
        return declared
    parameter = next(backbone.parameters())
    probe_BT = torch.ones(1, 8, dtype=torch.long, device=parameter.device)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        width = backbone(probe_BT, attention_mask=torch.ones_like(probe_BT)).shape[-1]
    backbone.train(was_training)
    return int(width)


def default_pooling(config: Any, *, builders: dict[str, Any] | None = None) -> str:
    """``"last"`` for a causal backbone (only the last token has seen the text), ``"mean"`` over the real tokens for
    an encoder: MLM pretraining gives every token a trained vector except ``[CLS]``, which it never predicts, so a
    pretrained ``[CLS]`` is a poor summary until fine-tuning has rewritten it (``benchmarks/quality.md``: 200 labels,
    pretrained GAU-alpha, mean 0.402 vs ``[CLS]`` 0.327 dev accuracy; equal with a few thousand labels)."""
    return "last" if is_causal_backbone(config, builders=builders) else "mean"


def pool_hidden(hidden_BTD: Tensor, attention_mask_BT: Tensor | None, pooling: str) -> Tensor:
    """One vector per sequence: the first token, the mean over real tokens, or the last real token (B, D)."""
    if pooling == "cls":
        return hidden_BTD[:, 0]
    if attention_mask_BT is None:
        attention_mask_BT = torch.ones(hidden_BTD.shape[:2], dtype=torch.long, device=hidden_BTD.device)
    keep_BT = attention_mask_BT.bool()
    if pooling == "mean":
        keep_BT1 = keep_BT.unsqueeze(-1).to(hidden_BTD.dtype)
        return (hidden_BTD * keep_BT1).sum(1) / keep_BT1.sum(1).clamp(min=1)
    if pooling == "last":
        # The last real token even with left or right padding: the highest position whose mask is set.
        positions_BT = torch.arange(keep_BT.shape[1], device=keep_BT.device).expand_as(keep_BT)
        last_B = torch.where(keep_BT, positions_BT, -1).amax(dim=1).clamp(min=0)
        return hidden_BTD[torch.arange(hidden_BTD.shape[0], device=hidden_BTD.device), last_B]
    raise ValueError(f"pooling must be 'cls', 'mean' or 'last', got {pooling!r}")


class SequenceClassificationHead(nn.Module):
    """Pool, (optional dense + tanh pooler), dropout, linear to ``num_labels`` logits (B, C).

    ``num_labels == 1`` is regression (mean squared error), as in HF ``problem_type="regression"``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_labels: int,
        *,
        pooling: str = "cls",
        use_pooler: bool = False,
        dropout: float = 0.1,
    ):
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        if pooling not in ("cls", "mean", "last"):
            raise ValueError(f"pooling must be 'cls', 'mean' or 'last' (resolve 'auto' first), got {pooling!r}")
        self.pooling, self.num_labels = pooling, num_labels
        self.pooler = nn.Linear(hidden_size, hidden_size) if use_pooler else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        init_dense_(self.classifier, std=0.02)  # BERT's initializer_range

    def forward(self, hidden_BTD: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        pooled_BD = pool_hidden(hidden_BTD, attention_mask, self.pooling)
        if self.pooler is not None:
            pooled_BD = torch.tanh(self.pooler(pooled_BD))
        return self.classifier(self.dropout(pooled_BD))  # (B, C)

    def loss(self, logits_BC: Tensor, *, labels: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if self.num_labels == 1:
            return F.mse_loss(upcast(logits_BC).squeeze(-1), labels.float())
        return F.cross_entropy(upcast(logits_BC), labels)

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}, num_labels={self.num_labels}"


class TaskModel(nn.Module):
    """Backbone + task head. ``forward(input_ids, attention_mask, token_type_ids, **targets) -> TaskOutput``; the
    loss is computed when targets are given (``labels``; ``start_positions``/``end_positions`` for spans).

    ``token_type_ids`` reach the backbone only when it has a segment table (``config.type_vocab_size > 0``):
    GPT and FLASH without one see a sentence pair as ``[CLS] a [SEP] b [SEP]`` alone, as GPT-2 fine-tuning does.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.uses_token_types = getattr(backbone.config, "type_vocab_size", 0) > 0

    @property
    def config(self):
        return self.backbone.config

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.get_input_embeddings()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
        **targets: Tensor,
    ) -> TaskOutput:
        if not self.uses_token_types:
            token_type_ids = None
        if input_ids.dim() == 3:  # multiple choice (B, C, T): every choice its own sequence (heads/multiple_choice.py)
            return self._forward_choices(input_ids, attention_mask, token_type_ids, **targets)
        extra = {"output_hidden_states": True} if output_hidden_states else {}
        out = self.backbone(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **extra)
        hidden_BTD, states = out if output_hidden_states else (out, None)
        logits = self.head(hidden_BTD, attention_mask)
        targets = {k: v for k, v in targets.items() if v is not None}
        loss = self.head.loss(logits, attention_mask=attention_mask, **targets) if targets else None
        return TaskOutput(loss=loss, logits=logits, hidden_states=hidden_BTD, all_hidden_states=states)

    def _forward_choices(
        self,
        input_ids_BCT: Tensor,
        attention_mask_BCT: Tensor | None,
        token_type_ids_BCT: Tensor | None,
        **targets: Tensor,
    ) -> TaskOutput:
        B, C, T = input_ids_BCT.shape
        if attention_mask_BCT is None:
            attention_mask_BCT = torch.ones_like(input_ids_BCT)
        # a choice padded in to fill the batch has no real token: let its first position attend (no all-masked
        # softmax row in the backbone); the head still sees the true mask and gives it the lowest logit
        backbone_mask_NT = attention_mask_BCT.reshape(B * C, T).clone()
        backbone_mask_NT[:, 0] = 1
        types_NT = None if token_type_ids_BCT is None else token_type_ids_BCT.reshape(B * C, T)
        hidden_NTD = self.backbone(input_ids_BCT.reshape(B * C, T), attention_mask=backbone_mask_NT,
                                   token_type_ids=types_NT)  # fmt: skip
        hidden_BCTD = hidden_NTD.view(B, C, T, -1)
        logits_BC = self.head(hidden_BCTD, attention_mask_BCT)
        targets = {k: v for k, v in targets.items() if v is not None}
        loss = self.head.loss(logits_BC, attention_mask=attention_mask_BCT, **targets) if targets else None
        return TaskOutput(loss=loss, logits=logits_BC, hidden_states=hidden_BCTD)
