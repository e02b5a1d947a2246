"""The ``lmforge prepare`` stages: corpus -> tokenizer -> shards, and ``all`` for the three with defaults.

Each stage is an arguments dataclass (its fields are the flags, the attribute docstrings the ``--help``; the CLI
builds the parser with jsonargparse) and a function taking it. This module imports nothing heavy at top level so
``lmforge prepare --help`` stays fast; torch is never needed here.

Pipeline (architectures.md §2 "Notes on the Chinese pretraining pipeline"): ``trans_to_json.py`` -> our ingest
(``corpus.py``); ``run_chinese_ref.py`` (segment, tokenize, reference ids, one document at a time) -> our shard
stage, which segments and tokenizes batches of documents in ``num_proc`` processes and stores word-start flags
next to the token ids, so the training tokenizer and the whole-word boundaries cannot drift apart.

Output of ``prepare all --output_dir D``: ``D/corpus`` (jsonl + report.json), ``D/tokenizer`` (HF-loadable +
lmforge_tokenizer.json), ``D/shards/{train,validation}`` (bins + index.json) and ``D/prepare.json`` (arguments
and the reports of every stage).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

DEFAULT_VOCAB_SIZE = {"char": 21128, "bpe": 32000}  # bert-base-chinese's vocabulary size for char


@dataclass(kw_only=True)
class CorpusArgs:
    input: list[str] | str
    """Files and directories to read: .txt (or any text), .gz/.bz2/.xz, .jsonl/.json, .zip archives (read in
    place, no unzip). Directories are walked recursively in sorted order."""
    output_dir: str
    """Directory for the jsonl parts (part-00000.jsonl, ...) and report.json."""
    text_field: str = "text"
    """Field holding the text in .json/.jsonl inputs."""
    min_doc_length: int = 10
    """Documents with fewer characters (after stripping) are dropped (trans_to_json.py --min_doc_length)."""
    one_doc_per_line: bool = False
    """Every non-blank line of a text file is a document (else documents are separated by doc_separator lines)."""
    doc_separator: str = ""
    """A line equal to this (after strip) ends a document in text files; "" = a blank line."""
    normalize: bool = True
    """Unicode NFC normalisation (also maps CJK compatibility ideographs to the unified ones)."""
    dedup: bool = True
    """Drop exact duplicate documents (after normalisation), keeping the first seen."""
    shuffle: bool = True
    """Shuffle deterministically: source order by seed, then a shuffle buffer (memory stays bounded)."""
    shuffle_buffer: int = 10000
    """Documents held in the shuffle buffer (which also stops at 256 MB)."""
    seed: int = 42
    """Seed of the shuffle."""
    num_proc: int = 1
    """Processes reading sources in parallel (files and zip members are the unit of work)."""
    shard_size_mb: float = 64.0
    """Approximate size of each output jsonl part."""
    max_line_bytes: int = 4 << 20
    """Longer lines are skipped (counted as line_too_long) without ever being held in memory."""
    max_doc_chars: int = 1_000_000
    """Longer text documents are cut at a line boundary into several documents."""
    progress: bool = True
    """Show a progress bar with MB/s (only when stderr is a terminal)."""


def prepare_corpus(args: CorpusArgs) -> dict:
    """Ingest raw text into jsonl documents; returns the report (also in ``output_dir/report.json``)."""
    from lmforge.data.corpus import IngestOptions, ingest

    options = IngestOptions(
        text_field=args.text_field,
        min_doc_length=args.min_doc_length,
        one_doc_per_line=args.one_doc_per_line,
        doc_separator=args.doc_separator,
        normalize=args.normalize,
        max_line_bytes=args.max_line_bytes,
        max_doc_chars=args.max_doc_chars,
    )
    report = ingest(
        _as_list(args.input),
        args.output_dir,
        options=options,
        num_proc=args.num_proc,
        dedup=args.dedup,
        shuffle=args.shuffle,
        shuffle_buffer=args.shuffle_buffer,
        seed=args.seed,
        shard_size_mb=args.shard_size_mb,
        progress=args.progress,
    )
    skipped = ", ".join(f"{k} {v}" for k, v in report["skipped"].items()) or "none"
    files = ", ".join(f"{k} {v}" for k, v in report["files_skipped"].items()) or "none"
    print(
        f"corpus: {report['documents_out']}/{report['documents_in']} documents kept from {report['files_read']} files "
        f"({report['bytes_read'] / 1e6:.1f} MB, {report['mb_per_s']:.1f} MB/s); skipped documents: {skipped}; "
        f"skipped files: {files} -> {args.output_dir}"
    )
    return report


@dataclass(kw_only=True)
class TokenizerArgs:
    input: list[str] | str
    """The corpus: a 'prepare corpus' directory or jsonl files."""
    output_dir: str
    """Directory for the tokenizer (loadable by transformers.AutoTokenizer and lmforge load_tokenizer)."""
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
    """Build a tokenizer from the corpus and save it; returns its directory."""
    from lmforge.data.corpus import PrepareError, corpus_codepoint_counts, corpus_files, iter_texts
    from lmforge.data.tokenizer import KINDS, build_tokenizer

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


@dataclass(kw_only=True)
class ShardsArgs:
    input: list[str] | str
    """The corpus: a 'prepare corpus' directory or jsonl files."""
    tokenizer_path: str
    """A directory written by 'prepare tokenizer'; its fingerprint is stored in every shard index."""
    output_dir: str
    """Directory that receives train/ and validation/ (bin files + index.json)."""
    objective: Literal["mlm", "clm"] = "mlm"
    """mlm: one document per sequence, cut at word starts, with [CLS]/[SEP]; clm: documents + EOS in blocks."""
    max_seq_length: int = 512
    """mlm: longest sequence including [CLS] and [SEP]."""
    block_size: int = 1024
    """clm: tokens per block."""
    segmenter: Literal["rjieba", "jieba", "none"] = "rjieba"
    """Word segmentation for whole-word masking (none: characters and Latin words)."""
    validation_split_percentage: float = 5.0
    """Percentage of documents held out (by a seeded hash of the text) into validation/."""
    seed: int = 42
    """Seed of the validation split."""
    num_proc: int = 1
    """Processes segmenting and tokenizing batches of documents."""
    tokens_per_file: int = 1 << 25
    """Tokens per bin file (about 64 MB of uint16)."""
    text_field: str = "text"
    """Field holding the text in the jsonl files."""
    progress: bool = True
    """Show a progress bar with MB/s (only when stderr is a terminal)."""


# ---- shard workers (module level so worker processes can find them) ------------------------------------------

_WORKER: dict = {}


def _init_shard_worker(tokenizer_path: str, segmenter: str, text_field: str, fraction: float, seed: int) -> None:
    """Load the tokenizer once per process. The parent calls it before the pool forks, so forked workers inherit
    it (and rjieba's dictionary) instead of loading their own."""
    import multiprocessing
    import os

    if multiprocessing.parent_process() is not None:  # a pool worker: num_proc processes, not num_proc * threads
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    key = (tokenizer_path, segmenter, text_field, fraction, seed)
    if _WORKER.get("key") == key:
        return
    from lmforge.data.shards import token_dtype
    from lmforge.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    _WORKER.update(
        key=key,
        tokenizer=tokenizer,
        dtype=token_dtype(tokenizer.vocab_size),
        segmenter=segmenter,
        text_field=text_field,
        threshold=int(fraction * 2**64),
        hash_key=str(seed).encode()[:64],
    )


def _read_range(path: str, start: int, end: int) -> list[bytes]:
    """The lines of ``path`` whose first byte lies in [start, end)."""
    lines = []
    with open(path, "rb") as handle:
        position = start
        if start:
            handle.seek(start - 1)
            position += len(handle.readline()) - 1  # finish the line that started before ``start``
        while position < end:
            line = handle.readline()
            if not line:
                break
            lines.append(line)
            position += len(line)
    return lines


def _encode_range(task: tuple[str, int, int]) -> dict:
    """Read, parse, segment and tokenize the jsonl lines of one byte range (runs in a worker)."""
    import hashlib

    import numpy as np

    from lmforge.data.segment import token_word_starts, word_starts

    tokenizer, field = _WORKER["tokenizer"], _WORKER["text_field"]
    texts: list[str] = []
    encoded_texts: list[bytes] = []
    bad = 0
    for line in _read_range(*task):
        try:
            record = json.loads(line)
            text = record.get(field) if isinstance(record, dict) else None
            data = text.encode("utf-8") if isinstance(text, str) else None  # lone surrogates raise here
        except (ValueError, RecursionError):  # malformed JSON, invalid UTF-8, UnicodeEncodeError, absurd nesting
            data = None
        if data is not None:
            texts.append(text)
            encoded_texts.append(data)
        elif line.strip():
            bad += 1
    encoded = tokenizer.encode_batch(texts)
    char_starts = word_starts(texts, segmenter=_WORKER["segmenter"])
    flags = token_word_starts(char_starts, starts=encoded.starts, ends=encoded.ends)
    lengths = np.diff(encoded.doc_tokens)
    flags[encoded.doc_tokens[:-1][lengths > 0]] = True  # a document always starts a word
    hash_key, threshold = _WORKER["hash_key"], _WORKER["threshold"]
    validation = np.array(
        [int.from_bytes(hashlib.blake2b(d, digest_size=8, key=hash_key).digest()) < threshold for d in encoded_texts],
        dtype=bool,
    )
    return {
        "ids": encoded.ids.astype(_WORKER["dtype"]),  # the shard dtype: half the bytes back to the parent
        "flags": flags,
        "lengths": lengths,
        "validation": validation,
        "bad": bad,
        "chars": int(sum(map(len, texts))),
        "bytes": task[2] - task[1],
    }


def _byte_ranges(files: list[Path], size: int) -> list[tuple[str, int, int]]:
    """Tasks of about ``size`` bytes; each worker reads its own range (lines belong to the range they start in)."""
    tasks = []
    for path in files:
        total = path.stat().st_size
        tasks += [(str(path), start, min(start + size, total)) for start in range(0, total, size)]
    return tasks


def prepare_shards(args: ShardsArgs) -> Path:
    """Segment + tokenize the corpus into train/validation shards; returns ``output_dir``. A write error (disk full)
    deletes what both splits wrote and is an ``OutputWriteError`` naming the file."""
    from lmforge.data.corpus import PrepareError, check_num_proc, corpus_files
    from lmforge.data.errors import OutputWriteError
    from lmforge.data.segment import resolve_segmenter
    from lmforge.data.shards import ShardWriter

    check_num_proc(args.num_proc)
    segmenter = resolve_segmenter(args.segmenter)
    if args.objective not in ("mlm", "clm"):
        raise PrepareError(f"unknown objective {args.objective!r}; choose from ('mlm', 'clm')")
    if not 0.0 <= args.validation_split_percentage < 100.0:
        raise PrepareError(f"validation_split_percentage must be in [0, 100), got {args.validation_split_percentage}")
    if args.objective == "mlm" and args.max_seq_length < 3:
        raise PrepareError(f"max_seq_length must be >= 3, got {args.max_seq_length}")
    if args.objective == "clm" and args.block_size < 2:
        raise PrepareError(f"block_size must be >= 2, got {args.block_size}")
    started = time.perf_counter()
    files = corpus_files(_as_list(args.input))
    _check_output_dir(args.output_dir)
    init = (
        str(args.tokenizer_path),
        segmenter,
        args.text_field,
        args.validation_split_percentage / 100,
        args.seed,
    )
    _init_shard_worker(*init)  # before the pool forks: workers inherit the tokenizer and rjieba's dictionary
    tokenizer = _WORKER["tokenizer"]
    output_dir = Path(args.output_dir)
    info = {
        "fingerprint": tokenizer.fingerprint,
        "kind": tokenizer.kind,
        "path": str(args.tokenizer_path),
        "pad_token_id": tokenizer.pad_token_id,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "mask_token_id": tokenizer.mask_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "separator_id": tokenizer.document_separator_id,
    }
    writers: dict[str, ShardWriter] = {}
    try:  # a write error deletes both splits, not only the one that failed
        for split in ("train", "validation"):
            writers[split] = ShardWriter(
                output_dir / split,
                objective=args.objective,
                vocab_size=tokenizer.vocab_size,
                tokenizer_info=info,
                max_seq_length=args.max_seq_length,
                block_size=args.block_size,
                tokens_per_file=args.tokens_per_file,
            )
        return _write_shards(args, files, writers, tokenizer=tokenizer, segmenter=segmenter, init=init, started=started)
    except OutputWriteError:
        for writer in writers.values():
            writer.abort()
        raise


def _write_shards(args: ShardsArgs, files: list[Path], writers: dict, *, tokenizer, segmenter, init, started) -> Path:
    """Encode every byte range of ``files`` (in ``num_proc`` processes) into the split writers and close them."""
    import numpy as np

    from lmforge.data.corpus import PrepareError, _progress_bar, bounded_imap

    output_dir = Path(args.output_dir)
    bar = _progress_bar(sum(p.stat().st_size for p in files), "shards", args.progress)
    counts = {"documents": 0, "malformed_lines": 0, "chars": 0}
    tasks = _byte_ranges(files, 1 << 21)
    for result in bounded_imap(
        _encode_range, tasks, num_proc=args.num_proc, initializer=_init_shard_worker, initargs=init
    ):
        validation, lengths = result["validation"], result["lengths"]
        token_in_validation = np.repeat(validation, lengths)
        for split, docs, tokens in (
            ("train", ~validation, ~token_in_validation),
            ("validation", validation, token_in_validation),
        ):
            writers[split].add(result["ids"][tokens], word_starts=result["flags"][tokens], doc_lengths=lengths[docs])
        counts["documents"] += int(lengths.size)
        counts["malformed_lines"] += result["bad"]
        counts["chars"] += result["chars"]
        bar.update(result["bytes"])
    bar.close()
    if counts["documents"] == 0:
        raise PrepareError(
            f"no documents with a string {args.text_field!r} field in {[str(p) for p in files]} "
            f"({counts['malformed_lines']} other lines); is this a 'prepare corpus' output?"
        )
    seconds = time.perf_counter() - started
    build = {
        "inputs": [str(p) for p in files],
        "segmenter": segmenter,
        "validation_split_percentage": args.validation_split_percentage,
        "seed": args.seed,
        **counts,
        "seconds": round(seconds, 3),
    }
    indexes = {split: writer.close(extra={"split": split, "build": build}) for split, writer in writers.items()}
    print(
        f"shards: {counts['documents']} documents -> train {indexes['train']['num_sequences']} / validation "
        f"{indexes['validation']['num_sequences']} {args.objective} sequences, {indexes['train']['dtype']}, "
        f"tokenizer {tokenizer.fingerprint} ({seconds:.1f} s) -> {output_dir}"
    )
    return output_dir


@dataclass(kw_only=True)
class PrepareAllArgs:
    input: list[str] | str
    """Raw inputs: files and directories of .txt, .gz/.bz2/.xz, .jsonl/.json and .zip archives."""
    output_dir: str
    """Receives corpus/, tokenizer/, shards/{train,validation}/ and prepare.json."""
    num_proc: int = 1
    """Processes for ingest and for segmentation + tokenization."""
    text_field: str = "text"
    """Field holding the text in .json/.jsonl inputs."""
    min_doc_length: int = 10
    """Documents with fewer characters are dropped."""
    one_doc_per_line: bool = False
    """Every non-blank line of a text file is a document (else blank lines separate documents)."""
    normalize: bool = True
    """Unicode NFC normalisation."""
    dedup: bool = True
    """Drop exact duplicate documents."""
    segmenter: Literal["rjieba", "jieba", "none"] = "rjieba"
    """Word segmentation for whole-word masking."""
    tokenizer: Literal["char", "bpe", "codepoint"] = "char"
    """Tokenizer to build: char (BERT characters), bpe (byte-level BPE) or codepoint (CANINE)."""
    vocab_size: int | None = None
    """Upper bound on the vocabulary size (default 21128 for char, 32000 for bpe)."""
    cjk_continuations: bool = True
    """char: also add '##X' entries for CJK characters (bert-base-chinese layout); false nearly halves the vocab."""
    objective: Literal["mlm", "clm"] = "mlm"
    """Sequences for masked LM (one document, [CLS]/[SEP]) or causal LM (concatenated blocks)."""
    max_seq_length: int = 512
    """mlm: longest sequence including [CLS] and [SEP]."""
    block_size: int = 1024
    """clm: tokens per block."""
    validation_split_percentage: float = 5.0
    """Percentage of documents held out for validation."""
    seed: int = 42
    """Seed of the corpus shuffle and the validation split."""
    progress: bool = True
    """Show progress bars (only when stderr is a terminal)."""


def prepare_all(args: PrepareAllArgs) -> Path:
    """corpus -> tokenizer -> shards under ``output_dir``; returns ``output_dir``."""
    out = Path(args.output_dir)
    started = time.perf_counter()
    corpus = prepare_corpus(
        CorpusArgs(
            input=_as_list(args.input),
            output_dir=str(out / "corpus"),
            text_field=args.text_field,
            min_doc_length=args.min_doc_length,
            one_doc_per_line=args.one_doc_per_line,
            normalize=args.normalize,
            dedup=args.dedup,
            seed=args.seed,
            num_proc=args.num_proc,
            progress=args.progress,
        )
    )
    if corpus["documents_out"] == 0:
        from lmforge.data.corpus import PrepareError

        raise PrepareError(f"no documents left after ingest of {args.input} (see {out / 'corpus' / 'report.json'})")
    tokenizer = prepare_tokenizer(
        TokenizerArgs(
            input=[str(out / "corpus")],
            output_dir=str(out / "tokenizer"),
            tokenizer=args.tokenizer,
            vocab_size=args.vocab_size,
            cjk_continuations=args.cjk_continuations,
            text_field="text",
        )
    )
    shards = prepare_shards(
        ShardsArgs(
            input=[str(out / "corpus")],
            tokenizer_path=str(tokenizer),
            output_dir=str(out / "shards"),
            objective=args.objective,
            max_seq_length=args.max_seq_length,
            block_size=args.block_size,
            segmenter=args.segmenter,
            validation_split_percentage=args.validation_split_percentage,
            seed=args.seed,
            num_proc=args.num_proc,
            progress=args.progress,
        )
    )
    summary = {
        "args": asdict(args),
        "corpus": corpus,
        "tokenizer": json.loads((tokenizer / "lmforge_tokenizer.json").read_text(encoding="utf-8"))["fingerprint"],
        "shards": {s: str(shards / s) for s in ("train", "validation")},
        "seconds": round(time.perf_counter() - started, 3),
    }
    (out / "prepare.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out


def _check_output_dir(path: str) -> None:
    from lmforge.data.corpus import PrepareError

    if Path(path).exists() and not Path(path).is_dir():
        raise PrepareError(f"output_dir {path!r} exists and is not a directory")


def _as_list(value: list[str] | str) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _take_chars(texts, limit: int):
    total = 0
    for text in texts:
        if total >= limit:
            return
        total += len(text)
        yield text
