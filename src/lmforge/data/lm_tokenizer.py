"""``LMTokenizer``: the one tokenizer interface of the data pipeline and the training engine, its saved form and
``load_tokenizer``.

``encode_batch`` returns the ids of several documents with the character span of every token (``EncodedBatch``),
through the ``char`` fast path (``char_table.py``), the codepoint arithmetic, or ``tokenizers``. ``save`` writes a
directory that ``transformers`` loads plus ``lmforge_tokenizer.json`` (kind, special ids, options, fingerprint);
the fingerprint hashes what decides the ids (vocabulary, merges, normalizer, pre-tokenizer). ``load_tokenizer``
(``tokenizer_load.py``, importable from here) treats that file as untrusted input: unknown fields, wrong JSON types
and a fingerprint that does not match the files are ``ValueError``. A directory without it is imported as a Hugging
Face tokenizer (``tokenizer_import.py``: kinds ``hf_json``, ``wordpiece``, ``byte_bpe``, ``sentencepiece``, special
ids anywhere, mask and pad optional).

Deviations: text that happens to spell a special token (``"[MASK]"``) is encoded as ordinary text, not as the
special (``encode_special_tokens``), so raw data can never inject specials. Codepoint ids that collide with the
specials (NUL, U+E000..U+E004) are encoded as U+FFFD. ``decode`` of ``char`` drops whitespace except between two
Latin/digit words, since WordPiece does not keep it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.data.char_table import _CharTable, _fast_char_encode

# Reading a saved directory back lives in tokenizer_load.py; its names stay importable from here.
from lmforge.data.tokenizer_load import _META_TYPES as _META_TYPES
from lmforge.data.tokenizer_load import _check_fingerprint as _check_fingerprint
from lmforge.data.tokenizer_load import _read_meta as _read_meta
from lmforge.data.tokenizer_load import load_tokenizer as load_tokenizer
from lmforge.data.tokenizer_load import read_json_object as read_json_object
from lmforge.data.tokenizer_spec import (
    CODEPOINT_NAMES,
    CODEPOINT_RANDOM_RANGE,
    CODEPOINT_SPECIALS,
    FORMAT_VERSION,
    IMPORTED_KINDS,
    KINDS,
    META_FILE,
    NUM_CODEPOINTS,
    TokenizerKind,
    _is_cjk,
    codepoints,
    is_encodable,
)


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


class LMTokenizer:
    """One tokenizer interface for the data pipeline and the training engine.

    ``encode`` never adds special tokens; sequence builders add [CLS]/[SEP] (MLM) or EOS (CLM) themselves.
    ``source`` says in words what was loaded (``"vocab.txt (WordPiece, lowercase)"``). Imported tokenizers
    (``tokenizer_import.py``) keep their special ids wherever they are, may lack a mask token (``mask_token_id``
    None: only masked-LM refuses them, ``require_mask_token_id``) and pad with unk, then eos, when they have no pad
    token (``pad_token_fallback`` names the role used). ``files`` holds their original files for ``save``.
    """

    def __init__(
        self,
        kind: TokenizerKind | str,
        *,
        backend=None,
        special_tokens: dict[str, str] | None = None,
        options: dict | None = None,
        source: str | None = None,
        files: dict[str, bytes] | None = None,
    ) -> None:
        if kind not in KINDS + IMPORTED_KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}; choose from {KINDS + IMPORTED_KINDS}")
        self.kind: str = kind
        self.backend = backend
        self.options: dict = dict(options or {})
        self.special_tokens: dict[str, str] = dict(special_tokens or {})
        self.source: str = source or f"lmforge {kind} tokenizer"
        self.files: dict[str, bytes] = dict(files or {})
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
            if kind in KINDS and sorted(ids.values()) != list(range(len(ids))):
                raise ValueError(f"special tokens must take the first ids 0..{len(ids) - 1}, got {ids}")
            if kind in IMPORTED_KINDS:
                self.vocab_size = max(self.vocab_size, max(backend.get_vocab(with_added_tokens=True).values()) + 1)
        self.special_token_ids: dict[str, int] = ids
        # Padding positions are neither attended nor predicted, so any id works; unk before eos because models
        # that make pad their embedding's padding_idx then freeze a rare token, not the document separator.
        self.pad_token_fallback: str | None = None  # the role padding uses when there is no pad token
        if "pad" not in ids:
            self.pad_token_fallback = next((role for role in ("unk", "eos") if role in ids), None)
            if self.pad_token_fallback is None:
                raise ValueError(f"the {self.source} tokenizer has no pad, unk or eos token to pad with; name one")
        self.pad_token_id: int = ids[self.pad_token_fallback or "pad"]
        self.mask_token_id: int | None = ids.get("mask")
        self.cls_token_id: int | None = ids.get("cls", ids.get("bos"))
        self.sep_token_id: int | None = ids.get("sep", ids.get("eos"))
        self.bos_token_id: int | None = ids.get("bos")
        self.eos_token_id: int | None = ids.get("eos")
        self.unk_token_id: int | None = ids.get("unk")
        # Named specials plus the backend's other special tokens (additional_special_tokens, sentencepiece controls).
        self.all_special_ids: frozenset[int] = frozenset(ids.values()) | _backend_special_ids(backend)
        if kind == "codepoint":
            self.random_token_range: tuple[int, int] = CODEPOINT_RANDOM_RANGE
        elif kind in KINDS:
            self.random_token_range = (len(ids), self.vocab_size)
        else:  # specials anywhere: draw from every id; the masking skips all_special_ids inside the range
            self.random_token_range = (0, self.vocab_size)
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
    def document_separator_id(self) -> int | None:
        """Token placed after every document of a CLM stream: EOS, or [SEP] for tokenizers without EOS."""
        return self.eos_token_id if self.eos_token_id is not None else self.sep_token_id

    def require_mask_token_id(self) -> int:
        """``mask_token_id``, or a ``ValueError`` for tokenizers without one (GPT-2, most sentencepiece models)."""
        return require_mask_token_id(self)

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
            bad = next((text for text in texts if not is_encodable(text)), None)
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
        if self.kind == "bpe" or self.kind in IMPORTED_KINDS:
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
        if self.kind in IMPORTED_KINDS:  # the original files byte for byte (tokenizer_import.py)
            for name, data in self.files.items():
                (path / name).write_bytes(data)
            _write_json(path / META_FILE, self._meta())
            return path
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
        _write_json(path / META_FILE, self._meta())
        return path

    def _meta(self) -> dict:
        return {
            "format": "lmforge.tokenizer",
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "vocab_size": self.vocab_size,
            "special_tokens": self.special_tokens,
            "special_token_ids": self.special_token_ids,
            "options": self.options,
        }


def require_mask_token_id(tokenizer) -> int:
    """The mask id of any tokenizer-like object, or the one-line ``ValueError`` masked-LM gives without one."""
    if tokenizer.mask_token_id is None:
        raise ValueError(
            f"masked-LM needs a mask token but the tokenizer ({getattr(tokenizer, 'source', 'given')}) has none; "
            "use a causal objective (--objective clm) or a tokenizer with a mask token (mask_token in "
            "tokenizer_config.json)"
        )
    return int(tokenizer.mask_token_id)


def _is_word_piece(char: str) -> bool:
    return char.isalnum() and not _is_cjk(ord(char))


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _backend_special_ids(backend) -> frozenset[int]:
    if backend is None:
        return frozenset()
    if hasattr(backend, "special_ids"):  # sentencepiece_backend.SentencePieceBackend
        return frozenset(backend.special_ids())
    return frozenset(i for i, token in backend.get_added_tokens_decoder().items() if token.special)


def _fingerprint(kind: str, backend) -> str:
    """Hash of everything that decides the ids: vocabulary in id order, merges, normalizer and pre-tokenizer (for
    sentencepiece: the model file, which holds all of them)."""
    if backend is None:
        content = {"kind": kind, "specials": CODEPOINT_SPECIALS}
    elif kind == "sentencepiece":
        content = {"kind": kind, "model_sha256": hashlib.sha256(backend.model_bytes).hexdigest()}
    else:
        spec = json.loads(backend.to_str())
        model = spec["model"]
        vocab = model.get("vocab", {})
        merges = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model.get("merges", [])]
        content = {
            "kind": kind,
            "model": model.get("type"),
            "vocab": sorted(vocab, key=vocab.__getitem__) if isinstance(vocab, dict) else vocab,  # Unigram: list
            "merges": merges,
            "added": sorted((t["id"], t["content"]) for t in spec.get("added_tokens", [])),
            "normalizer": spec.get("normalizer"),
            "pre_tokenizer": spec.get("pre_tokenizer"),
        }
        if kind in IMPORTED_KINDS:  # any model's options (byte_fallback, unk_token, ...) decide ids too
            content["model_options"] = {k: v for k, v in model.items() if k not in ("vocab", "merges")}
    blob = json.dumps(content, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]
