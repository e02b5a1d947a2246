"""TyDi QA prediction and scoring: the best span over an example's windows, the official prediction format
(byte offsets) and the metrics of ``tydi_eval.py`` (google-research-datasets/tydiqa): per-example answer stats,
the threshold sweep, per-language and macro P/R/F1. The task and its deviations are described in
``lmforge.tasks.tydi``.

Legend: B batch, T characters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from lmforge.eval.metrics import harmonic_f1
from lmforge.heads.qa import SpanWindow, decode_spans, split_span_logits
from lmforge.tasks.tydi_data import (
    ANSWER_TYPES,
    MINIMAL,
    NO,
    UNKNOWN,
    YES,
    ByteOffsets,
    TydiExample,
    TydiFeature,
    _lines,
)

__all__ = [
    "AnswerStat",
    "TydiPrediction",
    "answer_stats",
    "best_threshold",
    "predict",
    "read_predictions",
    "to_official",
    "tydi_eval",
    "tydi_scores",
    "untuned_prf",
]


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
