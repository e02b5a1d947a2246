"""The ``lmforge prepare shards`` stage: segment + tokenize a corpus into train/validation token shards.

HF/PaddleNLP's ``run_chinese_ref.py`` segments, tokenizes and writes reference ids one document at a time; here the
corpus files are cut into ~2 MB byte ranges (``_byte_ranges``; a line belongs to the range it starts in) and each
of ``num_proc`` processes segments and tokenizes whole batches (``_encode_range``), storing word-start flags next to
the token ids, so the training tokenizer and the whole-word boundaries cannot drift apart. A document goes to
validation when a seeded blake2b hash of its text falls below ``validation_split_percentage``.

HF ref files (``chinese_ref.py``): with ``train_ref_file`` the parent counts the documents of every byte range
(non-blank lines) before any work, checks the total against the ref file's lines, and sends each range its slice of
refs, which replace the segmenter (``apply_refs``); ``write_ref_file`` has every range return its documents' refs,
written in corpus order. The parent writes
both splits (``shards.ShardWriter``); a write error deletes both. Format: ``shards.py``. Top level imports nothing
heavy (``lmforge prepare --help`` stays fast).

Code: ``shard_encode.py`` holds the byte ranges and the worker that encodes one (every name importable from here);
this module holds the arguments and the driver (checks, split writers, ref file, summary line).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# The byte-range work (shard_encode.py) is looked up here by the driver below; _read_range is re-exported.
from lmforge.data.shard_encode import _WORKER, _byte_ranges, _encode_range, _init_shard_worker, _with_refs
from lmforge.data.shard_encode import _read_range as _read_range
from lmforge.data.stage import (
    ExecutorArgs,
    _as_list,
    _check_output_dir,
    _progress_bar,
    bounded_imap,
    check_num_proc,
)


@dataclass(kw_only=True)
class _ShardsFields:
    input: list[str] | str
    """The corpus: a 'prepare corpus' directory or jsonl files."""
    tokenizer_path: str | None = None
    """A directory written by 'prepare tokenizer' or a Hugging Face tokenizer directory; its fingerprint is stored
    in every shard index."""
    tokenizer_name: str | None = None
    """HF-style alias of tokenizer_path: a local tokenizer directory. A hub id is an error: nothing is downloaded."""
    output_dir: str
    """Directory that receives train/ and validation/ (bin files + index.json)."""
    objective: Literal["mlm", "clm"] = "mlm"
    """mlm: documents packed into [CLS] ... [SEP] sequences, cut at word starts; clm: documents + EOS in blocks."""
    max_seq_length: int = 512
    """mlm: longest sequence including [CLS] and [SEP]."""
    line_by_line: bool = False
    """mlm: one document per sequence, short ones padded by the collator (HF run_mlm.py --line_by_line; the only
    layout before shard format v2). Default: documents packed into full sequences with [SEP] between them."""
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
    train_ref_file: str | None = None
    """mlm: a HF run_chinese_ref.py reference file, one JSON list per non-blank corpus line (document k <-> ref line
    k, in corpus order): its whole-word marks replace --segmenter for Chinese characters in the first 510 tokens of
    each document (HF run_mlm_wwm.py --train_ref_file; --segmenter none for HF's rule elsewhere). A count mismatch is
    an error before any work."""
    write_ref_file: str | None = None
    """Also write our segmentation in run_chinese_ref.py format: one line per document, in corpus order."""
    progress: bool = True
    """Show a progress bar with MB/s (only when stderr is a terminal)."""


@dataclass(kw_only=True)
class ShardsArgs(ExecutorArgs, _ShardsFields):
    """_ShardsFields's fields, then ``ExecutorArgs``'s: a base listed first contributes its fields last, so
    --help lists the stage's own flags before the executor's."""


class _RefWriter:
    """``--write_ref_file``: lines appended in corpus order to a temporary file, renamed into place by ``close``."""

    def __init__(self, path: str) -> None:
        from lmforge.data.errors import OutputWriteError

        self.path = Path(path)
        self.temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.temporary, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as error:
            raise OutputWriteError(f"cannot write --write_ref_file {str(path)!r}: {error}") from error

    def write(self, text: str) -> None:
        self.handle.write(text)

    def close(self) -> None:
        self.handle.close()
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        self.handle.close()
        self.temporary.unlink(missing_ok=True)


def prepare_shards(args: ShardsArgs) -> Path:
    """Segment + tokenize the corpus into train/validation shards; returns ``output_dir``. A write error (disk full)
    deletes what both splits wrote and is an ``OutputWriteError`` naming the file."""
    from lmforge.data.corpus_reader import corpus_files
    from lmforge.data.errors import OutputWriteError, PrepareError
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
    if args.objective == "clm" and args.line_by_line:
        raise PrepareError("--line_by_line is for mlm; clm blocks always pack documents (HF run_clm.py)")
    if args.objective == "clm" and args.block_size < 2:
        raise PrepareError(f"block_size must be >= 2, got {args.block_size}")
    if args.train_ref_file is not None:
        if args.objective != "mlm":
            raise PrepareError("--train_ref_file marks whole words for masked LM; it has no use with --objective clm")
        if not Path(args.train_ref_file).is_file():
            raise PrepareError(f"--train_ref_file {args.train_ref_file!r} does not exist")
    tokenizer_path = _tokenizer_path(args)
    runner = args.runner()
    started = time.perf_counter()
    files = corpus_files(_as_list(args.input))
    _check_output_dir(args.output_dir)
    init = (
        str(tokenizer_path),
        segmenter,
        args.text_field,
        args.validation_split_percentage / 100,
        args.seed,
        args.write_ref_file is not None,
    )
    _init_shard_worker(*init)  # before the pool forks: workers inherit the tokenizer and rjieba's dictionary
    tokenizer = _WORKER["tokenizer"]
    _check_sequence_tokens(tokenizer, args.objective)
    output_dir = Path(args.output_dir)
    separator = tokenizer.document_separator_id
    info = {
        "fingerprint": tokenizer.fingerprint,
        "kind": tokenizer.kind,
        "path": str(tokenizer_path),
        "pad_token_id": tokenizer.pad_token_id,
        # clm never uses cls/sep, but shard readers expect ints: imported tokenizers may lack them (T5 has no bos)
        "cls_token_id": tokenizer.cls_token_id if tokenizer.cls_token_id is not None else separator,
        "sep_token_id": tokenizer.sep_token_id if tokenizer.sep_token_id is not None else separator,
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
                layout="document" if args.line_by_line else "packed",
            )
        return _write_shards(
            args, files, writers, tokenizer=tokenizer, segmenter=segmenter, init=init, started=started, runner=runner
        )
    except OutputWriteError:
        for writer in writers.values():
            writer.abort()
        raise


def _tokenizer_path(args: ShardsArgs) -> str:
    from lmforge.data.errors import PrepareError
    from lmforge.data.tokenizer_import import resolve_tokenizer_name

    if args.tokenizer_name is not None and args.tokenizer_path is not None:
        raise PrepareError("pass --tokenizer_path or --tokenizer_name, not both")
    if args.tokenizer_name is not None:
        return str(resolve_tokenizer_name(args.tokenizer_name))
    if args.tokenizer_path is None:
        raise PrepareError("pass --tokenizer_path (a 'prepare tokenizer' output) or --tokenizer_name (a local dir)")
    return str(args.tokenizer_path)


def _check_sequence_tokens(tokenizer, objective: str) -> None:
    """mlm sequences need [MASK], [CLS] and [SEP] (or bos/eos); clm needs a document separator (eos or sep)."""
    from lmforge.data.errors import PrepareError
    from lmforge.data.lm_tokenizer import require_mask_token_id

    if objective == "mlm":
        require_mask_token_id(tokenizer)
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
            raise PrepareError(
                f"mlm sequences need cls (or bos) and sep (or eos) tokens; the tokenizer ({tokenizer.source}) lacks "
                "one: use --objective clm or name them in tokenizer_config.json"
            )
    elif tokenizer.document_separator_id is None:
        raise PrepareError(
            f"clm needs an eos (or sep) token between documents; the tokenizer ({tokenizer.source}) has none"
        )


def _write_shards(
    args: ShardsArgs, files: list[Path], writers: dict, *, tokenizer, segmenter, init, started, runner
) -> Path:
    """Encode every byte range of ``files`` (in ``num_proc`` processes) into the split writers and close them."""
    from lmforge.data.errors import PrepareError

    output_dir = Path(args.output_dir)
    bar = _progress_bar(sum(p.stat().st_size for p in files), "shards", args.progress)
    counts = {"documents": 0, "malformed_lines": 0, "chars": 0}
    tasks = _byte_ranges(files, 1 << 21)
    if args.train_ref_file is not None:
        tasks = _with_refs(tasks, args.train_ref_file)
    refs_out = _RefWriter(args.write_ref_file) if args.write_ref_file is not None else None
    try:
        _encode_all(tasks, args, writers, init, counts, bar, refs_out, runner)
        bar.close()
        if counts["documents"] == 0:
            raise PrepareError(
                f"no documents with a string {args.text_field!r} field in {[str(p) for p in files]} "
                f"({counts['malformed_lines']} other lines); is this a 'prepare corpus' output?"
            )
    except BaseException:
        if refs_out is not None:
            refs_out.abort()
        raise
    if refs_out is not None:
        refs_out.close()
    seconds = time.perf_counter() - started
    build = {
        "inputs": [str(p) for p in files],
        "segmenter": segmenter,
        **({"train_ref_file": str(args.train_ref_file)} if args.train_ref_file is not None else {}),
        "validation_split_percentage": args.validation_split_percentage,
        "seed": args.seed,
        **counts,
        "seconds": round(seconds, 3),
    }
    indexes = {split: writer.close(extra={"split": split, "build": build}) for split, writer in writers.items()}
    print(
        f"shards: {counts['documents']} documents -> train {indexes['train']['num_sequences']} / validation "
        f"{indexes['validation']['num_sequences']} {args.objective} sequences ({indexes['train']['layout']}), "
        f"{indexes['train']['dtype']}, "
        f"tokenizer {tokenizer.fingerprint} ({seconds:.1f} s) -> {output_dir}"
    )
    return output_dir


def _encode_all(tasks, args: ShardsArgs, writers: dict, init: tuple, counts: dict, bar, refs_out, runner) -> None:
    """The encoded ranges, in order, into the split writers (and the ref file), counting as they come. They are
    encoded by ``num_proc`` processes, or by datatrove tasks with a ``runner`` (``distributed.py``)."""
    import numpy as np

    if runner is None:
        results = bounded_imap(
            _encode_range, tasks, num_proc=args.num_proc, initializer=_init_shard_worker, initargs=init
        )
    else:
        work_dir = Path(args.output_dir) / ".datatrove-shards"
        results = runner.map(_encode_range, tasks, work_dir=work_dir, initializer=_init_shard_worker, initargs=init)
    for result in results:
        if refs_out is not None:
            refs_out.write(result["refs_text"])
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
