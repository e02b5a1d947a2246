"""Whole-word reference files in HF ``run_chinese_ref.py`` format: read them (``--train_ref_file``) and write ours.

Format (transformers examples/research_projects/mlm_wwm/run_chinese_ref.py, read by run_mlm_wwm.py
``add_chinese_references``): one JSON list of integers per non-blank line of the training text, the positions in
``tokenizer(line, add_special_tokens=True, truncation=True, max_length=512)["input_ids"]`` ([CLS] is position 0)
of the Chinese single-character tokens that continue a word (LTP segmentation). ``DataCollatorForWholeWordMask``
turns those tokens into "##X"; every other Chinese character is a word of its own.

Here the positions become character-level word starts (``apply_refs``), which the shard stage already maps onto
any tokenizer's tokens (``segment.token_word_starts``), so a ref file drives the whole-word flags in place of our
segmenter. A position must land on a single Chinese character of our tokenization of the same line, or the file
was made for another text or tokenizer: a one-line ``PrepareError`` with the line number. ``ref_positions`` is the
inverse, for writing our segmentation in that format (``ref_lines`` for a whole batch).

With a ref file the segmenter does not decide for Chinese characters: within the 510 tokens a ref covers, every
Chinese character of a document starts a word except the ones its ref names, as ``DataCollatorForWholeWordMask``
reads them. Other characters, and everything past those 510 tokens, keep the segmenter's flags: with the ``none``
segmenter those are BERT's basic-tokenizer words, whose WordPiece pieces HF masks together as "##" continuations
(HF exactly); with rjieba a file we wrote reads back to the very flags it came from (tested).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from lmforge.data.errors import PrepareError

MAX_REF_LENGTH = 512  # run_chinese_ref.py tokenizes with truncation=True, max_length=512

# BERT's _is_chinese_char ranges (google-research/bert tokenization.py), as segment._CJK
_CJK_RANGES = np.array(
    [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)],
    dtype=np.int64,
)


def is_chinese(codepoints: np.ndarray) -> np.ndarray:
    """A bool per codepoint: inside BERT's CJK ranges."""
    codepoints = np.asarray(codepoints, dtype=np.int64)
    return ((codepoints[..., None] >= _CJK_RANGES[:, 0]) & (codepoints[..., None] <= _CJK_RANGES[:, 1])).any(-1)


def read_ref_file(path: str | os.PathLike) -> Iterator[list[int]]:
    """The reference lists of a ``run_chinese_ref.py`` file, one per non-blank line (as run_mlm_wwm.py reads it)."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                ref = json.loads(line)
            except ValueError:
                ref = None
            if not isinstance(ref, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in ref):
                raise PrepareError(f"{str(path)!r} line {number}: not a JSON list of token positions: {line[:80]!r}")
            yield ref


def count_ref_lines(path: str | os.PathLike) -> int:
    """Non-blank lines of a ref file (one per document), counted without parsing them."""
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def apply_refs(
    char_starts: np.ndarray,
    refs: Sequence[list[int] | None],
    *,
    codepoints: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    doc_tokens: np.ndarray,
    doc_chars: np.ndarray,
    where: Callable[[int], str] | None = None,
) -> np.ndarray:
    """Word starts per character of a batch with the documents that have a ref (not None) re-marked HF's way.

    ``char_starts``: our segmenter's flags per character of ``"\\n".join(texts)``; ``codepoints``: that text's
    codepoints; ``starts``/``ends``/``doc_tokens``/``doc_chars``: the tokenizer's ``EncodedBatch`` of it. In a
    document with a ref every Chinese character starts a word except those the ref names (position p is token
    p - 1 of the document: [CLS] comes first); other characters keep the segmenter's flags. ``where(doc)`` names a
    document in the error. One numpy pass over the batch: a ref file of a 14 GB corpus names billions of positions."""
    out = char_starts.copy()
    has_ref = np.fromiter((ref is not None for ref in refs), dtype=bool, count=len(refs))
    if not has_ref.any():
        return out
    chinese = np.zeros(out.size, dtype=bool)  # word_starts has one flag past the text
    chinese[: min(out.size, codepoints.size)] = is_chinese(codepoints[: out.size])
    # the characters a ref covers: those of its document's first 510 tokens
    count = np.diff(doc_tokens)
    last = doc_tokens[:-1] + np.minimum(count, MAX_REF_LENGTH - 2) - 1
    covered_end = np.where(count > 0, ends[np.maximum(last, 0)] if ends.size else 0, doc_chars[:-1])
    covered_end[~has_ref] = doc_chars[:-1][~has_ref]
    char_doc = np.minimum(np.searchsorted(doc_chars, np.arange(out.size), side="right") - 1, len(refs) - 1)
    out[chinese & (np.arange(out.size) < covered_end[char_doc])] = True
    sizes = np.fromiter((len(ref) if ref is not None else 0 for ref in refs), dtype=np.int64, count=len(refs))
    if not sizes.sum():
        return out
    positions = np.fromiter((p for ref in refs if ref is not None for p in ref), dtype=np.int64, count=int(sizes.sum()))
    doc = np.repeat(np.arange(len(refs)), sizes)
    count = count[doc]
    inside = (positions > 0) & (positions <= count)
    token = np.where(inside, doc_tokens[doc] + positions - 1, 0)
    ok = inside & (ends[token] - starts[token] == 1)
    ok[ok] = chinese[starts[token[ok]]]
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        name = where(int(doc[bad])) if where is not None else f"document {doc[bad]}"
        raise PrepareError(
            f"{name}: ref position {positions[bad]} is not a single Chinese character of the {count[bad]} tokens; the "
            "ref file was made for another text or tokenizer (its lines must match the training text's non-blank "
            "lines, tokenized with a BERT-style Chinese vocabulary)"
        )
    out[starts[token]] = False
    return out


def ref_positions(
    token_flags: np.ndarray, *, codepoints: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> list[int]:
    """One document's ref list: [CLS]-based positions of its single-Chinese-character tokens that do not start a
    word, within run_chinese_ref.py's 512-token window."""
    single = (ends - starts) == 1
    chinese = np.zeros(starts.size, dtype=bool)
    chinese[single] = is_chinese(codepoints[starts[single]])
    positions = np.flatnonzero(chinese & ~token_flags) + 1
    return positions[positions < MAX_REF_LENGTH - 1].tolist()  # [CLS] + 510 tokens + [SEP]


def ref_lines(
    token_flags: np.ndarray, *, codepoints: np.ndarray, starts: np.ndarray, ends: np.ndarray, doc_tokens: np.ndarray
) -> str:
    """The ref file lines of a batch of documents (``ref_positions`` of each, as ``json.dumps`` writes a list)."""
    single = (ends - starts) == 1
    chinese = np.zeros(starts.size, dtype=bool)
    chinese[single] = is_chinese(codepoints[starts[single]])
    tokens = np.flatnonzero(chinese & ~token_flags)
    doc = np.searchsorted(doc_tokens, tokens, side="right") - 1
    positions = tokens - doc_tokens[doc] + 1
    window = positions < MAX_REF_LENGTH - 1  # [CLS] + 510 tokens + [SEP]
    positions, doc = positions[window], doc[window]
    bounds = np.searchsorted(doc, np.arange(doc_tokens.size))
    listed = positions.tolist()
    return "".join(
        "[" + ", ".join(map(str, listed[lo:hi])) + "]\n" for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist())
    )
