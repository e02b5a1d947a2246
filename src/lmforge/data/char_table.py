"""The ``char`` tokenizer's fast path (style R5): WordPiece over a single-character vocabulary as numpy lookups.

BERT's normalizer + pre-tokenizer + WordPiece cost ~1.3 us per character in ``tokenizers`` (2-3 MB/s of Chinese on
one core, ~7x slower than rjieba). For a vocabulary of single characters WordPiece reduces to a table lookup, so
``char`` encodes with numpy: each codepoint is classified once by *asking the tokenizers normalizer and
pre-tokenizer* (removed / space / stand-alone / word character / complex) and runs of word characters are spelled
``c ##c ##c`` or become one [UNK]. Documents with a "complex" character (a normalisation that yields several
characters, e.g. Hangul under NFD) go through ``tokenizers`` (``LMTokenizer.encode_batch``). Tests assert
fast == reference.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from lmforge.data.tokenizer_spec import MAX_WORD_CHARS, NUM_CODEPOINTS, codepoints

REMOVED, SPACE, ALONE, WORD, COMPLEX, UNKNOWN = 0, 1, 2, 3, 4, 255


class _CharTable:
    """Class and ids of every codepoint under a BERT normalizer, probed on first sight."""

    def __init__(self, backend, vocab: dict[str, int], unk_id: int) -> None:
        self.normalizer = backend.normalizer
        self.pre_tokenizer = backend.pre_tokenizer
        self.vocab = vocab
        self.unk_id = unk_id
        self.kind = np.full(NUM_CODEPOINTS, UNKNOWN, dtype=np.uint8)
        self.first = np.full(NUM_CODEPOINTS, -1, dtype=np.int32)  # id as the first piece of a word
        self.cont = np.full(NUM_CODEPOINTS, -1, dtype=np.int32)  # id as a "##" continuation piece

    def ensure(self, cps: np.ndarray) -> None:
        unseen = cps[self.kind[cps] == UNKNOWN]
        if unseen.size:
            for cp in np.unique(unseen).tolist():
                self._probe(cp)

    def fill_unified_ideographs(self) -> None:
        """Classify U+4E00..U+9FCC without probing: BERT's normalizer pads each with spaces and changes nothing else
        (no case, no decomposition; assigned since Unicode 6.1, so no Rust table calls them unassigned). Probing
        20k characters one by one would cost ~0.3 s per process. Checked against probing by the tests."""
        block = np.arange(0x4E00, 0x9FCD)
        self.kind[block] = ALONE
        self.first[block] = [self.vocab.get(chr(cp), self.unk_id) for cp in block.tolist()]

    def _probe(self, cp: int) -> None:
        if 0xD800 <= cp < 0xE000:  # lone surrogates cannot be passed to the Rust normalizer
            self.kind[cp] = COMPLEX
            return
        normalized = self.normalizer.normalize_str(chr(cp))
        if normalized == "":
            self.kind[cp] = REMOVED
            return
        words = [w for w, _ in self.pre_tokenizer.pre_tokenize_str("a" + normalized + "a")]
        core = normalized.strip(" ")
        kind = COMPLEX
        if words == ["a", "a"]:
            kind = SPACE
        elif len(core) == 1 and unicodedata.combining(core) == 0:
            if words == ["a", core, "a"]:
                kind = ALONE  # CJK character (padded by the normalizer) or punctuation
            elif words == ["a" + core + "a"] and normalized == core:
                kind = WORD
        self.kind[cp] = kind
        if kind == ALONE:
            self.first[cp] = self.vocab.get(core, self.unk_id)
        elif kind == WORD:
            self.first[cp] = self.vocab.get(core, -1)
            self.cont[cp] = self.vocab.get("##" + core, -1)


def _fast_char_encode(
    table: _CharTable, text: str, doc_chars: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """WordPiece over a single-character vocabulary, vectorised over the joined documents. Returns ids, starts,
    ends and the indices of documents with a COMPLEX character, which produce no tokens here (the caller encodes
    them with the reference tokenizer). Run logic touches word characters only: Chinese text has few."""
    cps = codepoints(text)
    table.ensure(cps)
    kind = table.kind[cps]
    complex_positions = np.flatnonzero(kind == COMPLEX)
    complex_docs = np.unique(np.searchsorted(doc_chars, complex_positions, side="right") - 1)
    if complex_docs.size:
        kind = kind.copy()
        for doc in complex_docs.tolist():
            kind[doc_chars[doc] : doc_chars[doc + 1]] = SPACE
    positions = None  # index -> position in text, when removed characters were dropped
    removed = kind == REMOVED
    if removed.any():  # removed characters join their neighbours (BERT clean_text)
        positions = np.flatnonzero(~removed)
        kind, cps = kind[positions], cps[positions]
    ids = table.first[cps]
    keep = (kind == ALONE) | (kind == WORD)
    word_at = np.flatnonzero(kind == WORD)
    unk_runs = None
    if word_at.size:
        is_cont = np.zeros(word_at.size, dtype=bool)  # the previous kept character is a word character too
        is_cont[1:] = word_at[1:] - 1 == word_at[:-1]
        ids[word_at[is_cont]] = table.cont[cps[word_at[is_cont]]]
        run_id = np.cumsum(~is_cont) - 1
        num_runs = int(run_id[-1]) + 1
        # a run (a BERT "word") becomes one [UNK] if any piece is missing or it is longer than MAX_WORD_CHARS
        bad_run = np.zeros(num_runs, dtype=bool)
        bad_run[run_id[ids[word_at] < 0]] = True
        bad_run |= np.bincount(run_id, minlength=num_runs) > MAX_WORD_CHARS
        if bad_run.any():
            in_bad = bad_run[run_id]
            ids[word_at[in_bad & ~is_cont]] = table.unk_id
            keep[word_at[in_bad & is_cont]] = False
            run_last = np.zeros(num_runs, dtype=np.int64)
            run_last[run_id] = word_at  # last write wins: the run's last character
            unk_runs = (word_at[in_bad & ~is_cont], run_last[run_id[in_bad & ~is_cont]])
    token_at = np.flatnonzero(keep)
    ends_at = token_at.copy()
    if unk_runs is not None:  # an [UNK] spans its whole run
        ends_at[np.searchsorted(token_at, unk_runs[0])] = unk_runs[1]
    if positions is not None:
        starts, ends = positions[token_at], positions[ends_at] + 1
    else:
        starts, ends = token_at, ends_at + 1
    return ids[token_at].astype(np.int64), starts, ends, complex_docs
