"""Word segmentation for whole-word masking: words are character spans that tile the document exactly.

Segmenters: ``rjieba`` (jieba-rs bindings, the one JunnYu/FLASHQuad_pytorch ``run_chinese_ref.py`` uses; default),
``jieba`` (pure-Python fallback, same dictionary and algorithm) and ``none`` (no dictionary: every CJK character
and every punctuation mark is a word, a run of other letters/digits is a word, i.e. BERT's basic-tokenizer
boundaries, so WordPiece pieces of one Latin word still mask together).

The pipeline only needs word *starts*: ``word_starts`` segments a batch of documents joined by "\\n" in groups of
~64K characters (rjieba's per-call overhead dominates on short documents such as poems) and returns a boolean per
character of the joined batch.
jieba never lets a word cross "\\n" except the whitespace word "\\r\\n"; every document start is forced to be a
word start, so the joined result equals per-document segmentation wherever a token can start (tested).

Deviations from the references: HF ``run_chinese_ref.py`` keeps only multi-character all-CJK words and PaddleNLP
caps words at 4 characters; we keep every word as jieba returns it (GAU-alpha masks LAC words the same way).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from functools import cache
from typing import Literal

import numpy as np

SegmenterName = Literal["rjieba", "jieba", "none"]
SEGMENTERS: tuple[str, ...] = ("rjieba", "jieba", "none")

# BERT's _is_chinese_char ranges (google-research/bert tokenization.py)
_CJK = "\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f"
_NONE_WORD = re.compile(rf"(?:(?![{_CJK}])\w)+|.", re.DOTALL)


def resolve_segmenter(name: str) -> str:
    """The segmenter to use for ``name``: ``rjieba`` falls back to ``jieba`` (same dictionary, slower) when the
    rjieba wheel is missing, with a notice on stderr. Raises ``ValueError`` for an unknown name."""
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; choose from {SEGMENTERS}")
    if name == "rjieba":
        try:
            import rjieba  # noqa: F401 - imported here so forked workers inherit the loaded dictionary
        except ImportError:
            print("segmenter: rjieba is not installed, falling back to jieba (slower)", file=sys.stderr)
            name = "jieba"
    if name == "jieba":
        _jieba()
    return name


@cache
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def _words(text: str, segmenter: str) -> list[str]:
    if segmenter == "rjieba":
        import rjieba

        return rjieba.cut(text)
    if segmenter == "jieba":
        return list(_jieba().cut(text))
    if segmenter == "none":
        return _NONE_WORD.findall(text)
    raise ValueError(f"unknown segmenter {segmenter!r}; choose from {SEGMENTERS}")


def segment(text: str, *, segmenter: str = "rjieba") -> list[tuple[int, int]]:
    """Word spans ``(start, end)`` in characters; consecutive and covering ``text`` exactly."""
    lengths = list(map(len, _words(text, segmenter)))
    if sum(lengths) != len(text):
        raise AssertionError(f"{segmenter} words do not tile the text ({sum(lengths)} != {len(text)} characters)")
    spans = []
    start = 0
    for length in lengths:
        spans.append((start, start + length))
        start += length
    return spans


def word_starts(texts: Sequence[str], *, segmenter: str = "rjieba", group_chars: int = 1 << 16) -> np.ndarray:
    """A bool per character of ``"\\n".join(texts)``: True where a word starts (one extra False at the end).

    Documents are segmented in groups of about ``group_chars`` characters joined by "\\n": one call per document
    costs too much on short texts, and one call on megabytes is slower than on tens of kilobytes (measured)."""
    doc_ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + 1)
    total = int(doc_ends[-1]) - 1 if len(texts) else 0
    # group g ends after the first document that reaches g * group_chars characters
    targets = np.arange(group_chars, total + group_chars, group_chars)
    cuts = np.unique(np.minimum(np.searchsorted(doc_ends, targets) + 1, len(texts)))
    lengths_parts: list[np.ndarray] = []
    start = 0
    for end in cuts.tolist():
        words = _words("\n".join(texts[start:end]), segmenter)
        lengths_parts.append(np.fromiter(map(len, words), dtype=np.int64, count=len(words)))
        if end < len(texts):
            lengths_parts.append(np.ones(1, dtype=np.int64))  # the "\\n" between two groups
        start = end
    lengths = np.concatenate(lengths_parts) if lengths_parts else np.zeros(0, dtype=np.int64)
    if int(lengths.sum()) != total:
        raise AssertionError(f"{segmenter} words do not tile the text ({int(lengths.sum())} != {total} chars)")
    flags = np.zeros(total + 1, dtype=bool)
    flags[np.cumsum(lengths) - lengths] = True
    flags[doc_ends[:-1]] = True  # every document starts a word
    if len(texts):
        flags[0] = True
    return flags


def token_word_starts(char_starts: np.ndarray, *, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Word-start flag per token: its first character starts a word and it shares no character with the previous
    token (byte-level BPE splits one character over several tokens; those must mask together)."""
    flags = char_starts[starts].copy()
    if starts.size > 1:
        flags[1:] &= starts[1:] >= ends[:-1]
    return flags
