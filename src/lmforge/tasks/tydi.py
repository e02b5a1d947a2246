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

``lmforge finetune tydi`` (``build_tydi_task``, ``TydiHead``) runs this on any backbone: codepoints with [Q] and
passage markers for CANINE, the tokenizer's tokens and character offsets (no markers) otherwise. ``tydi_eval``
scores official-format predictions as ``tydi_eval.py``: per language, a sweep over the prediction scores picks the
threshold with the best F1 (passage and minimal separately), then P/R/F1 are averaged over languages excluding
English. Scores are the span score minus the window's null ([CLS]) score, as CANINE's postprocessing.

Deviations: the non-null thresholds (2 annotators) are capped at an example's number of annotations, so
single-annotation files (train, fixtures) have non-null golds; the head's answer-type pooler reads the final
character sequence's first position (weights copied from CANINE's pretrained pooler, which reads molecule 0);
windows are built once per example in Python, not as TFRecords, and every window is kept (no sampling of
answerless windows).

Legend: B batch, T characters, D hidden width.
"""

from __future__ import annotations

import gzip
import json
import math
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.data.tokenizer import CODEPOINT_SPECIALS
from lmforge.eval.metrics import harmonic_f1
from lmforge.heads.qa import SpanHead, SpanWindow, decode_spans, split_span_logits
from lmforge.nn.init import init_dense_, trunc_normal_
from lmforge.nn.norms import upcast

__all__ = [
    "ANSWER_TYPES",
    "ByteOffsets",
    "TydiExample",
    "TydiFeature",
    "TydiHead",
    "TydiPrediction",
    "TydiQAModel",
    "answer_stats",
    "best_threshold",
    "build_tydi_task",
    "make_features",
    "predict",
    "read_predictions",
    "read_tydi",
    "to_official",
    "tydi_eval",
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


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        yield from enumerate(file, 1)


def read_tydi(path: str | Path, *, require_annotations: bool = True) -> Iterator[TydiExample]:
    """Examples of a TyDi QA primary-task jsonl (``tydiqa-v1.0-{train,dev}.jsonl[.gz]``, one record per line).

    A malformed line (not JSON, not UTF-8, a missing field, a byte offset past the document, a passage index that
    is not a candidate; no ``annotations`` when ``require_annotations``) is a ``ValueError`` naming ``file:line``."""
    path = Path(path)
    for number, raw in _lines(path):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{where}: not UTF-8 (byte {error.start} of the line)") from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record["document_plaintext"]
            offsets = ByteOffsets(text)
            passages = [
                _char_span(offsets, p["plaintext_start_byte"], p["plaintext_end_byte"], where)
                for p in record["passage_answer_candidates"]
            ]
            if require_annotations and "annotations" not in record:
                raise ValueError("no 'annotations' (needed for training and scoring)")
            annotations = []
            for annotation in record.get("annotations") or []:
                minimal = annotation["minimal_answer"]
                index = annotation["passage_answer"]["candidate_index"]
                if not -1 <= index < len(passages):
                    raise ValueError(f"passage candidate_index {index} but {len(passages)} candidates")
                annotations.append(
                    Annotation(
                        passage_index=index,
                        minimal=_char_span(
                            offsets, minimal["plaintext_start_byte"], minimal["plaintext_end_byte"], where
                        ),
                        yes_no=annotation.get("yes_no_answer", "NONE").upper(),
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
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{where}: not a TyDi QA record (missing or malformed {error})") from None
        except ValueError as error:
            message = str(error)
            raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


@dataclass
class TydiFeature:
    example_id: str
    input_ids: list[int]  # codepoints (CANINE) or token ids
    offsets: list[tuple[int, int] | None]  # per position: context characters [start, end), None elsewhere
    start_position: int = 0
    end_position: int = 0
    answer_type: int = UNKNOWN
    num_prefix: int = 0  # [CLS] ... question [SEP]: token type 0; the context and the last [SEP]: type 1


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


def _units(
    example: TydiExample, tokenizer: Any, max_question_length: int
) -> tuple[list[int], list[tuple[int, tuple[int, int] | None]], int]:
    """(prefix ids, context as (id, characters or None), [SEP] id). Codepoints with a [Q] marker and passage
    markers for CANINE (``tokenizer`` None or of kind ``codepoint``); the tokenizer's tokens and offsets otherwise
    (no markers: a subword vocabulary has no ids for them)."""
    if tokenizer is None or getattr(tokenizer, "kind", None) == "codepoint":
        question = [ord(c) for c in example.question[:max_question_length]]
        prefix = [CODEPOINT_SPECIALS["cls"], QUESTION_MARKER, *question, CODEPOINT_SPECIALS["sep"]]
        passage_starts = {start for start, _ in example.passages}
        context: list[tuple[int, tuple[int, int] | None]] = []
        for i, char in enumerate(example.context):
            if i in passage_starts:
                context.append((PASSAGE_MARKER, None))
            context.append((ord(char), (i, i + 1)))
        return prefix, context, CODEPOINT_SPECIALS["sep"]
    from lmforge.tasks.common import encode_texts, require_cls_sep

    require_cls_sep(tokenizer, "TyDi QA")
    (question, _), (ids, offsets) = encode_texts(tokenizer, [example.question, example.context], with_offsets=True)
    prefix = [tokenizer.cls_token_id, *question[:max_question_length], tokenizer.sep_token_id]
    return prefix, list(zip(ids, offsets, strict=True)), tokenizer.sep_token_id


def make_features(
    example: TydiExample,
    *,
    max_seq_length: int = 2048,
    doc_stride: int = 512,
    max_question_length: int = 256,
    tokenizer: Any = None,
) -> list[TydiFeature]:
    """Windows of ``[CLS] [Q] question [SEP] context [SEP]`` over the context, ``doc_stride`` positions apart
    (CANINE TyDi defaults: 2048 characters, stride 512), with a passage marker before every passage start;
    targets as the module docstring. ``tokenizer``: see ``_units`` (None = codepoints)."""
    prefix, context, sep = _units(example, tokenizer, max_question_length)
    budget = max_seq_length - len(prefix) - 1
    if budget < 1 or doc_stride < 1:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for context after the question")
    kind, span = _target(example)
    features, window_start = [], 0
    while True:
        window = context[window_start : window_start + budget]
        offsets = [None] * len(prefix) + [offset for _, offset in window] + [None]
        feature = TydiFeature(example.example_id, [*prefix, *(i for i, _ in window), sep], offsets,
                              num_prefix=len(prefix))  # fmt: skip
        if span is not None:  # the positions holding the span's first and last characters, both in the window
            start = next((t for t, o in enumerate(offsets) if o is not None and o[0] <= span[0] < o[1]), None)
            end = next((t for t, o in enumerate(offsets) if o is not None and o[0] <= span[1] - 1 < o[1]), None)
            if start is not None and end is not None and start <= end:
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
    score: float  # best span score minus its window's null ([CLS], [CLS]) score, as CANINE's postprocessing


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
    start_BT, end_BT = split_span_logits(logits_BT2.float())
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
    score = best.score - float(start_BT[owner, 0] + end_BT[owner, 0])
    kind = int(answer_type_logits_B5[owner].argmax())
    passage = next((i for i, (s, e) in enumerate(example.passages) if s <= best.char_start < e), -1)
    if kind == UNKNOWN or passage < 0:
        return TydiPrediction(example.example_id, UNKNOWN, -1, None, score)
    minimal = (best.char_start, best.char_end) if kind == MINIMAL else None
    return TydiPrediction(example.example_id, kind, passage, minimal, score)


def to_official(example: TydiExample, prediction: TydiPrediction) -> dict[str, Any]:
    """One line of the official prediction file (``tydi_eval.py``'s format, byte offsets into the document)."""
    to_bytes = example.offsets or ByteOffsets(example.context)
    start = end = -1
    if prediction.minimal is not None:
        start, end = to_bytes.to_byte(prediction.minimal[0]), to_bytes.to_byte(prediction.minimal[1])
    score = prediction.score if math.isfinite(prediction.score) else -1e9  # JSON has no infinity
    yes_no = ANSWER_TYPES[prediction.answer_type] if prediction.answer_type in (YES, NO) else "NONE"
    example_id: int | str = int(example.example_id) if example.example_id.lstrip("-").isdigit() else example.example_id
    return {
        "example_id": example_id,
        "language": example.language,
        "passage_answer_index": prediction.passage_index,
        "passage_answer_score": score,
        "minimal_answer": {"start_byte_offset": start, "end_byte_offset": end},
        "minimal_answer_score": score,
        "yes_no_answer": yes_no,
    }


def read_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """An official-format prediction file (JSON lines) by example id; a malformed line is a ``ValueError`` with
    ``file:line``."""
    out = {}
    for number, raw in _lines(Path(path)):
        where = f"{path}:{number}"
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            span = record["minimal_answer"]
            record["passage_answer_index"] = int(record["passage_answer_index"])
            record["minimal_answer"] = {k: int(span[k]) for k in ("start_byte_offset", "end_byte_offset")}
            out[str(record["example_id"])] = record
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{where}: not a JSON line ({error})") from None
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: not a TyDi QA prediction (missing or malformed {error})") from None
    return out


# ----------------------------------------------------------------------------- scoring as tydi_eval.py


@dataclass(frozen=True)
class AnswerStat:
    """One example's contribution (``tydi_eval.py``'s answer-stats tuple): ``credit`` is 1/0 for passages and
    the best partial-match F1 for minimal answers; ``score`` orders the threshold sweep."""

    has_gold: bool
    has_pred: bool
    credit: float
    score: float


def _byte_spans(example: TydiExample) -> list[tuple[int, int] | None]:
    to_bytes = example.offsets or ByteOffsets(example.context)
    return [None if a.minimal is None else (to_bytes.to_byte(a.minimal[0]), to_bytes.to_byte(a.minimal[1]))
            for a in example.annotations]  # fmt: skip


def answer_stats(
    example: TydiExample, prediction: dict[str, Any] | None, *, passage_threshold: int, minimal_threshold: int
) -> tuple[AnswerStat, AnswerStat]:
    """(passage, minimal) stats of one example. Gold is non-null when at least ``threshold`` annotators gave an
    answer (capped at the number of annotations: a single-annotation file needs that one)."""
    annotations = example.annotations
    passages = [a.passage_index for a in annotations if a.passage_index >= 0]
    passage_gold = bool(annotations) and len(passages) >= (min(passage_threshold, len(annotations)) or 1)
    minimal_count = sum(a.answer_type in (YES, NO, MINIMAL) for a in annotations)
    minimal_gold = bool(annotations) and minimal_count >= (min(minimal_threshold, len(annotations)) or 1)
    if prediction is None:  # tydi_eval.py: a missing prediction counts as predicting where the gold is null
        return (
            AnswerStat(passage_gold, not passage_gold, 0.0, 0.0),
            AnswerStat(minimal_gold, not minimal_gold, 0.0, 0.0),
        )
    index = int(prediction["passage_answer_index"])
    passage_pred = index != -1
    correct = float(passage_gold and passage_pred and index in passages)
    passage = AnswerStat(passage_gold, passage_pred, correct, float(prediction.get("passage_answer_score", 0.0)))
    span = prediction["minimal_answer"]
    span = (int(span["start_byte_offset"]), int(span["end_byte_offset"]))
    yes_no = str(prediction.get("yes_no_answer", "NONE")).upper()
    span_null = span[0] < 0 or span[1] < 0
    minimal_pred = not span_null or yes_no != "NONE"
    credit = 0.0
    if minimal_gold and minimal_pred:
        if yes_no != "NONE":
            credit = float(any(a.yes_no == yes_no for a in annotations))
        else:
            for gold in _byte_spans(example):
                if gold is not None:
                    p, r = _overlap_pr(span, gold)
                    credit = max(credit, harmonic_f1(p, r))
    minimal = AnswerStat(minimal_gold, minimal_pred, credit, float(prediction.get("minimal_answer_score", 0.0)))
    return passage, minimal


def _overlap_pr(predicted: tuple[int, int], gold: tuple[int, int]) -> tuple[float, float]:
    overlap = max(0, min(predicted[1], gold[1]) - max(predicted[0], gold[0]))
    return overlap / max(predicted[1] - predicted[0], 1), overlap / max(gold[1] - gold[0], 1)


def untuned_prf(stats: Sequence[AnswerStat]) -> tuple[float, float, float]:
    """(P, R, F1) taking every prediction (``compute_macro_f1``): P = credit / #pred, R = credit / #gold."""
    credit = sum(s.credit for s in stats)
    precision = credit / max(sum(s.has_pred for s in stats), 1)
    recall = credit / max(sum(s.has_gold for s in stats), 1)
    return precision, recall, harmonic_f1(precision, recall)


def best_threshold(stats: Sequence[AnswerStat]) -> tuple[float, float, float, float]:
    """(F1, P, R, threshold) at the score threshold that maximises F1 (``compute_pr_curves``): predictions sorted
    by score, highest first; keeping those scored >= t gives one (P, R) per distinct score; ties count together."""
    total_gold = sum(s.has_gold for s in stats)
    credit = predicted = 0.0
    by_score: dict[float, tuple[float, float]] = {}
    for stat in sorted(stats, key=lambda s: -s.score):
        credit += stat.credit
        predicted += stat.has_pred
        by_score[stat.score] = (credit / max(predicted, 1), credit / max(total_gold, 1))
    best = (0.0, 0.0, 0.0, 0.0)
    for threshold, (precision, recall) in by_score.items():
        f1 = harmonic_f1(precision, recall)
        if f1 > best[0]:
            best = (f1, precision, recall, threshold)
    return best


def tydi_eval(
    examples: Sequence[TydiExample],
    predictions: dict[str, dict[str, Any]],
    *,
    passage_non_null_threshold: int = 2,
    minimal_non_null_threshold: int = 2,
) -> dict[str, Any]:
    """``tydi_eval.py``'s metrics from official-format predictions: per language the best-threshold passage and
    minimal-answer F1/P/R (and the threshold), then their macro average over languages excluding English
    (``passage_f1`` ... ``minimal_recall``), plus counts."""
    per_language: dict[str, tuple[list[AnswerStat], list[AnswerStat]]] = {}
    for example in examples:
        passage, minimal = answer_stats(example, predictions.get(example.example_id),
                                        passage_threshold=passage_non_null_threshold,
                                        minimal_threshold=minimal_non_null_threshold)  # fmt: skip
        lists = per_language.setdefault(example.language or "unknown", ([], []))
        lists[0].append(passage)
        lists[1].append(minimal)
    missing = sum(e.example_id not in predictions for e in examples)
    metrics: dict[str, Any] = {"examples": len(examples), "missing_predictions": missing}
    macro: dict[str, list[float]] = {}
    for language in sorted(per_language):
        for task, stats in zip(("passage", "minimal"), per_language[language], strict=True):
            f1, precision, recall, threshold = best_threshold(stats)
            values = {"f1": f1, "precision": precision, "recall": recall}
            for name, value in values.items():
                metrics[f"{language}/{task}_{name}"] = value
                if language != "english":
                    macro.setdefault(f"{task}_{name}", []).append(value)
            metrics[f"{language}/{task}_threshold"] = threshold
        metrics[f"{language}/examples"] = len(per_language[language][0])
    for name in ("passage_f1", "passage_precision", "passage_recall", "minimal_f1", "minimal_precision",
                 "minimal_recall"):  # fmt: skip
        values = macro.get(name, [])
        metrics[name] = sum(values) / len(values) if values else 0.0
    metrics["languages"] = sorted(per_language)
    return metrics


def tydi_scores(
    examples: Sequence[TydiExample], predictions: dict[str, TydiPrediction], *, non_null_threshold: int = 2
) -> dict[str, float]:
    """Passage and minimal-answer P/R/F1 over all examples taking every prediction (no threshold sweep; missing
    predictions are null), with ``tydi_eval.py``'s credits (minimal: the best partial-match F1 in bytes)."""
    stats: dict[str, list[AnswerStat]] = {"passage": [], "minimal": []}
    for example in examples:
        prediction = predictions.get(example.example_id)
        official = to_official(example, prediction) if prediction is not None else None
        if official is None:
            official = {"passage_answer_index": -1, "minimal_answer": {"start_byte_offset": -1, "end_byte_offset": -1}}
        passage, minimal = answer_stats(example, official, passage_threshold=non_null_threshold,
                                        minimal_threshold=non_null_threshold)  # fmt: skip
        stats["passage"].append(passage)
        stats["minimal"].append(minimal)
    scores = {}
    for name, values in stats.items():
        precision, recall, f1 = untuned_prf(values)
        scores |= {f"{name}_precision": precision, f"{name}_recall": recall, f"{name}_f1": f1}
    return scores


# ----------------------------------------------------------------------------- `lmforge finetune tydi`

TYDI_FILES = {  # the official names first, then {split}.jsonl[.gz]
    "train": ("tydiqa-v1.0-train.jsonl.gz", "tydiqa-v1.0-train.jsonl"),
    "dev": ("tydiqa-v1.0-dev.jsonl.gz", "tydiqa-v1.0-dev.jsonl"),
    "test": (),
}


class TydiHead(nn.Module):
    """CANINE's TyDi head over any backbone's hidden states: ``Linear(D, 2)`` start/end per position and a 5-way
    answer type from ``tanh(dense(h_0))`` (a BERT pooler over the first position). Logits (B, T, 2 + 5): channels
    0-1 span (padding -inf), 2-6 the answer-type logits of the sequence repeated at every position, so the
    one-tensor head contract of ``heads.classification.TaskModel`` holds. New dense layers: truncated normal 0.02,
    bias 0 (CANINE ``tydi_modeling.py``). Loss = (CE(start) + CE(end) + CE(type)) / 3 in fp32."""

    def __init__(self, hidden_size: int, *, dropout: float = 0.1, std: float = 0.02):
        super().__init__()
        self.span = SpanHead(hidden_size)
        self.pooler = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.answer_type = nn.Linear(hidden_size, len(ANSWER_TYPES))
        for layer in (self.span.qa_outputs, self.pooler, self.answer_type):
            trunc_normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden_BTD: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        span_BT2 = self.span(hidden_BTD, attention_mask)
        pooled_BD = torch.tanh(self.pooler(hidden_BTD[:, 0]))
        types_B5 = self.answer_type(self.dropout(pooled_BD))
        return torch.cat([span_BT2, types_B5.unsqueeze(1).expand(-1, hidden_BTD.shape[1], -1)], dim=-1)

    def loss(
        self,
        logits_BT7: Tensor,
        *,
        start_positions: Tensor,
        end_positions: Tensor,
        labels: Tensor,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """``labels`` (B,): the answer type (the training loop passes targets under its fixed names)."""
        span = self.span.loss(logits_BT7[..., :2], start_positions=start_positions, end_positions=end_positions)
        return (2 * span + F.cross_entropy(upcast(logits_BT7[:, 0, 2:]), labels)) / 3  # (s + e + type) / 3


def find_tydi_file(data_dir: Path, split: str) -> Path | None:
    names = (*TYDI_FILES[split], f"{split}.jsonl.gz", f"{split}.jsonl")
    return next((data_dir / n for n in names if (data_dir / n).is_file()), None)


def build_tydi_task(
    args: Any, *, tokenizer: Any, hidden_size: int, splits: tuple[str, ...], backbone: nn.Module | None = None
) -> Any:
    """Read, window and wrap TyDi QA (primary tasks) for ``finetune.py`` (``args`` is its ``FinetuneArgs``:
    ``max_seq_length``, ``doc_stride``, ``max_query_length``, ``n_best_size``, ``max_answer_length``). A backbone
    with a pretrained ``pooler`` of the right shape (CANINE) lends its weights to the head's pooler."""
    from lmforge.tasks.common import TaskBundle

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"--data_dir {str(data_dir)!r} is not a directory")
    examples: dict[str, list[TydiExample]] = {}
    features: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for split in splits:
        path = find_tydi_file(data_dir, split)
        if path is None:
            if split == "train":
                raise ValueError(f"{data_dir} has no tydiqa-v1.0-train.jsonl[.gz] or train.jsonl[.gz]")
            continue
        split_examples = list(read_tydi(path, require_annotations=split != "test"))
        if not split_examples:
            raise ValueError(f"{path}: no examples")
        rows, types = [], [0] * len(ANSWER_TYPES)
        for i, example in enumerate(split_examples):
            for feature in make_features(example, max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                                         max_question_length=args.max_query_length, tokenizer=tokenizer):  # fmt: skip
                types[feature.answer_type] += 1
                n = len(feature.input_ids)
                row = {"input_ids": feature.input_ids, "token_type_ids": [0] * feature.num_prefix
                       + [1] * (n - feature.num_prefix), "example": i}  # fmt: skip
                if split == "train":
                    row |= {"start_positions": feature.start_position, "end_positions": feature.end_position,
                            "labels": feature.answer_type}  # fmt: skip
                else:
                    row["offsets"] = feature.offsets
                rows.append(row)
        languages: dict[str, int] = {}
        for example in split_examples:
            languages[example.language] = languages.get(example.language, 0) + 1
        counts[split] = {"file": str(path), "examples": len(split_examples), "lines": len(split_examples),
                         "windows": len(rows), "languages": languages,
                         "window_answer_types": dict(zip(ANSWER_TYPES, types, strict=True))}  # fmt: skip
        examples[split], features[split] = split_examples, rows

    def score(split: str, logits: list[Tensor]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        grouped: dict[int, list[tuple[dict[str, Any], Tensor]]] = {}
        for row, logits_T7 in zip(features[split], logits, strict=True):
            grouped.setdefault(row["example"], []).append((row, logits_T7))
        official = []
        for i, example in enumerate(examples[split]):
            windows = grouped.get(i, [])
            offsets = [TydiFeature(example.example_id, r["input_ids"], r["offsets"]) for r, _ in windows]
            length = max(len(r["input_ids"]) for r, _ in windows)
            span_BT2 = torch.full((len(windows), length, 2), float("-inf"))
            for b, (r, row_logits) in enumerate(windows):
                span_BT2[b, : len(r["input_ids"])] = row_logits[:, :2]
            types_B5 = torch.stack([row_logits[0, 2:] for _, row_logits in windows])
            prediction = predict(example, offsets, span_BT2, types_B5, n_best=args.n_best_size,
                                 max_answer_length=args.max_answer_length)  # fmt: skip
            official.append(to_official(example, prediction))
        if split == "test":
            return {}, official
        by_id = {str(p["example_id"]): p for p in official}
        return tydi_eval(examples[split], by_id), official

    def write_predictions(predictions: list[dict[str, Any]], out_dir: Path) -> Path:
        path = Path(out_dir) / f"{args.task}_predict.jsonl"
        path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions), encoding="utf-8")
        return path

    head = TydiHead(hidden_size, dropout=args.classifier_dropout)
    pooler = getattr(backbone, "pooler", None)
    if isinstance(pooler, nn.Linear) and pooler.weight.shape == head.pooler.weight.shape:
        head.pooler.load_state_dict(pooler.state_dict())
    return TaskBundle(
        name=args.task,
        head=head,
        head_config={"kind": "tydi", "dropout": args.classifier_dropout},
        features=features,
        score=score,
        write_predictions=write_predictions,
        best_metric="minimal_f1",
        report={"counts": counts},
    )
