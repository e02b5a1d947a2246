"""One source of the ingest (a file, or a zip member read in place) -> ``hash \\t json`` lines: sniffing, parsing
(``readers.py``, ``columnar.py``) and the commit that makes a compressed source all or nothing; plus the worker
task that does the same into a temporary file when ``corpus._ingest`` runs sources in other processes or on
datatrove. ``corpus.py`` merges what this returns (dedup, shuffle, parts); every name here stays importable from
there, but a test that patches what this module looks up (``_parse_text``, ``_open_source``,
``SPOOL_MEMORY_BYTES``) patches it here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from lmforge.data.columnar import parse_columnar
from lmforge.data.discovery import Source, _check_unchanged
from lmforge.data.documents import CodepointCounter, IngestOptions, IngestStats, _DocumentSink
from lmforge.data.readers import (
    BINARY_SNIFF_BYTES,
    READ_ERRORS,
    _open_source,
    _parse_json,
    _parse_text,
    _read_error_reason,
    _read_lines,
)

__all__ = ["SPOOL_MEMORY_BYTES", "ingest_source"]


SPOOL_MEMORY_BYTES = 16 << 20  # a compressed source's pending documents beyond this spill to a temporary file


def ingest_source(
    source_index: int,
    *,
    source: Source,
    options: IngestOptions,
    write: Callable[[bytes], Any],
    progress: Callable[[int], None] = lambda n: None,
    spool_dir: str | None = None,
) -> tuple[IngestStats, tuple[np.ndarray, np.ndarray]]:
    """Parse one source, passing ``hash \\t json`` lines to ``write``; never raises on bad content.

    A compressed file or zip member is a transaction: its lines wait in a spool (memory up to
    ``SPOOL_MEMORY_BYTES``, then a temporary file in ``spool_dir``) until it has been read to the end and its CRC
    checked. If reading fails, the spool is dropped and every document the source gave is counted as
    ``damaged_file`` (the file verdict is ``skipped``), or with ``options.keep_partial`` the spool is written and
    the document the failure cut is counted in ``documents_lost`` (verdict ``kept_partial``). An uncompressed file
    is written as it is read (a 10 GB text file is not copied aside), so a read error in the middle of one keeps
    what came before: ``kept_partial`` whatever ``keep_partial`` says.

    Returns the counts and the codepoint histogram (sparse) of the documents it kept."""
    stats = IngestStats()
    stack: list = []

    def on_bytes(n: int) -> None:
        stats.bytes_read += n
        progress(n)

    spool = None  # closed below, after the commit
    if source.is_transactional:
        spool = tempfile.SpooledTemporaryFile(SPOOL_MEMORY_BYTES, dir=spool_dir)  # noqa: SIM115
    sink = _DocumentSink(write if spool is None else spool.write, source_index, options, stats)
    failure: BaseException | None = None
    parsed = False
    try:
        if source.columnar is not None:  # datasets Parquet/Arrow: binary, read by pyarrow in record batches
            failure = parse_columnar(source.path, source.columnar, source.name, sink, options, on_bytes)
            parsed = source.name not in stats.files  # not an empty_file
        else:
            failure, parsed = _parse_bytes(source, stack, sink, options, on_bytes)
        _check_unchanged(source)
    except READ_ERRORS as error:  # opening failed: missing, permissions, not a zip, bad member header
        _check_unchanged(source)  # vanished or rewritten: an error, not a skipped file
        failure = error
    finally:
        for closable in reversed(stack):
            with contextlib.suppress(READ_ERRORS):  # closing a truncated stream may raise again
                closable.close()
    try:
        if failure is None:
            stats.files_read += parsed
            _commit(spool, write)
        elif stats.documents_out and (options.keep_partial or spool is None):
            stats.files_read += 1
            _commit(spool, write)
            stats.keep_partial_file(
                _read_error_reason(source, failure),
                source.name,
                f"{type(failure).__name__}: {failure}",
                documents_kept=stats.documents_out,
                documents_lost=stats.documents_lost,
            )
        else:  # nothing of it reaches the output: whatever passed the filters, or was cut, is skipped with it
            damaged = stats.documents_out + stats.documents_lost
            if damaged:
                stats.skipped["damaged_file"] += damaged
                stats._example("damaged_file", source.name)
            stats.examples.pop("lost", None)
            stats.documents_out = stats.documents_lost = stats.chars_out = 0
            sink.counter = CodepointCounter()
            stats.skip_file(
                _read_error_reason(source, failure),
                source.name,
                f"{type(failure).__name__}: {failure}",
                documents_skipped=damaged,
            )
    finally:
        if spool is not None:
            spool.close()
    return stats, sink.counter.sparse()


def _parse_bytes(
    source: Source, stack: list, sink: _DocumentSink, options: IngestOptions, on_bytes: Callable[[int], None]
) -> tuple[BaseException | None, bool]:
    """Parse a text or JSON source (sniffed for empty and binary files first): (the read error that ended it, if
    any; whether it was parsed rather than skipped as a file). What it opens goes on ``stack``."""
    stats = sink.stats
    reader = _open_source(source, stack)
    head = reader.peek(BINARY_SNIFF_BYTES)[:BINARY_SNIFF_BYTES]
    if reader.raw.error is not None:
        return reader.raw.error, False
    if not head:
        stats.skip_file("empty_file", source.name)
        return None, False
    if b"\x00" in head:
        stats.skip_file("binary_file", source.name)
        return None, False
    lines = _read_lines(reader, options.max_line_bytes, on_bytes)
    if source.is_json:
        _parse_json(reader, lines, source.name, sink, options)
    else:
        _parse_text(lines, source.name, sink, options)
    parsed = source.name not in stats.files  # not skipped inside the parser (json_array_too_large)
    return reader.raw.error, parsed


def _commit(spool, write: Callable[[bytes], Any]) -> None:
    """Pass a source's spooled lines on, in order (they are ``hash \\t json\\n`` lines: JSON escapes newlines)."""
    if spool is None:
        return
    spool.seek(0)
    for line in spool:
        write(line)


def _ingest_task(task: tuple[int, Source, IngestOptions, str]) -> tuple[IngestStats, tuple, str]:
    index, source, options, out_path = task
    with open(out_path, "wb") as out:
        result = ingest_source(
            index,
            source=source,
            options=options,
            write=out.write,
            progress=_worker_progress,
            spool_dir=os.path.dirname(out_path),
        )
    return (*result, out_path)


_PROGRESS_COUNTER = None


def _init_ingest_worker(counter) -> None:
    global _PROGRESS_COUNTER
    _PROGRESS_COUNTER = counter


def _worker_progress(n: int) -> None:
    if _PROGRESS_COUNTER is not None and n:
        with _PROGRESS_COUNTER.get_lock():
            _PROGRESS_COUNTER.value += n
