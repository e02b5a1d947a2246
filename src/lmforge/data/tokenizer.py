"""Tokenizers: a Chinese character vocabulary, byte-level BPE and a codepoint tokenizer, behind one small class.

Three kinds, all built here from a corpus and saved in a directory that ``transformers`` loads:

* ``char``: a BERT ``vocab.txt`` of single characters chosen by frequency plus ``##X`` continuation entries
  (bert-base-chinese layout, so PaddleNLP-style whole-word marks ``北 ##京`` are representable and WordPiece can
  spell any Latin word of known letters). The ``tokenizers`` pipeline is BERT's (BertNormalizer, BertPreTokenizer,
  WordPiece); ``BertTokenizerFast.from_pretrained`` / ``AutoTokenizer`` load it.
* ``bpe``: byte-level BPE trained with ``tokenizers``. Chinese has no spaces, so GPT-2's pre-split regex turns a
  whole paragraph into one "word" and training memory explodes (huggingface/tokenizers#1395, #422, #994); we
  pre-split Han runs into pieces of at most ``cjk_piece_length`` characters, which bounds the trainer's word table.
  Loadable with ``PreTrainedTokenizerFast`` / ``AutoTokenizer``.
* ``codepoint``: CANINE's tokenizer-free input (google-research/language ``canine``; HF ``CanineTokenizer``): the
  id is the Unicode codepoint, specials live in the private-use area (PAD 0, CLS 0xE000, SEP 0xE001, BOS 0xE002,
  MASK 0xE003, RESERVED 0xE004). The saved ``tokenizer_config.json`` names ``CanineTokenizer``.

Every directory also holds ``lmforge_tokenizer.json`` (kind, special ids, options and a fingerprint). The
fingerprint hashes what decides the ids (vocabulary, merges, normalizer, pre-tokenizer), is copied into every
shard index and checked before training (architectures.md §2 note 5: refs silently pointed to wrong tokens when
the tokenizer differed between preprocessing and training).

Fast path (style R5): BERT's normalizer + pre-tokenizer + WordPiece cost ~1.3 us per character in ``tokenizers``
(2-3 MB/s of Chinese on one core, ~7x slower than rjieba). For a vocabulary of single characters WordPiece reduces
to a table lookup, so ``char`` encodes with numpy: each codepoint is classified once by *asking the tokenizers
normalizer and pre-tokenizer* (removed / space / stand-alone / word character / complex) and runs of word
characters are spelled ``c ##c ##c`` or become one [UNK]. Documents with a "complex" character (a normalisation
that yields several characters, e.g. Hangul under NFD) go through ``tokenizers``. Tests assert fast == reference.

Deviations: text that happens to spell a special token (``"[MASK]"``) is encoded as ordinary text, not as the
special (``encode_special_tokens``), so raw data can never inject specials. Codepoint ids that collide with the
specials (NUL, U+E000..U+E004) are encoded as U+FFFD. ``decode`` of ``char`` drops whitespace except between two
Latin/digit words, since WordPiece does not keep it.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

TokenizerKind = Literal["char", "bpe", "codepoint"]
KINDS: tuple[str, ...] = ("char", "bpe", "codepoint")
META_FILE = "lmforge_tokenizer.json"
FORMAT_VERSION = 1
NUM_CODEPOINTS = 0x110000

# Token strings of the special tokens, in id order (ids 0..4 for char and bpe).
CHAR_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
CHAR_SPECIALS_IDS = {token: i for i, token in enumerate(CHAR_SPECIALS.values())}
BPE_SPECIALS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "mask": "<mask>", "unk": "<unk>"}
# CANINE (HF CanineTokenizer / language/canine/special_codepoints.py).
CODEPOINT_SPECIALS = {"pad": 0, "cls": 0xE000, "sep": 0xE001, "bos": 0xE002, "mask": 0xE003, "reserved": 0xE004}
CODEPOINT_NAMES = {
    0: "[PAD]",
    0xE000: "[CLS]",
    0xE001: "[SEP]",
    0xE002: "[BOS]",
    0xE003: "[MASK]",
    0xE004: "[RESERVED]",
}
# Random replacement ids for codepoint MLM: uniform over 1.1M codepoints is mostly unassigned, so we draw from the
# CJK Unified Ideographs block (the bulk of Chinese text).
CODEPOINT_RANDOM_RANGE = (0x4E00, 0xA000)
# WordPiece's max_input_chars_per_word (BERT default): longer words become one [UNK].
MAX_WORD_CHARS = 100
# Printable ASCII always enters the char vocabulary: digits and Latin letters show up in fine-tuning data even
# when the pretraining corpus is pure Chinese.
ASCII_PRINTABLE = [chr(c) for c in range(0x21, 0x7F)]


@dataclass(frozen=True)
class EncodedBatch:
    """Token ids of several documents, concatenated, with the character span of every token.

    Positions count characters of ``"\\n".join(texts)``; ``doc_tokens[i]:doc_tokens[i+1]`` are document i's tokens
    and ``doc_chars[i]`` is where document i starts in the joined text.
    """

    ids: np.ndarray  # (N,) int64
    starts: np.ndarray  # (N,) int64, first character of each token
    ends: np.ndarray  # (N,) int64, one past the last character
    doc_tokens: np.ndarray  # (D+1,) int64
    doc_chars: np.ndarray  # (D+1,) int64


def _doc_char_offsets(texts: Sequence[str]) -> np.ndarray:
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=offsets[1:])  # +1 for the "\n" separator
    return offsets


def codepoints(text: str) -> np.ndarray:
    """The codepoints of ``text`` as uint32 (lone surrogates pass through)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


