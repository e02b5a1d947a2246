"""Extractive question answering: a span start/end head over hidden states, its loss, and n-best decoding.

Tokenizer-free on purpose: decoding works on *character offsets* per token, so a subword model (BERT windows
over a context) and a character model (CANINE, one "token" per codepoint) share it unchanged.

API (all a QA task needs)::

    head = SpanHead(hidden_size)                                  # logits (B, T, 2): start, end
    model = TaskModel(backbone, head)                             # heads.classification
    out = model(input_ids, attention_mask, token_type_ids, start_positions=s_B, end_positions=e_B)
    start_BT, end_BT = split_span_logits(out.logits)
    # one window per (example, stride): its logits and, per token, the (start, end) characters it covers in the
    # context, or None for question/special/padding tokens (never part of an answer)
    windows = [SpanWindow(start_logits=start_BT[i], end_logits=end_BT[i], offsets=offsets_i) for i in ...]
    answers = decode_spans(windows, context, n_best=20, max_answer_length=30)   # best first
    answers[0].text, answers[0].char_start, answers[0].probability

``max_answer_length`` counts tokens (characters for CANINE). A window may mark tokens that have more context in a
neighbouring window with ``max_context[t] = False``; such start tokens are skipped (google-research/bert
``_check_is_max_context``). When no valid span exists, ``decode_spans`` returns ``[SpanAnswer("", ...)]`` (HF's
``postprocess_qa_predictions`` convention).

References: google-research/bert ``run_squad.py`` (``_get_best_indexes``, n-best over start x end, softmax over
the n-best scores for probabilities); HF ``examples/pytorch/question-answering/utils_qa.py``; CLUE's CMRC2018
baseline (same decoding). Loss: the mean of start and end cross-entropies (HF ``BertForQuestionAnswering``); a
position outside the window (the answer is elsewhere) targets index 0, the [CLS] token, as in SQuAD 2.0 training.

Legend: B batch, T tokens, D hidden width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.init import init_dense_
from lmforge.nn.norms import upcast

__all__ = ["SpanAnswer", "SpanCandidate", "SpanHead", "SpanWindow", "decode_spans", "split_span_logits", "top_spans"]


class SpanHead(nn.Module):
    """``Linear(D, 2)`` per token: logits (B, T, 2), channel 0 = start, 1 = end; padding gets -inf."""

    def __init__(self, hidden_size: int, *, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.qa_outputs = nn.Linear(hidden_size, 2)  # HF's name, so converted checkpoints map one to one
        init_dense_(self.qa_outputs, std=0.02)

    def forward(self, hidden_BTD: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        logits_BT2 = self.qa_outputs(self.dropout(hidden_BTD))
        if attention_mask is not None:
            logits_BT2 = logits_BT2.masked_fill(~attention_mask.bool().unsqueeze(-1), float("-inf"))
        return logits_BT2

    def loss(
        self,
        logits_BT2: Tensor,
        *,
        start_positions: Tensor,
        end_positions: Tensor,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """(CE(start) + CE(end)) / 2 in fp32; positions outside ``[0, T)`` are clamped to 0 ([CLS])."""
        length = logits_BT2.shape[1]
        start_B = torch.where((start_positions >= 0) & (start_positions < length), start_positions, 0)
        end_B = torch.where((end_positions >= 0) & (end_positions < length), end_positions, 0)
        start_BT, end_BT = split_span_logits(upcast(logits_BT2))
        return (F.cross_entropy(start_BT, start_B) + F.cross_entropy(end_BT, end_B)) / 2


def split_span_logits(logits_BT2: Tensor) -> tuple[Tensor, Tensor]:
    """``(start_logits (B, T), end_logits (B, T))`` of a ``SpanHead`` output."""
    return logits_BT2[..., 0], logits_BT2[..., 1]


@dataclass(frozen=True)
class SpanCandidate:
    start: int  # token index in the window
    end: int  # token index, inclusive
    score: float  # start_logit + end_logit


@dataclass
class SpanWindow:
    """One window over a context: per-token logits and character offsets (None = not a context token)."""

    start_logits: Sequence[float] | Tensor  # (T,)
    end_logits: Sequence[float] | Tensor  # (T,)
    offsets: Sequence[tuple[int, int] | None]  # (T,) characters [start, end) of the context, or None
    max_context: Sequence[bool] | None = None  # (T,) False: a neighbouring window sees more context around it


@dataclass(frozen=True)
class SpanAnswer:
    text: str
    char_start: int  # in the context; -1 for the empty answer
    char_end: int  # exclusive
    score: float  # start_logit + end_logit of the best window that proposed it
    probability: float  # softmax over the n-best scores


def _as_list(values: Sequence[float] | Tensor) -> list[float]:
    return values.detach().float().cpu().tolist() if isinstance(values, Tensor) else [float(v) for v in values]


def top_spans(
    start_logits: Sequence[float] | Tensor,
    end_logits: Sequence[float] | Tensor,
    *,
    allowed: Sequence[bool],
    n_best: int = 20,
    max_answer_length: int = 30,
    max_context: Sequence[bool] | None = None,
) -> list[SpanCandidate]:
    """The ``n_best`` highest-scoring spans ``start <= end < start + max_answer_length`` of one window whose two
    ends are ``allowed`` (context tokens), searched over the ``n_best`` best starts x ``n_best`` best ends."""
    if n_best < 1 or max_answer_length < 1:
        raise ValueError(f"n_best and max_answer_length must be >= 1, got {n_best}, {max_answer_length}")
    starts, ends = _as_list(start_logits), _as_list(end_logits)
    if not len(starts) == len(ends) == len(allowed):
        raise ValueError(f"window lengths differ: {len(starts)} start, {len(ends)} end logits, {len(allowed)} offsets")
    best_starts = sorted(range(len(starts)), key=lambda i: -starts[i])[:n_best]
    best_ends = sorted(range(len(ends)), key=lambda i: -ends[i])[:n_best]
    candidates = []
    for s in best_starts:
        if not allowed[s] or (max_context is not None and not max_context[s]) or not math.isfinite(starts[s]):
            continue
        for e in best_ends:
            if allowed[e] and s <= e < s + max_answer_length and math.isfinite(ends[e]):
                candidates.append(SpanCandidate(s, e, starts[s] + ends[e]))
    candidates.sort(key=lambda c: (-c.score, c.start, c.end))
    return candidates[:n_best]


def decode_spans(
    windows: Iterable[SpanWindow], context: str, *, n_best: int = 20, max_answer_length: int = 30
) -> list[SpanAnswer]:
    """The n-best answers of one question over all of its windows, best first; each text is
    ``context[char_start:char_end]`` (the same span proposed by several windows keeps its best score)."""
    best: dict[tuple[int, int], float] = {}
    for window in windows:
        allowed = [offset is not None for offset in window.offsets]
        spans = top_spans(
            window.start_logits,
            window.end_logits,
            allowed=allowed,
            n_best=n_best,
            max_answer_length=max_answer_length,
            max_context=window.max_context,
        )
        for span in spans:
            start_char, end_char = window.offsets[span.start][0], window.offsets[span.end][1]
            if end_char <= start_char:
                continue
            key = (start_char, end_char)
            best[key] = max(best.get(key, -math.inf), span.score)
    if not best:
        return [SpanAnswer("", -1, -1, 0.0, 1.0)]
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:n_best]
    top = ranked[0][1]
    weights = [math.exp(score - top) for _, score in ranked]
    total = sum(weights)
    return [
        SpanAnswer(context[s:e], s, e, score, weight / total)
        for ((s, e), score), weight in zip(ranked, weights, strict=True)
    ]
