"""TyDi QA primary tasks (passage selection + minimal answer) for character models: reader, windows, heads, metrics.

References: Clark et al. 2020, "TyDi QA" (google-research-datasets/tydiqa: the jsonl format and ``tydi_eval.py``);
google-research/language ``language/canine/tydiqa`` (CANINE's fine-tuning: start/end over characters, a 5-way
answer type from the pooled output, loss = (start + end + answer type) / 3, windows of 2048 characters with stride
512, max answer length 100). Span decoding (n-best, max answer length) is ``lmforge.heads.qa``'s, shared with the
SQuAD/CMRC2018 task.

What is TyDi-specific here:
- Annotations are **UTF-8 byte offsets** into ``document_plaintext``; ``ByteOffsets`` converts them to character
  offsets (and back, for scoring), which differ as soon as a character takes more than one byte.
- Answer type per example: YES/NO (``yes_no_answer``), else MINIMAL (a minimal span), else PASSAGE (a passage
  index only), else UNKNOWN. Training targets: the minimal span for MINIMAL, the passage span for PASSAGE/YES/NO;
  a window that does not contain the target span gets UNKNOWN and targets [CLS] (position 0).
- Inputs: ``[CLS] [Q] question [SEP] context-window [SEP]`` as codepoints, with a passage marker codepoint before
  every passage start inside the window (private-use codepoints after CANINE's specials, as the CANINE TyDi code).
- Metrics as ``tydi_eval.py``: an example's gold is non-null when at least 2 annotators (or the only one) gave an
  answer; passage: correct when the predicted index is one of the gold indices; minimal: byte-overlap precision and
  recall against the best-matching annotator span (YES/NO must match exactly). P = mean over non-null
  predictions, R = mean over non-null golds, F1 = harmonic mean.

Deviations: ``tydi_eval.py`` also sweeps a score threshold per language and reports the best F1; here a
prediction is null when its answer type is UNKNOWN (no threshold sweep). Windows are built once per example in
Python, not as TFRecords.

Legend: B batch, T characters, D hidden width.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.data.tokenizer import CODEPOINT_SPECIALS
from lmforge.eval.metrics import harmonic_f1
from lmforge.heads.qa import SpanHead, SpanWindow, decode_spans, split_span_logits
from lmforge.nn.init import init_dense_
from lmforge.nn.norms import upcast

__all__ = [
    "ANSWER_TYPES",
    "ByteOffsets",
    "TydiExample",
    "TydiFeature",
    "TydiPrediction",
    "TydiQAModel",
    "make_features",
    "predict",
    "read_tydi",
    "tydi_scores",
]

ANSWER_TYPES: tuple[str, ...] = ("UNKNOWN", "YES", "NO", "MINIMAL", "PASSAGE")  # tydiqa AnswerType order
UNKNOWN, YES, NO, MINIMAL, PASSAGE = range(5)
QUESTION_MARKER = CODEPOINT_SPECIALS["reserved"] + 1  # 0xE005, "[Q]"
PASSAGE_MARKER = CODEPOINT_SPECIALS["reserved"] + 2  # 0xE006, one before every passage


class ByteOffsets:
    """UTF-8 byte offset <-> character offset of one text; a byte inside a character maps to that character."""

    def __init__(self, text: str):
        self._char_starts = []  # byte offset where each character starts, then the total
        position = 0
        for char in text:
            self._char_starts.append(position)
            position += len(char.encode("utf-8"))
        self._char_starts.append(position)

    @property
    def num_bytes(self) -> int:
        return self._char_starts[-1]

    def to_char(self, byte_offset: int) -> int:
        if not 0 <= byte_offset <= self.num_bytes:
            raise ValueError(f"byte offset {byte_offset} outside the text (0..{self.num_bytes})")
        return bisect_right(self._char_starts, byte_offset) - 1

    def to_byte(self, char_offset: int) -> int:
        return self._char_starts[char_offset]


@dataclass
class Annotation:
    passage_index: int  # -1 = no passage
    minimal: tuple[int, int] | None  # characters [start, end) in the context
    yes_no: str  # "NONE" | "YES" | "NO"

    @property
    def answer_type(self) -> int:
        if self.yes_no in ("YES", "NO"):
            return YES if self.yes_no == "YES" else NO
        if self.minimal is not None:
            return MINIMAL
        return PASSAGE if self.passage_index >= 0 else UNKNOWN


@dataclass
class TydiExample:
    example_id: str
    language: str
    question: str
    context: str  # document_plaintext
    passages: list[tuple[int, int]]  # characters [start, end) of every passage candidate
    annotations: list[Annotation] = field(default_factory=list)
    offsets: ByteOffsets | None = None


def _char_span(offsets: ByteOffsets, start_byte: int, end_byte: int, where: str) -> tuple[int, int] | None:
    if start_byte < 0 or end_byte < 0:
        return None
    if end_byte < start_byte:
        raise ValueError(f"{where}: end byte {end_byte} before start byte {start_byte}")
    return offsets.to_char(start_byte), offsets.to_char(end_byte)


def read_tydi(path: str | Path) -> Iterator[TydiExample]:
    """Examples of a TyDi QA primary-task jsonl (``tydiqa-v1.0-{train,dev}.jsonl``, optionally one per line)."""
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
                text = record["document_plaintext"]
                offsets = ByteOffsets(text)
                passages = [
                    _char_span(offsets, p["plaintext_start_byte"], p["plaintext_end_byte"], where)
                    for p in record["passage_answer_candidates"]
                ]
                annotations = []
                for annotation in record.get("annotations", []):
                    minimal = annotation["minimal_answer"]
                    annotations.append(
                        Annotation(
                            passage_index=annotation["passage_answer"]["candidate_index"],
                            minimal=_char_span(
                                offsets, minimal["plaintext_start_byte"], minimal["plaintext_end_byte"], where
                            ),
                            yes_no=annotation.get("yes_no_answer", "NONE"),
                        )
                    )
                yield TydiExample(
                    example_id=str(record["example_id"]),
                    language=record.get("language", ""),
                    question=record["question_text"],
                    context=text,
                    passages=passages,
                    annotations=annotations,
                    offsets=offsets,
                )
            except (KeyError, TypeError, json.JSONDecodeError) as error:
                raise ValueError(f"{where}: not a TyDi QA record ({error!r})") from error


@dataclass
class TydiFeature:
    example_id: str
    input_ids: list[int]  # codepoints
    offsets: list[tuple[int, int] | None]  # per position: context characters [start, end), None elsewhere
    start_position: int = 0
    end_position: int = 0
    answer_type: int = UNKNOWN


def _target(example: TydiExample) -> tuple[int, tuple[int, int] | None]:
    """(answer type, character span to point at) from the first annotation (the training split has one)."""
    if not example.annotations:
        return UNKNOWN, None
    annotation = example.annotations[0]
    kind = annotation.answer_type
    if kind == MINIMAL:
        return kind, annotation.minimal
    if kind == UNKNOWN or annotation.passage_index < 0:
        return kind, None
    return kind, example.passages[annotation.passage_index]


def make_features(
    example: TydiExample,
    *,
    max_seq_length: int = 2048,
    doc_stride: int = 512,
    max_question_length: int = 256,
) -> list[TydiFeature]:
    """Windows of ``[CLS] [Q] question [SEP] context [SEP]`` over the context, ``doc_stride`` characters apart
    (CANINE TyDi defaults), with a passage marker before every passage start; targets as the module docstring."""
    question = [ord(c) for c in example.question[:max_question_length]]
    prefix = [CODEPOINT_SPECIALS["cls"], QUESTION_MARKER, *question, CODEPOINT_SPECIALS["sep"]]
    budget = max_seq_length - len(prefix) - 1
    if budget < 1 or doc_stride < 1:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for context after the question")
    passage_starts = {start for start, _ in example.passages}
    # the context as (codepoint, character offset or None for markers)
    context: list[tuple[int, tuple[int, int] | None]] = []
    for i, char in enumerate(example.context):
        if i in passage_starts:
            context.append((PASSAGE_MARKER, None))
        context.append((ord(char), (i, i + 1)))
    kind, span = _target(example)
    features, window_start = [], 0
    while True:
        window = context[window_start : window_start + budget]
        offsets = [None] * len(prefix) + [offset for _, offset in window] + [None]
        feature = TydiFeature(
            example.example_id, [*prefix, *(cp for cp, _ in window), CODEPOINT_SPECIALS["sep"]], offsets
        )
        if span is not None:
            positions = {offset[0]: t for t, offset in enumerate(offsets) if offset is not None}
            start, end = positions.get(span[0]), positions.get(span[1] - 1)
            if start is not None and end is not None:
                feature.start_position, feature.end_position, feature.answer_type = start, end, kind
        features.append(feature)
        if window_start + budget >= len(context):
            return features
        window_start += doc_stride


@dataclass
class TydiOutput:
    loss: Tensor | None
    logits: Tensor  # (B, T, 2) span start/end
    answer_type_logits: Tensor  # (B, 5)


class TydiQAModel(nn.Module):
    """Backbone + span head over characters + answer-type head over the pooled output (``backbone.encode(...)``
    returning ``.sequence`` and ``.pooled``, as ``CanineModel``). Loss = mean of start, end and answer-type CE."""

    def __init__(self, backbone: nn.Module, *, dropout: float = 0.1):
        super().__init__()
        hidden_size = backbone.config.hidden_size
        self.backbone = backbone
        self.span = SpanHead(hidden_size, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.answer_type = nn.Linear(hidden_size, len(ANSWER_TYPES))
        init_dense_(self.answer_type, std=backbone.config.initializer_range)

    @property
    def config(self):
        return self.backbone.config

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
        answer_types: Tensor | None = None,
    ) -> TydiOutput:
        encoded = self.backbone.encode(input_ids, attention_mask, token_type_ids)
        logits_BT2 = self.span(encoded.sequence, attention_mask)
        type_logits_B5 = self.answer_type(self.dropout(encoded.pooled))
        loss = None
        if start_positions is not None and end_positions is not None and answer_types is not None:
            span_loss = self.span.loss(logits_BT2, start_positions=start_positions, end_positions=end_positions)
            loss = (2 * span_loss + F.cross_entropy(upcast(type_logits_B5), answer_types)) / 3  # (s + e + type) / 3
        return TydiOutput(loss=loss, logits=logits_BT2, answer_type_logits=type_logits_B5)


def collate(features: Sequence[TydiFeature]) -> dict[str, Tensor]:
    """Right-padded codepoint batch (PAD 0) with the three targets."""
    length = max(len(f.input_ids) for f in features)
    input_ids = torch.zeros(len(features), length, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for b, feature in enumerate(features):
        input_ids[b, : len(feature.input_ids)] = torch.tensor(feature.input_ids)
        attention_mask[b, : len(feature.input_ids)] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "start_positions": torch.tensor([f.start_position for f in features]),
        "end_positions": torch.tensor([f.end_position for f in features]),
        "answer_types": torch.tensor([f.answer_type for f in features]),
    }


@dataclass
class TydiPrediction:
    example_id: str
    answer_type: int
    passage_index: int  # -1 = null
    minimal: tuple[int, int] | None  # characters; None for null / YES / NO / PASSAGE
    score: float


def predict(
    example: TydiExample,
    features: Sequence[TydiFeature],
    logits_BT2: Tensor,
    answer_type_logits_B5: Tensor,
    *,
    n_best: int = 20,
    max_answer_length: int = 100,
) -> TydiPrediction:
    """The best span over all windows (``heads.qa.decode_spans``), the answer type predicted by the first window
    that contains it, and the passage that contains it (null when the type is UNKNOWN or no passage does)."""
    start_BT, end_BT = split_span_logits(logits_BT2)
    windows = [
        SpanWindow(start_BT[b, : len(f.offsets)], end_BT[b, : len(f.offsets)], f.offsets)
        for b, f in enumerate(features)
    ]
    best = decode_spans(windows, example.context, n_best=n_best, max_answer_length=max_answer_length)[0]
    if best.char_start < 0:
        return TydiPrediction(example.example_id, UNKNOWN, -1, None, float("-inf"))
    owner = 0
    for b, window in enumerate(windows):
        chars = [o for o in window.offsets if o is not None]
        if chars and chars[0][0] <= best.char_start and best.char_end <= chars[-1][1]:
            owner = b
            break
    kind = int(answer_type_logits_B5[owner].argmax())
    passage = next((i for i, (s, e) in enumerate(example.passages) if s <= best.char_start < e), -1)
    if kind == UNKNOWN or passage < 0:
        return TydiPrediction(example.example_id, UNKNOWN, -1, None, best.score)
    minimal = (best.char_start, best.char_end) if kind == MINIMAL else None
    return TydiPrediction(example.example_id, kind, passage, minimal, best.score)


def _overlap_pr(predicted: tuple[int, int], gold: tuple[int, int]) -> tuple[float, float]:
    overlap = max(0, min(predicted[1], gold[1]) - max(predicted[0], gold[0]))
    return overlap / max(predicted[1] - predicted[0], 1), overlap / max(gold[1] - gold[0], 1)


def tydi_scores(
    examples: Sequence[TydiExample], predictions: dict[str, TydiPrediction], *, non_null_threshold: int = 2
) -> dict[str, float]:
    """Passage and minimal-answer precision/recall/F1 as ``tydi_eval.py`` (byte-level minimal overlap)."""
    sums = {"passage": [0.0, 0, 0.0, 0], "minimal": [0.0, 0, 0.0, 0]}  # precision sum, #pred, recall sum, #gold
    for example in examples:
        prediction = predictions.get(example.example_id)
        threshold = min(non_null_threshold, len(example.annotations)) or 1
        to_bytes = example.offsets or ByteOffsets(example.context)
        # passage
        golds = [a.passage_index for a in example.annotations if a.passage_index >= 0]
        gold_non_null = len(golds) >= threshold
        predicted = prediction is not None and prediction.passage_index >= 0
        correct = float(predicted and gold_non_null and prediction.passage_index in golds)
        _add(sums["passage"], predicted, gold_non_null, correct, correct)
        # minimal answer: spans or YES/NO
        minimal_golds = [a for a in example.annotations if a.answer_type in (YES, NO, MINIMAL)]
        gold_non_null = len(minimal_golds) >= threshold
        predicted = prediction is not None and prediction.answer_type in (YES, NO, MINIMAL)
        best_p = best_r = 0.0
        if predicted and gold_non_null:
            for gold in minimal_golds:
                if prediction.answer_type != MINIMAL or gold.answer_type != MINIMAL:
                    p = r = float(prediction.answer_type == gold.answer_type)
                else:
                    span = (to_bytes.to_byte(prediction.minimal[0]), to_bytes.to_byte(prediction.minimal[1]))
                    gold_span = (to_bytes.to_byte(gold.minimal[0]), to_bytes.to_byte(gold.minimal[1]))
                    p, r = _overlap_pr(span, gold_span)
                if harmonic_f1(p, r) >= harmonic_f1(best_p, best_r):
                    best_p, best_r = p, r
        _add(sums["minimal"], predicted, gold_non_null, best_p, best_r)
    scores = {}
    for name, (p_sum, n_pred, r_sum, n_gold) in sums.items():
        precision, recall = p_sum / max(n_pred, 1), r_sum / max(n_gold, 1)
        scores |= {
            f"{name}_precision": precision,
            f"{name}_recall": recall,
            f"{name}_f1": harmonic_f1(precision, recall),
        }
    return scores


def _add(sums: list, predicted: bool, gold_non_null: bool, precision: float, recall: float) -> None:
    if predicted:
        sums[0] += precision if gold_non_null else 0.0
        sums[1] += 1
    if gold_non_null:
        sums[2] += recall if predicted else 0.0
        sums[3] += 1
