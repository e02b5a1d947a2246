"""Ingest: raw text in any mix of directories, zip archives, txt, gz/bz2/xz, json/jsonl and datasets Parquet/Arrow
(``columnar.py``) -> jsonl documents.

Document rules follow PaddleNLP ``trans_to_json.py`` (copied into JunnYu/FLASHQuad_pytorch): a document ends at a
line equal (after strip) to ``doc_separator`` (default "" = a blank line), or every non-blank line is a document
(``one_doc_per_line``); documents shorter than ``min_doc_length`` characters are dropped. Then optional Unicode
NFC normalisation and exact de-duplication. Output: ``part-00000.jsonl``... of ``{"id", "text", "source"}`` and
``report.json``.

How it stays bounded (a 14 GB corpus must not need 14 GB of RAM; ``trans_to_json.py`` shuffles with ``shuf``,
which holds the whole file):

1. Sources (files, or members of a zip read in place) are visited in a seeded random order (shard-level
   shuffle) and parsed streaming, line by line: a line is read at most ``max_line_bytes`` at a time and a
   document is cut at a line boundary before it exceeds ``max_doc_chars``. With ``num_proc > 1`` sources are
   parsed in worker processes, each into a temporary file of ``hash \\t json`` lines, at most ``2 * num_proc``
   in flight; with one process the lines go straight to step 2.
2. The main process takes the sources' lines in that order, drops hashes it has seen (8 bytes per distinct
   document: a sorted numpy array plus a small set; two different documents collide with probability
   ~n^2/2^65, 1e-5 for 15M documents) and passes documents through a seeded shuffle buffer of
   ``shuffle_buffer`` documents (and at most 256 MB) into the output parts. Output depends on the seed, never on
   ``num_proc``.
3. The codepoint histogram of the kept documents (duplicates subtracted) is saved as ``codepoint_counts.npy``,
   so building a character vocabulary needs no second pass over the text (``corpus_codepoint_counts`` ignores
   it once the parts change).

Bad input never crashes the run and is never dropped silently: every skipped document is counted under a reason
(``too_short``, ``duplicate``, ``invalid_utf8``, ``line_too_long``, ``malformed_json``, ``missing_text_field``,
``damaged_file``) and every unusable file too (``binary_file``, ``empty_file``, ``unreadable``, ``bad_archive``,
``bad_compression``, ``not_a_regular_file``, ``hidden_file``, ``unsupported``, ``duplicate_input``,
``json_array_too_large``, ``symlink_loop``, ``symlinked_directory``, ``bad_parquet``, ``bad_arrow``,
``dataset_metadata``, ``dataset_cache``), with a few ``path:line`` examples.

Nothing partial: a compressed, Parquet or Arrow file or a zip member is committed only after it has been read to the
end and its CRC checked (``ingest_source``); one that fails is skipped whole, its documents counted as
``damaged_file``, or with ``keep_partial`` kept with the document the failure cut counted in ``documents_lost``.
``report["files"]`` gives the verdict of every source not read in full (``skipped`` or ``kept_partial``, reason,
error, counts), so "skipped" is never said of a file with documents in the output. ``documents_in == documents_out +
sum(skipped) + documents_lost`` (plus ``documents_left_out`` with ``source_weights``, ``weights.py``) is asserted at
the end of every run. A bad path or option is a ``PrepareError`` (a ``ValueError``: one line on the command line).

Modules: ``discovery.py`` (finding sources), ``readers.py`` (reading and parsing them), ``source_ingest.py`` (one
source, spooled and committed whole: ``ingest_source``, and the worker task), ``documents.py`` (filters, dedup,
shuffle buffer, parts), ``stage.py`` (bounded parallel map, progress bar), ``corpus_reader.py`` (reading a corpus
back: ``corpus_files``, ``iter_texts``, ``corpus_codepoint_counts``); this one drives them (``ingest``). Every name
stays importable from here.

Deviations from trans_to_json.py: length is measured on the stripped text without the trailing newlines it
counted (so ``min_doc_length`` is a true minimum); several inputs go into one corpus (its ``--no-merge`` is
``shard_size_mb``); shuffling is bounded instead of ``shuf``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.data.columnar import parse_columnar as parse_columnar
from lmforge.data.columnar import require_pyarrow
from lmforge.data.corpus_reader import COUNTS_FILE, corpus_codepoint_counts, corpus_files, iter_texts
from lmforge.data.discovery import COMPRESSIONS, JSON_SUFFIXES, Source, discover_sources
from lmforge.data.discovery import _check_unchanged as _check_unchanged
from lmforge.data.documents import (
    DOCUMENT_REASONS,
    FILE_REASONS,
    MAX_EXAMPLES,
    SHUFFLE_BUFFER_BYTES,
    CodepointCounter,
    IngestOptions,
    IngestStats,
    JsonlPartWriter,
    _Merger,
)
from lmforge.data.documents import _DocumentSink as _DocumentSink
from lmforge.data.errors import InputChangedError, OutputWriteError, PrepareError, os_error_text
from lmforge.data.readers import BINARY_SNIFF_BYTES, MAX_JSON_ARRAY_BYTES, READ_ERRORS

# Re-exported so that every name stays importable from here; the code that looks them up is in readers.py and
# source_ingest.py, which is where a test patches them.
from lmforge.data.readers import _open_source as _open_source
from lmforge.data.readers import _parse_json as _parse_json
from lmforge.data.readers import _parse_text as _parse_text
from lmforge.data.readers import _read_error_reason as _read_error_reason
from lmforge.data.readers import _read_lines as _read_lines
from lmforge.data.source_ingest import SPOOL_MEMORY_BYTES as SPOOL_MEMORY_BYTES
from lmforge.data.source_ingest import _commit as _commit
from lmforge.data.source_ingest import _ingest_task, _init_ingest_worker, ingest_source
from lmforge.data.source_ingest import _parse_bytes as _parse_bytes
from lmforge.data.source_ingest import _worker_progress as _worker_progress
from lmforge.data.stage import _check_output_dir, _progress_bar, bounded_imap, check_num_proc, mp_context
from lmforge.data.tokenizer_spec import is_encodable
from lmforge.data.weights import apply_source_weights, parse_source_weights

__all__ = [
    "BINARY_SNIFF_BYTES",
    "COMPRESSIONS",
    "COUNTS_FILE",
    "DOCUMENT_REASONS",
    "FILE_REASONS",
    "JSON_SUFFIXES",
    "MAX_EXAMPLES",
    "MAX_JSON_ARRAY_BYTES",
    "READ_ERRORS",
    "SHUFFLE_BUFFER_BYTES",
    "CodepointCounter",
    "IngestOptions",
    "IngestStats",
    "InputChangedError",
    "JsonlPartWriter",
    "OutputWriteError",
    "PrepareError",
    "Source",
    "bounded_imap",
    "check_num_proc",
    "corpus_codepoint_counts",
    "corpus_files",
    "discover_sources",
    "ingest",
    "ingest_source",
    "is_encodable",
    "iter_texts",
    "mp_context",
]


def ingest(inputs: list[str], output_dir: str | Path, *, options: IngestOptions, **settings: Any) -> dict:
    """Run the ingest stage (``_ingest``'s keyword settings); returns the report (also ``output_dir/report.json``).

    Failure is all or nothing: when an input changes or disappears while it is read, or the output cannot be
    written (disk full, permissions), the partial output is removed and a ``PrepareError`` says why. A directory
    of ``part-*.jsonl`` without ``report.json`` (a killed ingest) is refused downstream (``corpus_files``). The
    rerun starts over and, ingest being deterministic, writes exactly what an uninterrupted run writes."""
    output_dir = Path(output_dir)
    try:
        return _ingest(inputs, output_dir, options=options, **settings)
    except (InputChangedError, OutputWriteError, OSError) as error:
        if output_dir.is_dir():
            for partial in [*output_dir.glob("part-[0-9][0-9][0-9][0-9][0-9].jsonl"), output_dir / COUNTS_FILE]:
                partial.unlink(missing_ok=True)
            shutil.rmtree(output_dir / ".ingest-tmp", ignore_errors=True)
        cause = error.__cause__ if isinstance(error, OutputWriteError) else error
        cause_text = os_error_text(cause) or str(error)
        raise PrepareError(
            f"ingest into {str(output_dir)!r} failed: {cause_text}; the partial output was removed. Fix the cause and "
            "rerun the same command: ingest starts over and writes what an uninterrupted run writes"
        ) from error


def _ingest(
    inputs: list[str],
    output_dir: str | Path,
    *,
    options: IngestOptions,
    num_proc: int = 1,
    dedup: bool = True,
    shuffle: bool = True,
    shuffle_buffer: int = 10000,
    seed: int = 42,
    shard_size_mb: float = 64.0,
    source_weights: str | dict | None = None,
    progress: bool = True,
    runner=None,
) -> dict:
    """Run the ingest stage; returns the report (also written to ``output_dir/report.json``).

    Sources are processed in the shuffled source order and merged as they complete: in-process for
    ``num_proc == 1``, else through one temporary file per source in flight, written by ``num_proc`` processes or,
    with a ``runner`` (``stage.make_runner``), by datatrove tasks."""
    check_num_proc(num_proc)
    if shuffle_buffer < 1:
        raise PrepareError(f"shuffle_buffer must be >= 1, got {shuffle_buffer}")
    if shard_size_mb <= 0:
        raise PrepareError(f"shard_size_mb must be positive, got {shard_size_mb}")
    if not inputs:
        raise PrepareError("no --input given")
    output_dir = Path(output_dir)
    _check_output_dir(str(output_dir))
    resolved_out = os.path.realpath(output_dir)
    for item in inputs:
        if os.path.realpath(item) == resolved_out:
            raise PrepareError(f"output_dir {str(output_dir)!r} is also an input; choose another directory")
    weights = parse_source_weights(source_weights, [str(i) for i in inputs])  # one-line errors before any reading
    started = time.perf_counter()
    stats = IngestStats()
    sources = _apply_symlink_policy(discover_sources(inputs, stats=stats), stats, options.follow_symlinks)
    if any(s.columnar for s in sources):
        require_pyarrow()
    order = list(range(len(sources)))
    if shuffle:
        random.Random(f"{seed}/sources").shuffle(order)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*output_dir.glob("part-[0-9][0-9][0-9][0-9][0-9].jsonl"), output_dir / "report.json"]:
        stale.unlink(missing_ok=True)
    writer = JsonlPartWriter(output_dir, int(shard_size_mb * (1 << 20)))
    merger = _Merger(
        writer,
        stats,
        dedup=dedup,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        count_sources=weights is not None,
    )
    bar = _progress_bar(sum(s.size for s in sources), "ingest", progress)
    tmp = output_dir / ".ingest-tmp"  # spools of compressed sources that outgrow memory; worker outputs
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if num_proc == 1 and runner is None:
            for i in order:
                merger.add_source(
                    ingest_source(
                        i, source=sources[i], options=options, write=merger.add, progress=bar.update, spool_dir=str(tmp)
                    )
                )
        else:
            tasks = [(i, sources[i], options, str(tmp / f"source-{i:07d}.txt")) for i in order]
            counter = mp_context().Value("q", 0) if runner is None else None
            if runner is None:
                results = bounded_imap(
                    _ingest_task, tasks, num_proc=num_proc, initializer=_init_ingest_worker, initargs=(counter,)
                )
            else:  # the same tasks on datatrove (distributed.py); the parts land in tmp, on the shared filesystem
                results = runner.map(_ingest_task, tasks, work_dir=output_dir / ".datatrove-ingest")
            shown = 0
            for *result, part in results:
                merger.add_source(tuple(result))
                with open(part, "rb") as lines:
                    for line in lines:
                        merger.add(line)
                os.unlink(part)
                if counter is None:  # datatrove tasks report no progress on the way: a source at a time
                    bar.update(result[0].bytes_read)
                else:
                    bar.update(counter.value - shown)
                    shown = counter.value
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    outputs = merger.finish()
    bar.close()
    weighting = None
    if weights is not None:
        try:
            outputs, weighting = apply_source_weights(
                outputs,
                directory=output_dir,
                weights=weights,
                inputs=[str(i) for i in inputs],
                origin_of_source=[s.origin for s in sources],
                kept_by_source=merger.kept_by_source,
                stats=stats,
                codepoint_counts=merger.counts,
                part_bytes=int(shard_size_mb * (1 << 20)),
                seed=seed,
            )
        except PrepareError:  # no report.json is written: leave no parts that look like a corpus
            for part in outputs:
                part.unlink(missing_ok=True)
            raise
    left_out = weighting["left_out"] if weighting else {}
    nonzero = np.flatnonzero(merger.counts)
    np.save(output_dir / COUNTS_FILE, np.stack([nonzero, merger.counts[nonzero]], axis=1))
    seconds = time.perf_counter() - started
    report = {
        "documents_in": stats.documents_in,
        "documents_out": stats.documents_out,
        "documents_lost": stats.documents_lost,
        "documents_left_out": sum(left_out.values()),  # by --source_weights: never skipped, never in the output
        "skipped": dict(sorted(stats.skipped.items())),
        "files_read": stats.files_read,
        "files_skipped": dict(sorted(stats.files_skipped.items())),
        "files_partial": dict(sorted(stats.files_partial.items())),
        "files": dict(sorted(stats.files.items())),
        "examples": dict(sorted(stats.examples.items())),
        "bytes_read": stats.bytes_read,
        "chars_out": stats.chars_out,
        "outputs": [p.name for p in outputs],
        "output_bytes": {p.name: p.stat().st_size for p in outputs},
        "codepoint_counts": COUNTS_FILE,
        "seconds": round(seconds, 3),
        "mb_per_s": round(stats.bytes_read / 1e6 / max(seconds, 1e-9), 3),
        **({"source_weights": weighting} if weighting else {}),
        "settings": {
            "inputs": [str(i) for i in inputs],
            **asdict(options),
            "num_proc": num_proc,
            **({"executor": runner.kind, "tasks": runner.tasks} if runner is not None else {}),
            "dedup": dedup,
            "shuffle": shuffle,
            "shuffle_buffer": shuffle_buffer,
            "seed": seed,
            "shard_size_mb": shard_size_mb,
            "source_weights": source_weights
            if not isinstance(source_weights, dict)
            else {str(k): str(v) for k, v in source_weights.items()},
        },
    }
    accounted = (
        report["documents_out"]
        + sum(report["skipped"].values())
        + report["documents_lost"]
        + report["documents_left_out"]
    )
    assert report["documents_in"] == accounted, report
    (output_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return report


def _apply_symlink_policy(sources: list[Source], stats: IngestStats, follow: bool) -> list[Source]:
    """``follow_symlinks=False``: drop the sources found through a symlinked directory, one skip per directory."""
    if follow:
        return sources
    for link in sorted({s.link for s in sources if s.link is not None}):
        stats.skip_file("symlinked_directory", link, f"-> {os.path.realpath(link)} (--follow_symlinks false)")
    return [s for s in sources if s.link is None]