# --------------------------------------------------------------------------------------------------------------
# char fast path: a per-codepoint table filled lazily by probing the tokenizers normalizer and pre-tokenizer

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


# --------------------------------------------------------------------------------------------------------------


class LMTokenizer:
    """One tokenizer interface for the data pipeline and the training engine.

    ``encode`` never adds special tokens; sequence builders add [CLS]/[SEP] (MLM) or EOS (CLM) themselves.
    """

    def __init__(
        self,
        kind: TokenizerKind,
        *,
        backend=None,
        special_tokens: dict[str, str] | None = None,
        options: dict | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}; choose from {KINDS}")
        self.kind: str = kind
        self.backend = backend
        self.options: dict = dict(options or {})
        self.special_tokens: dict[str, str] = dict(special_tokens or {})
        self._table: _CharTable | None = None
        if kind == "codepoint":
            ids = dict(CODEPOINT_SPECIALS)
            self.vocab_size = NUM_CODEPOINTS
            self.special_tokens = {name: CODEPOINT_NAMES[i] for name, i in ids.items()}
        else:
            if backend is None:
                raise ValueError(f"a {kind!r} tokenizer needs a tokenizers.Tokenizer backend")
            backend.encode_special_tokens = True  # raw text spelling "[MASK]" stays text (see module docstring)
            self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
            ids = {}
            for name, token in self.special_tokens.items():
                token_id = backend.token_to_id(token)
                if token_id is None:
                    raise ValueError(f"special token {token!r} ({name}) is not in the vocabulary")
                ids[name] = token_id
            if sorted(ids.values()) != list(range(len(ids))):
                raise ValueError(f"special tokens must take the first ids 0..{len(ids) - 1}, got {ids}")
        self.special_token_ids: dict[str, int] = ids
        self.pad_token_id: int = ids["pad"]
        self.mask_token_id: int = ids["mask"]
        self.cls_token_id: int = ids.get("cls", ids.get("bos"))
        self.sep_token_id: int = ids.get("sep", ids.get("eos"))
        self.bos_token_id: int | None = ids.get("bos")
        self.eos_token_id: int | None = ids.get("eos")
        self.unk_token_id: int | None = ids.get("unk")
        self.all_special_ids: frozenset[int] = frozenset(ids.values())
        if kind == "codepoint":
            self.random_token_range: tuple[int, int] = CODEPOINT_RANDOM_RANGE
        else:
            self.random_token_range = (len(ids), self.vocab_size)
        self.fingerprint: str = _fingerprint(kind, backend)
        if kind == "char":
            vocab = backend.get_vocab(with_added_tokens=True)
            specials = set(self.special_tokens.values())
            if all(len(t) == 1 or (t.startswith("##") and len(t) == 3) for t in vocab if t not in specials):
                self._table = _CharTable(backend, vocab, self.unk_token_id)
                self._table.fill_unified_ideographs()

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"LMTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, fingerprint={self.fingerprint!r})"

    @property
    def document_separator_id(self) -> int:
        """Token placed after every document of a CLM stream: EOS, or [SEP] for tokenizers without EOS."""
        return self.eos_token_id if self.eos_token_id is not None else self.sep_token_id

    # ---- encoding ---------------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return self.encode_batch([text]).ids.tolist()

    def encode_batch(self, texts: Sequence[str]) -> EncodedBatch:
        """Encode several documents at once; the fast paths work on ``"\\n".join(texts)`` in one numpy pass."""
        texts = list(texts)
        doc_chars = _doc_char_offsets(texts)
        if self.kind == "codepoint":
            cps = codepoints("\n".join(texts)).astype(np.int64)
            keep = np.ones(cps.size, dtype=bool)
            keep[doc_chars[1:-1] - 1] = False  # the separators
            starts = np.flatnonzero(keep)
            ids = cps[keep]
            collide = (ids == 0) | ((ids >= 0xE000) & (ids <= 0xE004))
            ids[collide] = 0xFFFD
            return self._finish(ids, starts, starts + 1, doc_chars)
        if self._table is not None:
            ids, starts, ends, docs = _fast_char_encode(self._table, "\n".join(texts), doc_chars)
            if docs.size:
                ref = self._reference_encode([texts[d] for d in docs.tolist()], doc_chars[docs])
                ids, starts, ends = (np.concatenate(pair) for pair in zip((ids, starts, ends), ref))
                order = np.argsort(starts, kind="stable")
                ids, starts, ends = ids[order], starts[order], ends[order]
            return self._finish(ids, starts, ends, doc_chars)
        ids, starts, ends = self._reference_encode(texts, doc_chars[:-1])
        return self._finish(ids, starts, ends, doc_chars)

    def reference_encode_batch(self, texts: Sequence[str]) -> EncodedBatch:
        """``encode_batch`` through ``tokenizers`` only (the reference for the fast paths)."""
        if self.backend is None:
            return self.encode_batch(texts)
        doc_chars = _doc_char_offsets(list(texts))
        return self._finish(*self._reference_encode(list(texts), doc_chars[:-1]), doc_chars)

    def _reference_encode(self, texts: list[str], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        try:
            encodings = self.backend.encode_batch(texts, add_special_tokens=False)
        except TypeError:  # the Rust binding's only message for a lone surrogate (from a JSON "\ud800" escape)
            bad = next((text for text in texts if not _utf8_encodable(text)), None)
            if bad is None:
                raise
            at = next(i for i, char in enumerate(bad) if 0xD800 <= ord(char) < 0xE000)
            raise ValueError(
                f"cannot tokenize a text with a lone surrogate (U+{ord(bad[at]):04X} at character {at}: not valid "
                "Unicode, no UTF-8 form); clean the input (lmforge prepare corpus drops such documents as invalid_utf8)"
            ) from None
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        spans = [np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2) + off for e, off in zip(encodings, offsets)]
        if not ids:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        span = np.concatenate(spans)
        return np.concatenate(ids), span[:, 0].copy(), span[:, 1].copy()

    def _finish(self, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, doc_chars: np.ndarray) -> EncodedBatch:
        doc_tokens = np.searchsorted(starts, doc_chars, side="left").astype(np.int64)
        doc_tokens[-1] = ids.size
        return EncodedBatch(ids, starts, ends, doc_tokens, doc_chars)

    # ---- decoding ---------------------------------------------------------------------------------------------

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        if self.kind == "codepoint":
            return [CODEPOINT_NAMES.get(i) or chr(i) for i in ids]
        return [self.backend.id_to_token(i) for i in ids]

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.all_special_ids]
        if self.kind == "bpe":
            return self.backend.decode(ids, skip_special_tokens=False)
        tokens = self.convert_ids_to_tokens(ids)
        if self.kind == "codepoint":
            return "".join(tokens)
        specials = set(self.special_tokens.values())
        out: list[str] = []
        for token in tokens:
            if token.startswith("##") and len(token) > 2:
                out.append(token[2:])
                continue
            if out and _is_word_piece(out[-1][-1]) and _is_word_piece(token[0]) and token not in specials:
                out.append(" ")  # two WordPiece words were separated by whitespace
            out.append(token)
        return "".join(out)

    # ---- persistence ------------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer so that ``load_tokenizer`` and ``transformers.AutoTokenizer`` both read it."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        specials_map = {f"{name}_token": token for name, token in self.special_tokens.items() if name != "reserved"}
        if self.kind == "char":
            vocab = self.backend.get_vocab(with_added_tokens=True)
            tokens = sorted(vocab, key=vocab.__getitem__)
            (path / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
            config = {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": bool(self.options.get("lowercase", True)),
                "tokenize_chinese_chars": True,
                "strip_accents": None,
                "clean_up_tokenization_spaces": False,
                **specials_map,
            }
        elif self.kind == "bpe":
            config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
            config.update(specials_map)
        else:
            config = {"tokenizer_class": "CanineTokenizer", "model_max_length": 2048}
        if self.backend is not None:
            self.backend.encode_special_tokens = False  # the saved file behaves like any HF tokenizer
            try:
                self.backend.save(str(path / "tokenizer.json"))
            finally:
                self.backend.encode_special_tokens = True
            _write_json(path / "special_tokens_map.json", specials_map)
        _write_json(path / "tokenizer_config.json", config)
        meta = {
            "format": "lmforge.tokenizer",
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "vocab_size": self.vocab_size,
            "special_tokens": self.special_tokens,
            "special_token_ids": self.special_token_ids,
            "options": self.options,
        }
        _write_json(path / META_FILE, meta)
        return path


def _is_word_piece(char: str) -> bool:
    return char.isalnum() and not _is_cjk(ord(char))


def _is_cjk(cp: int) -> bool:
    # BERT's _is_chinese_char ranges
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _fingerprint(kind: str, backend) -> str:
    """Hash of everything that decides the ids: vocabulary in id order, merges, normalizer and pre-tokenizer."""
    if backend is None:
        content = {"kind": kind, "specials": CODEPOINT_SPECIALS}
    else:
        spec = json.loads(backend.to_str())
        model = spec["model"]
        vocab = model.get("vocab", {})
        merges = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model.get("merges", [])]
        content = {
            "kind": kind,
            "model": model.get("type"),
            "vocab": sorted(vocab, key=vocab.__getitem__),
            "merges": merges,
            "added": sorted((t["id"], t["content"]) for t in spec.get("added_tokens", [])),
            "normalizer": spec.get("normalizer"),
            "pre_tokenizer": spec.get("pre_tokenizer"),
        }
    blob = json.dumps(content, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


# The fields of lmforge_tokenizer.json and their JSON types: the file is untrusted input, anything else is rejected.
_META_TYPES: dict[str, type] = {
    "format": str,
    "version": int,
    "kind": str,
    "fingerprint": str,
    "vocab_size": int,
    "special_tokens": dict,
    "special_token_ids": dict,
    "options": dict,
}


def _read_meta(meta_path: Path) -> dict:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{meta_path} is not valid UTF-8 JSON: {error}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path} must hold a JSON object, got {type(meta).__name__}")
    unknown = sorted(set(meta) - set(_META_TYPES))
    if unknown:
        raise ValueError(f"{meta_path} has unexpected fields {unknown}; expected only {sorted(_META_TYPES)}")
    for key, value in meta.items():
        expected = _META_TYPES[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"{meta_path}: {key!r} must be a JSON {expected.__name__}, got {value!r}")
    for key in ("special_tokens", "special_token_ids"):
        wanted = str if key == "special_tokens" else int
        for name, value in meta.get(key, {}).items():
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise ValueError(f"{meta_path}: {key}[{name!r}] must be a {wanted.__name__}, got {value!r}")
    return meta


