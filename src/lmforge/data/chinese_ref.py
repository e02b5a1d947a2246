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
inverse, for writing our segmentation in that format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

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


def apply_refs(
    char_starts: np.ndarray,
    refs: Sequence[list[int] | None],
    *,
    codepoints: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    doc_tokens: np.ndarray,
    doc_chars: np.ndarray,
    where: Sequence[str] | None = None,
) -> np.ndarray:
    """Word starts per character of a batch with the documents that have a ref (not None) re-marked HF's way.

    ``char_starts``: our segmenter's flags per character of ``"\\n".join(texts)``; ``codepoints``: that text's
    codepoints; ``starts``/``ends``/``doc_tokens``/``doc_chars``: the tokenizer's ``EncodedBatch`` of it. In a
    document with a ref every Chinese character starts a word except those the ref names (position p is token
    p - 1 of the document: [CLS] comes first); other characters keep the segmenter's flags."""
    out = char_starts.copy()
    for doc, ref in enumerate(refs):
        if ref is None:
            continue
        lo, hi = int(doc_chars[doc]), int(doc_chars[doc + 1])
        chinese = is_chinese(codepoints[lo:hi])  # the last document's range runs one past the text
        out[lo : lo + chinese.size] |= chinese
        first, count = int(doc_tokens[doc]), int(doc_tokens[doc + 1] - doc_tokens[doc])
        for position in ref:
            token = first + position - 1
            single = 0 < position <= count and ends[token] - starts[token] == 1
            if not single or not is_chinese(codepoints[starts[token]]):
                name = where[doc] if where is not None else f"document {doc}"
                raise PrepareError(
                    f"{name}: ref position {position} is not a single Chinese character of the {count} tokens; the ref "
                    "file was made for another text or tokenizer (its lines must match the training text's non-blank "
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
