"""The ``lmforge prepare`` stages: corpus -> tokenizer -> shards, and ``all`` for the three with defaults.

Each stage is an arguments dataclass (its fields are the flags, the attribute docstrings the ``--help``; the CLI
builds the parser with jsonargparse) and a function taking it. This module imports nothing heavy at top level so
``lmforge prepare --help`` stays fast; torch is never needed here.

Pipeline (architectures.md §2 "Notes on the Chinese pretraining pipeline"): ``trans_to_json.py`` -> our ingest
(``corpus.py``); ``run_chinese_ref.py`` (segment, tokenize, reference ids, one document at a time) -> our shard
stage (``shard_stage.py``, re-exported here), which segments and tokenizes batches of documents in ``num_proc``
processes and stores word-start flags next to the token ids, so the training tokenizer and the whole-word
boundaries cannot drift apart.

Output of ``prepare all --output_dir D``: ``D/corpus`` (jsonl + report.json), ``D/tokenizer`` (HF-loadable +
lmforge_tokenizer.json; with ``--tokenizer_name DIR`` the imported tokenizer, see ``tokenizer_import.py``),
``D/shards/{train,validation}`` (bins + index.json) and ``D/prepare.json`` (arguments and the reports of every
stage).

Code: ``corpus_stage.py``, ``tokenizer_stage.py`` and ``shard_stage.py`` hold the three stages; this module holds
``prepare all`` and re-exports every stage's names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from lmforge.data.corpus_stage import CorpusArgs, corpus_summary, prepare_corpus
from lmforge.data.errors import PrepareError
from lmforge.data.shard_stage import ShardsArgs, prepare_shards
from lmforge.data.shard_stage import _byte_ranges as _byte_ranges  # re-exported for the tests
from lmforge.data.shard_stage import _read_range as _read_range
from lmforge.data.stage import ExecutorArgs, _as_list
from lmforge.data.tokenizer_stage import DEFAULT_VOCAB_SIZE, TokenizerArgs, prepare_tokenizer

__all__ = [
    "DEFAULT_VOCAB_SIZE",
    "CorpusArgs",
    "PrepareAllArgs",
    "ShardsArgs",
    "TokenizerArgs",
    "corpus_summary",
    "prepare_all",
    "prepare_corpus",
    "prepare_shards",
    "prepare_tokenizer",
]


@dataclass(kw_only=True)
class _PrepareAllFields:
    input: list[str] | str
    """Raw inputs: files and directories of .txt, .gz/.bz2/.xz, .jsonl/.json, .zip archives and datasets
    .parquet/.arrow files (save_to_disk directories, parquet shard folders)."""
    output_dir: str
    """Receives corpus/, tokenizer/, shards/{train,validation}/ and prepare.json."""
    num_proc: int = 1
    """Processes for ingest and for segmentation + tokenization."""
    text_field: str = "text"
    """Field holding the text in .json/.jsonl inputs (the column of .parquet/.arrow ones); a dotted path reaches
    into nested objects and lists ('meta.text', 'paragraphs.0.text'), as datasets' flattened column names do (a
    key with the dots in it wins)."""
    min_doc_length: int = 10
    """Documents with fewer characters are dropped."""
    one_doc_per_line: bool = False
    """Every non-blank line of a text file is a document (else blank lines separate documents)."""
    normalize: bool = True
    """Unicode NFC normalisation."""
    dedup: bool = True
    """Drop exact duplicate documents."""
    source_weights: str | None = None
    """Mix the --input items in these proportions of documents, e.g. 'mnbvc=0.5,c4=0.3,oscar=0.2' (key: the input's
    last path component without a file's suffixes); down-sampling with --seed, the documents left out counted in
    prepare.json (corpus.documents_left_out, corpus.source_weights). Not with --train_ref_file/--write_ref_file."""
    keep_partial: bool = False
    """A compressed file or zip member that fails to read: false skips it whole (its documents counted as
    damaged_file); true keeps the documents read before the failure (the cut one counted in documents_lost)."""
    follow_symlinks: bool = True
    """Walk into symlinked directories (each once, loops reported as symlink_loop); false skips them."""
    segmenter: Literal["rjieba", "jieba", "none"] = "rjieba"
    """Word segmentation for whole-word masking."""
    tokenizer: Literal["char", "bpe", "codepoint"] = "char"
    """Tokenizer to build: char (BERT characters), bpe (byte-level BPE) or codepoint (CANINE)."""
    tokenizer_name: str | None = None
    """Import this local tokenizer directory instead of building --tokenizer: Hugging Face (tokenizer.json,
    vocab.txt, vocab.json + merges.txt or a sentencepiece .model) or lmforge. A hub id is an error: nothing is
    downloaded."""
    vocab_size: int | None = None
    """Upper bound on the vocabulary size (default 21128 for char, 32000 for bpe)."""
    cjk_continuations: bool = True
    """char: also add '##X' entries for CJK characters (bert-base-chinese layout); false nearly halves the vocab."""
    objective: Literal["mlm", "clm"] = "mlm"
    """Sequences for masked LM (packed documents, [CLS]/[SEP]) or causal LM (concatenated blocks)."""
    max_seq_length: int = 512
    """mlm: longest sequence including [CLS] and [SEP]."""
    line_by_line: bool = False
    """mlm: every non-blank line of a text input is a document (one_doc_per_line) and each document its own
    sequence, short ones padded by the collator (HF run_mlm.py --line_by_line). Default: blank lines separate
    documents, which are packed into full sequences with [SEP] between them."""
    block_size: int = 1024
    """clm: tokens per block."""
    validation_split_percentage: float = 5.0
    """Percentage of documents held out for validation (ignored with --validation_file)."""
    validation_file: list[str] | str | None = None
    """Held-out input(s), read like --input, that become shards/validation in full instead of a hashed share of
    --input (HF run_mlm.py --validation_file); every --input document then goes to shards/train."""
    train_ref_file: str | None = None
    """mlm: a HF run_chinese_ref.py reference file for --input (one JSON list per non-blank line of the text, HF
    run_mlm_wwm.py --train_ref_file): its whole-word marks replace --segmenter for Chinese characters (--segmenter
    none: BERT words elsewhere, exactly as HF). The text is
    then read as HF reads it: one document per non-blank line, in order, no shuffle, de-duplication or length
    filter, each line its own sequence (--line_by_line); a line count that differs from the ref file's is an error."""
    write_ref_file: str | None = None
    """Write our whole-word segmentation of --input in run_chinese_ref.py format to this file, one line per non-blank
    line of the text (read in order as with --train_ref_file), for HF run_mlm_wwm.py --train_ref_file."""
    seed: int = 42
    """Seed of the corpus shuffle and the validation split."""
    progress: bool = True
    """Show progress bars (only when stderr is a terminal)."""


@dataclass(kw_only=True)
class PrepareAllArgs(ExecutorArgs, _PrepareAllFields):
    """_PrepareAllFields's fields, then ``ExecutorArgs``'s: a base listed first contributes its fields last, so
    --help lists the stage's own flags before the executor's."""


def prepare_all(args: PrepareAllArgs) -> Path:
    """corpus -> tokenizer -> shards under ``output_dir``; returns ``output_dir``."""
    out = Path(args.output_dir)
    started = time.perf_counter()
    if args.objective == "clm" and args.line_by_line:  # before ingest, not after
        raise PrepareError("--line_by_line is for mlm; clm blocks always pack documents (HF run_clm.py)")
    for held_out_path in _as_list(args.validation_file or []):  # before a long ingest of --input, not after
        if not Path(held_out_path).exists():
            raise PrepareError(f"--validation_file {held_out_path!r} does not exist")
    if args.train_ref_file is not None:
        if args.objective != "mlm":
            raise PrepareError("--train_ref_file marks whole words for masked LM; it has no use with --objective clm")
        if not Path(args.train_ref_file).is_file():
            raise PrepareError(f"--train_ref_file {args.train_ref_file!r} does not exist")
    in_order = args.train_ref_file is not None or args.write_ref_file is not None  # ref line k <-> text line k
    if in_order and args.source_weights:
        raise PrepareError("--source_weights leaves documents out, but a ref file needs every line of the text")
    if args.tokenizer_name is not None:  # a wrong name or a tokenizer unfit for the objective fails before ingest
        from lmforge.data.lm_tokenizer import require_mask_token_id
        from lmforge.data.tokenizer_import import load_named_tokenizer

        imported = load_named_tokenizer(args.tokenizer_name)
        if args.objective == "mlm":
            require_mask_token_id(imported)
    corpus_args = CorpusArgs(
        input=_as_list(args.input),
        output_dir=str(out / "corpus"),
        text_field=args.text_field,
        min_doc_length=0 if in_order else args.min_doc_length,  # every non-blank line, as run_mlm_wwm.py reads it
        one_doc_per_line=args.one_doc_per_line or args.line_by_line or in_order,  # HF: each line is an example
        normalize=args.normalize,
        dedup=args.dedup and not in_order,
        shuffle=not in_order,
        keep_partial=args.keep_partial,
        follow_symlinks=args.follow_symlinks,
        source_weights=args.source_weights,
        seed=args.seed,
        num_proc=args.num_proc,
        **args.executor_fields(),
        progress=args.progress,
    )
    if in_order:
        print("ref file: the text is read in order, one document per non-blank line (no shuffle, de-duplication or "
              "length filter), so that ref line k belongs to text line k")  # fmt: skip
    corpus = prepare_corpus(corpus_args)
    if in_order:
        _check_ref_alignment(corpus, args.train_ref_file, out / "corpus" / "report.json")
    held_out = None
    if args.validation_file is not None:
        validation_args = dataclasses.replace(
            corpus_args,
            input=_as_list(args.validation_file),
            output_dir=str(out / "validation_corpus"),
            source_weights=None,  # the weights mix --input; the held-out file is read whole
        )
        held_out = prepare_corpus(validation_args)
        if held_out["documents_out"] == 0:
            raise PrepareError(
                f"no documents in --validation_file {args.validation_file} "
                f"(see {out / 'validation_corpus' / 'report.json'})"
            )
    if corpus["documents_out"] == 0:
        raise PrepareError(f"no documents left after ingest of {args.input} (see {out / 'corpus' / 'report.json'})")
    tokenizer = prepare_tokenizer(
        TokenizerArgs(
            input=[str(out / "corpus")],
            output_dir=str(out / "tokenizer"),
            tokenizer=args.tokenizer,
            tokenizer_name=args.tokenizer_name,
            vocab_size=args.vocab_size,
            cjk_continuations=args.cjk_continuations,
            text_field="text",
        )
    )
    shards_args = ShardsArgs(
        input=[str(out / "corpus")],
        tokenizer_path=str(tokenizer),
        output_dir=str(out / "shards"),
        objective=args.objective,
        max_seq_length=args.max_seq_length,
        block_size=args.block_size,
        line_by_line=args.line_by_line or args.train_ref_file is not None,
        segmenter=args.segmenter,
        train_ref_file=args.train_ref_file,
        write_ref_file=args.write_ref_file,
        validation_split_percentage=0.0 if held_out else args.validation_split_percentage,
        seed=args.seed,
        num_proc=args.num_proc,
        **args.executor_fields(),
        progress=args.progress,
    )
    shards = prepare_shards(shards_args)
    if held_out:
        _held_out_shards(shards_args, out / "validation_corpus", shards / "validation", args.validation_file)
    summary = {
        "args": asdict(args),
        "corpus": corpus,
        **({"validation_corpus": held_out} if held_out else {}),
        "tokenizer": json.loads((tokenizer / "lmforge_tokenizer.json").read_text(encoding="utf-8"))["fingerprint"],
        "shards": {s: str(shards / s) for s in ("train", "validation")},
        "seconds": round(time.perf_counter() - started, 3),
    }
    (out / "prepare.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out


def _held_out_shards(shards_args: ShardsArgs, corpus: Path, target: Path, validation_file) -> None:
    """Shard the --validation_file corpus with the training settings and put it in place of ``target`` (the empty
    validation split of the training shards). The shard stage always splits one corpus by hash; with 0% held
    out everything lands in train/, which becomes ``target``, its index saying so."""
    scratch = target.parent / ".validation-file-shards"
    shutil.rmtree(scratch, ignore_errors=True)
    held_out_args = dataclasses.replace(
        shards_args, input=[str(corpus)], output_dir=str(scratch), train_ref_file=None, write_ref_file=None
    )
    with contextlib.redirect_stdout(io.StringIO()):  # its line would say "train N / validation 0"
        prepare_shards(held_out_args)
    index = json.loads((scratch / "train" / "index.json").read_text(encoding="utf-8"))
    index["split"] = "validation"
    index["build"]["validation_file"] = [str(v) for v in _as_list(validation_file)]
    (scratch / "train" / "index.json").write_text(json.dumps(index, ensure_ascii=False, indent=2) + "\n", "utf-8")
    shutil.rmtree(target)
    os.replace(scratch / "train", target)
    shutil.rmtree(scratch)
    print(
        f"shards: --validation_file {index['num_documents']} documents -> validation {index['num_sequences']} "
        f"sequences -> {target}"
    )


def _check_ref_alignment(report: dict, ref_file: str | None, report_path: Path) -> None:
    """With a ref file (read or written) every non-blank line of the text must be a document, in order."""
    from lmforge.data.chinese_ref import count_ref_lines

    if report["documents_out"] != report["documents_in"]:
        skipped = ", ".join(f"{k} {v}" for k, v in report["skipped"].items() if v)
        raise PrepareError(
            f"a ref file lines up with every non-blank line of the text, but ingest skipped "
            f"{report['documents_in'] - report['documents_out']} of {report['documents_in']} ({skipped}; see "
            f"{report_path}): fix those lines first"
        )
    if ref_file is not None and (found := count_ref_lines(ref_file)) != report["documents_out"]:
        raise PrepareError(
            f"--train_ref_file {ref_file!r} has {found} non-blank lines but the text has {report['documents_out']}; "
            "ref line k must belong to text line k (run_chinese_ref.py on the same text)"
        )