def load_tokenizer(path: str | Path) -> LMTokenizer:
    """Load a tokenizer directory written by ``LMTokenizer.save`` (``prepare tokenizer``)."""
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        hint = f"; did you mean {path / 'tokenizer'}?" if (path / "tokenizer" / META_FILE).is_file() else ""
        raise ValueError(f"no tokenizer at {str(path)!r}: {META_FILE} is missing{hint}")
    meta = _read_meta(meta_path)
    kind = meta.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{meta_path}: unknown tokenizer kind {kind!r}")
    backend = None
    if kind != "codepoint":
        from tokenizers import Tokenizer

        try:
            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as error:  # the Rust library raises a bare Exception for unreadable/invalid files
            raise ValueError(f"cannot read {path / 'tokenizer.json'}: {error}") from None
    tokenizer = LMTokenizer(
        kind, backend=backend, special_tokens=meta.get("special_tokens"), options=meta.get("options")
    )
    if meta.get("fingerprint") != tokenizer.fingerprint:
        raise ValueError(
            f"tokenizer at {str(path)!r} was modified after it was built: fingerprint {tokenizer.fingerprint} "
            f"!= {meta.get('fingerprint')} recorded in {META_FILE}; rebuild it with 'lmforge prepare tokenizer'"
        )
    return tokenizer


