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

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.heads.qa import SpanHead
from lmforge.nn.init import init_dense_, trunc_normal_
from lmforge.nn.norms import upcast
from lmforge.tasks.tydi_data import (  # re-exported: the reader and windows live in tydi_data
    ANSWER_TYPES,
    MINIMAL,
    NO,
    PASSAGE,
    PASSAGE_MARKER,
    QUESTION_MARKER,
    UNKNOWN,
    YES,
    Annotation,
    ByteOffsets,
    TydiExample,
    TydiFeature,
    collate,
    make_features,
    read_tydi,
)
from lmforge.tasks.tydi_scoring import (  # re-exported: prediction and tydi_eval.py's metrics live in tydi_scoring
    AnswerStat,
    TydiPrediction,
    answer_stats,
    best_threshold,
    predict,
    read_predictions,
    to_official,
    tydi_eval,
    tydi_scores,
    untuned_prf,
)

__all__ = [
    "ANSWER_TYPES",
    "MINIMAL",
    "NO",
    "PASSAGE",
    "PASSAGE_MARKER",
    "QUESTION_MARKER",
    "UNKNOWN",
    "YES",
    "Annotation",
    "AnswerStat",
    "ByteOffsets",
    "TydiExample",
    "TydiFeature",
    "TydiHead",
    "TydiOutput",
    "TydiPrediction",
    "TydiQAModel",
    "answer_stats",
    "best_threshold",
    "build_tydi_task",
    "collate",
    "find_tydi_file",
    "make_features",
    "predict",
    "read_predictions",
    "read_tydi",
    "to_official",
    "tydi_eval",
    "tydi_scores",
    "untuned_prf",
]


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
