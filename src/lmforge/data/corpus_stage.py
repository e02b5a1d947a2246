"""``lmforge prepare corpus``: raw text -> jsonl documents through ``lmforge.data.corpus.ingest``; its arguments
(the flags) and the one-line summary of its report. ``lmforge.data.prepare`` re-exports both."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.data.stage import ExecutorArgs, _as_list

__all__ = ["CorpusArgs", "corpus_summary", "prepare_corpus"]


@dataclass(kw_only=True)
class _CorpusFields:
    input: list[str] | str
    """Files and directories to read: .txt (or any text), .gz/.bz2/.xz, .jsonl/.json, .zip archives (read in
    place, no unzip), datasets .parquet/.arrow files (pip install 'lmforge[arrow]'). Directories are walked
    recursively in sorted order (a datasets save_to_disk directory reads its .arrow data, not its metadata)."""
    output_dir: str
    """Directory for the jsonl parts (part-00000.jsonl, ...) and report.json."""
    text_field: str = "text"
    """Field holding the text in .json/.jsonl inputs (the column of .parquet/.arrow ones); a dotted path reaches
    into nested objects and lists ('meta.text', 'paragraphs.0.text'), as datasets' flattened column names do (a
    key with the dots in it wins)."""
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
    source_weights: str | None = None
    """Mix the --input items in these proportions of documents, e.g. 'mnbvc=0.5,c4=0.3,oscar=0.2': a key is the
    input's last path component without a file's suffixes (c4.jsonl.gz -> c4), every input named. Down-sampling only
    (no repetition): the source that runs short sets the size, the others are sampled with --seed; the documents
    left out are counted in report.json (documents_left_out, source_weights), never as skipped."""
    keep_partial: bool = False
    """A compressed file or zip member that fails to read (bad CRC, truncated or corrupt stream): false skips it
    whole, its documents counted as damaged_file; true keeps the documents read before the failure and counts the
    one it cut in documents_lost. report.json 'files' gives each such file's verdict (skipped or kept_partial)."""
    follow_symlinks: bool = True
    """Walk into symlinked directories inside input directories (each directory once: a link back to an ancestor is
    reported as symlink_loop, never followed); false skips them, reported as symlinked_directory."""
    progress: bool = True
    """Show a progress bar with MB/s (only when stderr is a terminal)."""


@dataclass(kw_only=True)
class CorpusArgs(ExecutorArgs, _CorpusFields):
    """_CorpusFields's fields, then ``ExecutorArgs``'s: a base listed first contributes its fields last, so
    --help lists the stage's own flags before the executor's."""


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
        keep_partial=args.keep_partial,
        follow_symlinks=args.follow_symlinks,
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
        source_weights=args.source_weights,
        progress=args.progress,
        runner=args.runner(),
    )
    print(corpus_summary(report, args.output_dir))
    return report


def corpus_summary(report: dict, output_dir: str) -> str:
    """The one-line console summary of an ingest report: what was kept, skipped (whole) and kept partially."""
    skipped = ", ".join(f"{k} {v}" for k, v in report["skipped"].items()) or "none"
    files = ", ".join(f"{k} {v}" for k, v in report["files_skipped"].items()) or "none"
    partial = ""
    if report["files_partial"]:
        kept = sum(f.get("documents_kept", 0) for f in report["files"].values() if f["verdict"] == "kept_partial")
        reasons = ", ".join(f"{k} {v}" for k, v in report["files_partial"].items())
        partial = (
            f"; kept partially: {sum(report['files_partial'].values())} files ({reasons}) with {kept} documents kept "
            f"(before de-duplication), {report['documents_lost']} documents lost"
        )
    damaged = report["skipped"].get("damaged_file", 0)
    whole = f" ({damaged} documents of damaged files skipped whole: none of them is in the output)" if damaged else ""
    if "source_weights" in report:
        mix = report["source_weights"]
        kept = ", ".join(f"{k} {mix['kept'][k]}/{mix['available'][k]} ({mix['realised'][k]:.1%})" for k in mix["kept"])
        partial += f"; --source_weights kept {kept}, {report['documents_left_out']} documents left out by it"
    return (
        f"corpus: {report['documents_out']}/{report['documents_in']} documents kept from {report['files_read']} files "
        f"({report['bytes_read'] / 1e6:.1f} MB, {report['mb_per_s']:.1f} MB/s); skipped documents: {skipped}; "
        f"skipped files: {files}{whole}{partial} -> {output_dir}"
    )