# --------------------------------------------------------------------------------------------------------------
# building


def _bert_backend(vocab: dict[str, int], *, lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    backend = Tokenizer(
        models.WordPiece(vocab, unk_token=CHAR_SPECIALS["unk"], max_input_chars_per_word=MAX_WORD_CHARS)
    )
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = CHAR_SPECIALS["cls"], CHAR_SPECIALS["sep"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens(list(CHAR_SPECIALS.values()))
    return backend


def _batches(texts: Iterable[str], max_chars: int = 1 << 20) -> Iterable[list[str]]:
    batch: list[str] = []
    size = 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def build_char_tokenizer(
    texts: Iterable[str] | None = None,
    *,
    codepoint_counts: np.ndarray | None = None,
    vocab_size: int = 21128,
    min_frequency: int = 2,
    lowercase: bool = True,
    cjk_continuations: bool = True,
) -> LMTokenizer:
    """A BERT vocabulary of single characters by frequency (ties by codepoint), within ``vocab_size`` entries.

    Each kept character costs one entry, plus one ``##`` entry when it can continue a word: letters and digits
    always, CJK characters too when ``cjk_continuations`` (bert-base-chinese layout); punctuation never.
    ``codepoint_counts`` (a histogram over all codepoints, e.g. the one ``prepare corpus`` saves) replaces ``texts``.
    """
    if vocab_size < len(CHAR_SPECIALS) + 1:
        raise ValueError(f"vocab_size must be > {len(CHAR_SPECIALS)} for a char tokenizer, got {vocab_size}")
    # Count raw codepoints with bincount, then normalise each distinct codepoint once: BERT's normalizer works
    # character by character, so counts of normalised characters are exact.
    if codepoint_counts is not None:
        counts = np.asarray(codepoint_counts, dtype=np.int64)
    else:
        counts = np.zeros(NUM_CODEPOINTS, dtype=np.int64)
        for batch in _batches(texts or []):
            counts += np.bincount(codepoints("\n".join(batch)), minlength=NUM_CODEPOINTS)
    probe = _bert_backend(dict(CHAR_SPECIALS_IDS), lowercase=lowercase)
    normalized_counts: dict[str, int] = {}
    for cp in np.flatnonzero(counts).tolist():
        if 0xD800 <= cp < 0xE000:
            continue
        for char in probe.normalizer.normalize_str(chr(cp)):
            if not char.isspace():
                normalized_counts[char] = normalized_counts.get(char, 0) + int(counts[cp])
    chosen: list[str] = []
    continuations: list[str] = []
    budget = vocab_size - len(CHAR_SPECIALS)
    required = [c for c in ASCII_PRINTABLE if probe.normalizer.normalize_str(c) == c]
    ranked = sorted(
        (c for c, n in normalized_counts.items() if n >= min_frequency and c not in required),
        key=lambda c: (-normalized_counts[c], ord(c)),
    )
    for char in required + ranked:
        words = [w for w, _ in probe.pre_tokenizer.pre_tokenize_str("a" + char + "a")]
        is_word_char = words == ["a" + char + "a"]
        is_cjk = _is_cjk(ord(char))
        needs_cont = cjk_continuations if is_cjk else is_word_char  # the normalizer isolates CJK characters
        cost = 1 + int(needs_cont)
        if cost > budget:
            if char in required:
                continue
            break
        budget -= cost
        chosen.append(char)
        if needs_cont:
            continuations.append("##" + char)
    vocab = dict(CHAR_SPECIALS_IDS)
    for token in chosen + continuations:
        vocab[token] = len(vocab)
    backend = _bert_backend(vocab, lowercase=lowercase)
    options = {"lowercase": lowercase, "cjk_continuations": cjk_continuations, "min_frequency": min_frequency}
    return LMTokenizer("char", backend=backend, special_tokens=CHAR_SPECIALS, options=options)


def bpe_pre_tokenizer(cjk_piece_length: int):
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(rf"\p{{Han}}{{1,{cjk_piece_length}}}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


def build_bpe_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 32000, min_frequency: int = 2, cjk_piece_length: int = 2
) -> LMTokenizer:
    """Byte-level BPE trained with ``tokenizers``; Han runs are pre-split into ``cjk_piece_length`` pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if cjk_piece_length < 1:
        raise ValueError(f"cjk_piece_length must be >= 1, got {cjk_piece_length}")
    if vocab_size < 256 + len(BPE_SPECIALS):
        raise ValueError(f"vocab_size must be >= {256 + len(BPE_SPECIALS)} for byte-level BPE, got {vocab_size}")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = bpe_pre_tokenizer(cjk_piece_length)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(BPE_SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    options = {"cjk_piece_length": cjk_piece_length, "min_frequency": min_frequency}
    return LMTokenizer("bpe", backend=backend, special_tokens=BPE_SPECIALS, options=options)


def build_codepoint_tokenizer() -> LMTokenizer:
    return LMTokenizer("codepoint")


def build_tokenizer(
    kind: str,
    texts: Iterable[str] | None,
    *,
    codepoint_counts: np.ndarray | None = None,
    vocab_size: int | None = None,
    min_frequency: int = 2,
    lowercase: bool = True,
    cjk_continuations: bool = True,
    cjk_piece_length: int = 2,
) -> LMTokenizer:
    """Build a tokenizer of ``kind`` from ``texts`` (ignored for ``codepoint``; ``char`` may use a histogram)."""
    if kind == "char":
        return build_char_tokenizer(
            texts,
            codepoint_counts=codepoint_counts,
            vocab_size=vocab_size or 21128,
            min_frequency=min_frequency,
            lowercase=lowercase,
            cjk_continuations=cjk_continuations,
        )
    if kind == "bpe":
        return build_bpe_tokenizer(
            texts, vocab_size=vocab_size or 32000, min_frequency=min_frequency, cjk_piece_length=cjk_piece_length
        )
    if kind == "codepoint":
        return build_codepoint_tokenizer()
    raise ValueError(f"unknown tokenizer kind {kind!r}; choose from {KINDS}")
