"""Fine-tuning metrics: classification (accuracy, per-class P/R/F1, confusion matrix + plot), extractive QA
(CMRC2018 EM/F1 exactly as the official script, SQuAD v1.1 EM/F1) and entity-level F1 for BIO tagging.

CMRC2018 follows ``cmrc2018_evaluate.py`` (CLUEbenchmark/CLUE ``baselines/models_pytorch/mrc_pytorch/preprocess``,
the official script of the CMRC 2018 evaluation): text lower-cased and stripped; ``mixed_segmentation`` keeps
every CJK character (U+4E00..U+9FA5) and every listed punctuation mark as one segment and tokenizes the runs in
between; F1 is computed from the longest common *contiguous* run of segments (``find_lcs``), with the listed
punctuation removed; EM compares the strings with that punctuation removed; both take the max over the gold
answers, and an unanswered question counts as 0 (it stays in the denominator). The punctuation list is the
script's, character for character (``"……"`` is one two-character entry there, so a lone ``…`` is *not* removed).
Deviation: the script tokenizes non-CJK runs with ``nltk.word_tokenize``, which needs the punkt model downloaded;
``_word_tokenize`` is a small stand-in that splits on whitespace and separates punctuation, keeping numbers like
``1,000`` and ``3.5`` whole as nltk does (contractions such as ``don't`` stay whole: nltk splits ``do n't``).

SQuAD v1.1 (``evaluate-v1.1.py``): lower-case, remove ASCII punctuation and the articles a/an/the, collapse
whitespace; F1 over the bag of whitespace tokens. Entity F1 is CLUENER's (and seqeval's default): an entity counts
when type, start and end all match; micro-averaged, plus per type.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "bio_entities",
    "classification_report",
    "cmrc2018_em",
    "cmrc2018_f1",
    "cmrc2018_scores",
    "confusion_matrix",
    "entity_f1",
    "harmonic_f1",
    "mixed_segmentation",
    "plot_confusion_matrix",
    "remove_punctuation",
    "squad_scores",
]


def harmonic_f1(precision: float, recall: float) -> float:
    """F1, the harmonic mean of precision and recall; 0 when both are 0."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# --------------------------------------------------------------------------------------------------------------
# classification


