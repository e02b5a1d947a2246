"""``lmforge prepare tokenizer``: build a tokenizer from the corpus (char, byte-level BPE, codepoints) or import a
local one (``tokenizer_import.py``). ``lmforge.data.prepare`` re-exports it."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lmforge.data.errors import PrepareError
from lmforge.data.stage import _as_list, _check_output_dir

__all__ = ["DEFAULT_VOCAB_SIZE", "TokenizerArgs", "prepare_tokenizer"]

DEFAULT_VOCAB_SIZE = {"char": 21128, "bpe": 32000}  # bert-base-chinese's vocabulary size for char


@dataclass(kw_only=True)
class TokenizerArgs:
    input: list[str] | str | None = None
    """The corpus: a 'prepare corpus' directory or jsonl files (not read with --tokenizer_name)."""
    output_dir: str
    """Directory for the tokenizer (loadable by transformers.AutoTokenizer and lmforge load_tokenizer)."""
    tokenizer_name: str | None = None
    """Import this local tokenizer directory instead of building one: Hugging Face (tokenizer.json, vocab.txt,
    vocab.json + merges.txt or a sentencepiece .model) or lmforge. A hub id is an error: nothing is downloaded."""
    tokenizer: Literal["char", "bpe", "codepoint"] = "char"
    """char: BERT vocab.txt of characters; bpe: byte-level BPE; codepoint: CANINE codepoints (no training)."""
    vocab_size: int | None = None
    """Upper bound on the vocabulary size (default 21128 for char, 32000 for bpe)."""
    min_frequency: int = 2
    """Characters (char) or merges (bpe) seen fewer times are left out."""
    lowercase: bool = True
    """char: lower-case and strip accents as bert-base-chinese does."""
    cjk_continuations: bool = True
    """char: add '##X' entries for CJK characters too (bert-base-chinese layout, whole-word marks representable);
    false nearly halves the vocabulary of a Chinese corpus."""
    cjk_piece_length: int = 2
    """bpe: Han runs are pre-split into pieces of at most this many characters (bounds trainer memory)."""
    text_field: str = "text"
    """Field holding the text in the jsonl files."""
    max_train_mb: float | None = None
    """Train on at most this many MB of text (the ingest output is shuffled, so a prefix is a sample)."""


def prepare_tokenizer(args: TokenizerArgs) -> Path:
    """Build a tokenizer from the corpus (or import ``tokenizer_name``) and save it; returns its directory."""
    from lmforge.data.corpus_reader import corpus_codepoint_counts, corpus_files, iter_texts
    from lmforge.data.tokenizer import KINDS, build_tokenizer

    if args.tokenizer_name is not None:
        return _import_tokenizer(args.tokenizer_name, args.output_dir)
    if args.input is None:
        raise PrepareError("pass --input (the corpus to build a tokenizer from) or --tokenizer_name (one to import)")
    if args.tokenizer not in KINDS:
        raise PrepareError(f"unknown tokenizer {args.tokenizer!r}; choose from {KINDS}")
    if args.vocab_size is not None and args.vocab_size < 1:
        raise PrepareError(f"vocab_size must be positive, got {args.vocab_size}")
    if args.min_frequency < 1:
        raise PrepareError(f"min_frequency must be >= 1, got {args.min_frequency}")
    started = time.perf_counter()
    inputs = _as_list(args.input)
    texts = iter_texts(corpus_files(inputs), text_field=args.text_field)
    if args.max_train_mb is not None:
        texts = _take_chars(texts, int(args.max_train_mb * 1e6 / 3))  # ~3 UTF-8 bytes per Chinese character
    counts = None
    if args.tokenizer == "char" and args.max_train_mb is None and args.text_field == "text" and len(inputs) == 1:
        counts = corpus_codepoint_counts(inputs[0])  # saved by 'prepare corpus': no second pass over the text
        if counts is not None and not counts.any():
            raise PrepareError(f"no text to build a tokenizer from in {inputs}")
    _check_output_dir(args.output_dir)
    if counts is None and args.tokenizer != "codepoint":
        first = next(texts, None)
        if first is None:
            raise PrepareError(f"no text to build a tokenizer from in {inputs}")
        texts = itertools.chain([first], texts)
    tokenizer = build_tokenizer(
        args.tokenizer,
        None if counts is not None else texts,
        codepoint_counts=counts,
        vocab_size=args.vocab_size or DEFAULT_VOCAB_SIZE.get(args.tokenizer),
        min_frequency=args.min_frequency,
        lowercase=args.lowercase,
        cjk_continuations=args.cjk_continuations,
        cjk_piece_length=args.cjk_piece_length,
    )
    path = tokenizer.save(args.output_dir)
    source = "the corpus histogram" if counts is not None else "the text"
    print(
        f"tokenizer: {tokenizer.kind} from {source}, {tokenizer.vocab_size} ids, fingerprint {tokenizer.fingerprint} "
        f"({time.perf_counter() - started:.1f} s) -> {path}"
    )
    return path


def _import_tokenizer(name: str, output_dir: str) -> Path:
    from lmforge.data.tokenizer_import import load_named_tokenizer

    started = time.perf_counter()
    tokenizer = load_named_tokenizer(name)
    _check_output_dir(output_dir)
    path = tokenizer.save(output_dir)
    print(
        f"tokenizer: imported {tokenizer.source} from {name}, {tokenizer.vocab_size} ids, fingerprint "
        f"{tokenizer.fingerprint} ({time.perf_counter() - started:.1f} s) -> {path}"
    )
    return path


def _take_chars(texts, limit: int):
    total = 0
    for text in texts:
        if total >= limit:
            return
        total += len(text)
        yield text
