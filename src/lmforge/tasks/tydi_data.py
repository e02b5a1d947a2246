"""TyDi QA primary-task data: the jsonl reader (UTF-8 byte offsets -> characters), answer types and the windows
(features) a model trains on. The task, its head and the references are described in ``lmforge.tasks.tydi``.

Inputs: ``[CLS] [Q] question [SEP] context-window [SEP]`` as codepoints, with a passage marker codepoint before every
passage start inside the window (private-use codepoints after CANINE's specials, as the CANINE TyDi code); the
tokenizer's tokens and character offsets (no markers) for other backbones.
"""

from __future__ import annotations

import gzip
import json
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lmforge.data.tokenizer import CODEPOINT_SPECIALS

__all__ = [
    "ANSWER_TYPES",
    "Annotation",
    "ByteOffsets",
    "TydiExample",
    "TydiFeature",
    "collate",
    "make_features",
    "read_tydi",
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