def confusion_matrix(gold: Sequence[int], predicted: Sequence[int], num_labels: int) -> list[list[int]]:
    """``matrix[g][p]``: how many examples of gold class g were predicted as p (rows gold, columns predicted)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    matrix = [[0] * num_labels for _ in range(num_labels)]
    for g, p in zip(gold, predicted, strict=True):
        matrix[g][p] += 1
    return matrix


def classification_report(gold: Sequence[int], predicted: Sequence[int], label_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    A class that is never predicted has precision 0 (sklearn's ``zero_division=0``); accuracy of no examples is 0.
    """
    matrix = confusion_matrix(gold, predicted, len(label_names))
    per_class = {}
    for i, name in enumerate(label_names):
        true_positive = matrix[i][i]
        predicted_i = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = true_positive / predicted_i if predicted_i else 0.0
        recall = true_positive / support if support else 0.0
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": harmonic_f1(precision, recall),
            "support": support,
        }
    correct = sum(matrix[i][i] for i in range(len(label_names)))
    present = [v["f1"] for v in per_class.values() if v["support"] > 0]
    return {
        "accuracy": correct / len(gold) if gold else 0.0,
        "macro_f1": sum(present) / len(present) if present else 0.0,
        "num_examples": len(gold),
        "per_class": per_class,
        "confusion_matrix": matrix,
        "labels": list(label_names),
    }


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], label_names: Sequence[str], out: str | Path) -> Path:
    """A row-normalised confusion-matrix heat map with counts, saved as PNG (rows gold, columns predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label_names = _plottable(label_names)
    n = len(label_names)
    rates = [[c / max(sum(row), 1) for c in row] for row in matrix]
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels=label_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels=label_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if n <= 30:
        for g in range(n):
            for p in range(n):
                if matrix[g][p]:
                    color = "white" if rates[g][p] > 0.5 else "black"
                    ax.text(p, g, str(matrix[g][p]), ha="center", va="center", fontsize=6, color=color)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei", "Heiti SC")


def _plottable(names: Sequence[str]) -> list[str]:
    """The names, with a CJK font selected when one is installed; otherwise non-ASCII names become ``#index``
    (matplotlib's default font has no CJK glyphs and would draw empty boxes)."""
    if all(name.isascii() for name in names):
        return list(names)
    import matplotlib
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    for family in _CJK_FONTS:
        if family in installed:
            matplotlib.rcParams["font.sans-serif"] = [family, *matplotlib.rcParams["font.sans-serif"]]
            return list(names)
    return [name if name.isascii() else f"#{i}" for i, name in enumerate(names)]


# --------------------------------------------------------------------------------------------------------------
# CMRC2018

_CMRC_PUNCTUATION = [
    "-",
    ":",
    "_",
    "*",
    "^",
    "/",
    "\\",
    "~",
    "`",
    "+",
    "=",
    "，",
    "。",
    "：",
    "？",
    "！",
    "“",
    "”",
    "；",
    "’",
    "《",
    "》",
    "……",
    "·",
    "、",
    "「",
    "」",
    "（",
    "）",
    "－",
    "～",
    "『",
    "』",
]  # fmt: skip  (cmrc2018_evaluate.py sp_char)
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_WORD = re.compile(r"\d+(?:[.,]\d+)+|\w+(?:'\w+)*|[^\w\s]")


def _word_tokenize(text: str) -> list[str]:
    """Stand-in for ``nltk.word_tokenize`` on the non-CJK runs (see the module docstring)."""
    return _WORD.findall(text)


def mixed_segmentation(text: str, *, remove_punc: bool = False) -> list[str]:
    """CJK characters and listed punctuation one by one, other runs word-tokenized (``rm_punc``: drop the marks)."""
    text = str(text).lower().strip()
    segments: list[str] = []
    pending = ""
    for char in text:
        if remove_punc and char in _CMRC_PUNCTUATION:
            continue
        if _CJK.search(char) or char in _CMRC_PUNCTUATION:
            if pending:
                segments.extend(_word_tokenize(pending))
                pending = ""
            segments.append(char)
        else:
            pending += char
    if pending:
        segments.extend(_word_tokenize(pending))
    return segments


def remove_punctuation(text: str) -> str:
    return "".join(char for char in str(text).lower().strip() if char not in _CMRC_PUNCTUATION)


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common contiguous run of ``a`` and ``b`` (the script's ``find_lcs``)."""
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def cmrc2018_f1(answers: Sequence[str], prediction: str) -> float:
    """Max over gold answers of the segment F1 (in [0, 1])."""
    scores = []
    predicted = mixed_segmentation(prediction, remove_punc=True)
    for answer in answers:
        gold = mixed_segmentation(answer, remove_punc=True)
        common = _longest_common_run(gold, predicted)
        if common == 0:
            scores.append(0.0)
            continue
        scores.append(harmonic_f1(common / len(predicted), common / len(gold)))
    return max(scores) if scores else 0.0


def cmrc2018_em(answers: Sequence[str], prediction: str) -> float:
    """1.0 if the prediction equals any gold answer once the listed punctuation is removed."""
    return float(any(remove_punctuation(a) == remove_punctuation(prediction) for a in answers))


def cmrc2018_scores(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """``{"em", "f1", "average", "total", "skipped"}`` in percent over every question of ``gold`` (id -> answers);
    a question missing from ``predictions`` scores 0 and is counted in ``skipped``."""
    scores = _question_scores(gold, predictions, em=cmrc2018_em, f1=cmrc2018_f1)
    return scores | {"average": (scores["em"] + scores["f1"]) / 2}


def _question_scores(
    gold: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    *,
    em: Callable[[Sequence[str], str], float],
    f1: Callable[[Sequence[str], str], float],
) -> dict[str, float]:
    """Mean EM and F1 in percent over every question of ``gold``; a missing prediction scores 0 (``skipped``)."""
    em_sum = f1_sum = 0.0
    skipped = 0
    for qid, answers in gold.items():
        if qid not in predictions:
            skipped += 1
            continue
        prediction = str(predictions[qid])
        em_sum += em(answers, prediction)
        f1_sum += f1(answers, prediction)
    total = len(gold)
    return {
        "em": 100.0 * em_sum / total if total else 0.0,
        "f1": 100.0 * f1_sum / total if total else 0.0,
        "total": total,
        "skipped": skipped,
    }


# --------------------------------------------------------------------------------------------------------------
# SQuAD v1.1

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def _squad_normalize(text: str) -> str:
    text = "".join(char for char in text.lower() if char not in _ASCII_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _squad_f1(answer: str, prediction: str) -> float:
    predicted, gold = _squad_normalize(prediction).split(), _squad_normalize(answer).split()
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    return harmonic_f1(common / len(predicted), common / len(gold))


def squad_scores(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """SQuAD v1.1 ``{"em", "f1", "total", "skipped"}`` in percent; unanswered questions score 0."""
    return _question_scores(
        gold,
        predictions,
        em=lambda answers, p: max((float(_squad_normalize(a) == _squad_normalize(p)) for a in answers), default=0.0),
        f1=lambda answers, p: max((_squad_f1(a, p) for a in answers), default=0.0),
    )


# --------------------------------------------------------------------------------------------------------------
# entities


def bio_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` (end inclusive, CLUENER's convention) of the BIO(ES) tags; an ``I-X`` that does not
    continue an ``X`` entity starts a new one (seqeval's default, lenient mode)."""
    entities: list[tuple[str, int, int]] = []
    current: list[Any] | None = None  # [type, start, end]
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        if tag == "O" or prefix not in ("B", "I", "E", "S", "M") or not kind:
            prefix, kind = "O", ""
        continues = current is not None and kind == current[0] and prefix in ("I", "E", "M")
        if continues:
            current[2] = i
        else:
            if current is not None:
                entities.append(tuple(current))
                current = None
            if prefix != "O":
                current = [kind, i, i]
        if current is not None and prefix in ("E", "S"):
            entities.append(tuple(current))
            current = None
    return entities


def entity_f1(
    gold: Iterable[Iterable[tuple[str, int, int]]], predicted: Iterable[Iterable[tuple[str, int, int]]]
) -> dict[str, Any]:
    """Micro precision/recall/F1 over exact ``(type, start, end)`` matches per sentence, and the same per type."""
    counts: dict[str, Counter] = {}
    total = Counter()
    for gold_entities, predicted_entities in zip(gold, predicted, strict=True):
        g, p = set(gold_entities), set(predicted_entities)
        for entity in g | p:
            kind = counts.setdefault(entity[0], Counter())
            hit = {"gold": entity in g, "predicted": entity in p}
            for key, value in (*hit.items(), ("correct", hit["gold"] and hit["predicted"])):
                kind[key] += value
                total[key] += value

    def scores(c: Counter) -> dict[str, float]:
        precision = c["correct"] / c["predicted"] if c["predicted"] else 0.0
        recall = c["correct"] / c["gold"] if c["gold"] else 0.0
        return {"precision": precision, "recall": recall, "f1": harmonic_f1(precision, recall), "support": c["gold"]}

    return {**scores(total), "per_type": {kind: scores(c) for kind, c in sorted(counts.items())}}
