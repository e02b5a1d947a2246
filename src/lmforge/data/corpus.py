"""Ingest: raw text in any mix of directories, zip archives, txt, gz/bz2/xz and json/jsonl -> jsonl documents.

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
``truncated``) and every unusable file too (``binary_file``, ``empty_file``, ``unreadable``, ``bad_archive``,
``bad_compression``, ``not_a_regular_file``, ``hidden_file``, ``unsupported``, ``duplicate_input``,
``json_array_too_large``), with a few ``path:line`` examples; ``documents_in == documents_out + sum(skipped)``.
A bad path or option is a ``PrepareError`` (a ``ValueError``: one line on the command line).

Deviations from trans_to_json.py: length is measured on the stripped text without the trailing newlines it
counted (so ``min_doc_length`` is a true minimum); several inputs go into one corpus (its ``--no-merge`` is
``shard_size_mb``); shuffling is bounded instead of ``shuf``.
"""

from __future__ import annotations

import bz2
import collections
import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import lzma
import multiprocessing
import os
import random
import shutil
import stat
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.data.errors import InputChangedError, OutputWriteError, PrepareError, os_error_text
from lmforge.data.tokenizer import NUM_CODEPOINTS, codepoints

DOCUMENT_REASONS = (
    "too_short",
    "duplicate",
    "invalid_utf8",
    "line_too_long",
    "malformed_json",
    "missing_text_field",
    "truncated",
)
FILE_REASONS = (
    "binary_file",
    "empty_file",
    "unreadable",
    "bad_archive",
    "bad_compression",
    "not_a_regular_file",
    "hidden_file",
    "unsupported",
    "duplicate_input",
    "json_array_too_large",
)
MAX_EXAMPLES = 5
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSIONS: dict[str, Callable] = {
    ".gz": lambda stream: gzip.GzipFile(fileobj=stream, mode="rb"),
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
}
READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, lzma.LZMAError)
BINARY_SNIFF_BYTES = 8192  # git's heuristic: a NUL byte in the first 8 KB means binary
MAX_JSON_ARRAY_BYTES = 64 << 20
SHUFFLE_BUFFER_BYTES = 256 << 20  # the shuffle buffer also stops at this many bytes (documents can be ~4 MB each)


@dataclass(kw_only=True, frozen=True)
class IngestOptions:
    text_field: str = "text"
    min_doc_length: int = 10
    one_doc_per_line: bool = False
    doc_separator: str = ""
    normalize: bool = True
    max_line_bytes: int = 4 << 20
    max_doc_chars: int = 1_000_000

    def __post_init__(self) -> None:
        if self.min_doc_length < 0:
            raise PrepareError(f"min_doc_length must be >= 0, got {self.min_doc_length}")
        if self.max_line_bytes < 1:
            raise PrepareError(f"max_line_bytes must be >= 1, got {self.max_line_bytes}")
        if self.max_doc_chars < 1:
            raise PrepareError(f"max_doc_chars must be >= 1, got {self.max_doc_chars}")
        if not self.text_field:
            raise PrepareError("text_field must not be empty")


@dataclass(frozen=True)
class Source:
    """One readable unit: a file, or a member of a zip archive (read in place)."""

    path: str
    member: str | None = None
    size: int = 0  # uncompressed size when known (progress bar)
    stamp: tuple[int, int] | None = None  # (bytes, mtime_ns) of the file on disk at discovery (the archive for members)

    @property
    def name(self) -> str:
        return self.path if self.member is None else f"{self.path}::{self.member}"

    @property
    def inner_name(self) -> str:
        return (self.member or self.path).lower()

    @property
    def compression(self) -> str | None:
        return next((s for s in COMPRESSIONS if self.inner_name.endswith(s)), None)

    @property
    def is_json(self) -> bool:
        name = self.inner_name
        if self.compression:
            name = name[: -len(self.compression)]
        return name.endswith(JSON_SUFFIXES)


@dataclass
class IngestStats:
    """Counts by reason; merged across sources. ``documents_out`` counts documents that passed every filter."""

    documents_in: int = 0
    documents_out: int = 0
    skipped: collections.Counter = field(default_factory=collections.Counter)
    files_read: int = 0
    files_skipped: collections.Counter = field(default_factory=collections.Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    bytes_read: int = 0
    chars_out: int = 0

    def skip_document(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self._example(reason, where)

    def skip_file(self, reason: str, where: str) -> None:
        self.files_skipped[reason] += 1
        self._example(reason, where)

    def _example(self, reason: str, where: str) -> None:
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(where)

    def merge(self, other: IngestStats) -> None:
        self.documents_in += other.documents_in
        self.documents_out += other.documents_out
        self.skipped.update(other.skipped)
        self.files_read += other.files_read
        self.files_skipped.update(other.files_skipped)
        self.bytes_read += other.bytes_read
        self.chars_out += other.chars_out
        for reason, examples in other.examples.items():
            for where in examples:
                self._example(reason, where)


# --------------------------------------------------------------------------------------------------------------
# discovering sources


def discover_sources(inputs: Iterable[str | os.PathLike], *, stats: IngestStats) -> list[Source]:
    """Expand directories (sorted walk) and zip archives (sorted members) into sources, in a stable order."""
    sources: list[Source] = []
    seen: set[str] = set()

    def add_file(path: Path) -> None:
        key = os.path.realpath(path)
        if key in seen:
            stats.skip_file("duplicate_input", str(path))
            return
        seen.add(key)
        try:
            info = path.stat()
        except OSError:
            stats.skip_file("unreadable", str(path))
            return
        if not stat.S_ISREG(info.st_mode):
            stats.skip_file("not_a_regular_file", str(path))
            return
        stamp = (info.st_size, info.st_mtime_ns)
        if path.name.lower().endswith(".zip"):
            sources.extend(dataclasses.replace(member, stamp=stamp) for member in _zip_members(path, stats))
        else:
            sources.append(Source(str(path), size=info.st_size, stamp=stamp))

    for item in inputs:
        path = Path(item)
        if not path.exists() and not path.is_symlink():
            raise PrepareError(f"input path does not exist: {str(path)!r}")
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        stats.skip_file("hidden_file", os.path.join(root, name))
                    else:
                        add_file(Path(root) / name)
        else:
            add_file(path)
    return sources


def _zip_members(path: Path, stats: IngestStats) -> list[Source]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
    except (zipfile.BadZipFile, OSError, EOFError):
        stats.skip_file("bad_archive", str(path))
        return []
    members = []
    for info in infos:
        base = info.filename.rsplit("/", 1)[-1]
        where = f"{path}::{info.filename}"
        if base.startswith(".") or info.filename.startswith("__MACOSX/"):
            stats.skip_file("hidden_file", where)
        elif base.lower().endswith(".zip"):
            stats.skip_file("unsupported", where)  # nested archives are not opened
        else:
            members.append(Source(str(path), info.filename, size=info.file_size))
    return members


# --------------------------------------------------------------------------------------------------------------
# reading one source


class _RawAdapter(io.RawIOBase):
    """Lets io.BufferedReader (peek, readline with a limit) sit on any stream with ``read``."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _open_source(source: Source, stack: list) -> io.BufferedReader:
    if source.member is None:
        stream = open(source.path, "rb")  # noqa: SIM115 - closed by the caller through ``stack``
    else:
        archive = zipfile.ZipFile(source.path)
        stack.append(archive)
        stream = archive.open(source.member)
    stack.append(stream)
    if source.compression:
        stream = COMPRESSIONS[source.compression](stream)
        stack.append(stream)
    reader = io.BufferedReader(_RawAdapter(stream), buffer_size=1 << 16)
    stack.append(reader)
    return reader


def _read_lines(reader: io.BufferedReader, limit: int, on_bytes: Callable[[int], None]) -> Iterator[bytes | None]:
    """Lines as bytes, or None for a line longer than ``limit`` bytes (consumed in pieces, never held)."""
    while True:
        line = reader.readline(limit + 1)
        if not line:
            return
        on_bytes(len(line))
        if len(line) > limit and not line.endswith(b"\n"):
            while True:  # drain the rest of the long line
                rest = reader.readline(1 << 20)
                on_bytes(len(rest))
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
        else:
            yield line


class CodepointCounter:
    """Counts codepoints of many texts, in batches of ~1M characters (one bincount per batch)."""

    def __init__(self, batch_chars: int = 1 << 20) -> None:
        self.counts = np.zeros(0, dtype=np.int64)
        self.batch: list[str] = []
        self.size = 0
        self.batch_chars = batch_chars

    def add(self, text: str) -> None:
        self.batch.append(text)
        self.size += len(text)
        if self.size >= self.batch_chars:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            counts = np.bincount(codepoints("".join(self.batch)))
            if counts.size > self.counts.size:
                counts[: self.counts.size] += self.counts
                self.counts = counts
            else:
                self.counts[: counts.size] += counts
            self.batch, self.size = [], 0

    def sparse(self) -> tuple[np.ndarray, np.ndarray]:
        """(codepoints, counts) of the codepoints seen."""
        self._flush()
        nonzero = np.flatnonzero(self.counts)
        return nonzero, self.counts[nonzero]


class _DocumentSink:
    """Applies the document filters and writes survivors as ``hash \\t json`` lines (bytes) to ``write``."""

    def __init__(self, write: Callable[[bytes], Any], source_index: int, options: IngestOptions, stats) -> None:
        self.write = write
        self.source_index = source_index
        self.options = options
        self.stats = stats
        self.counter = CodepointCounter()
        self.count = 0

    def emit(self, text: str | None, where: str, bad: str | None = None) -> None:
        self.stats.documents_in += 1
        if bad is not None:
            self.stats.skip_document(bad, where)
            return
        if self.options.normalize:
            text = unicodedata.normalize("NFC", text)
        if len(text.strip()) < max(self.options.min_doc_length, 1):
            self.stats.skip_document("too_short", where)
            return
        try:  # a JSON "\ud800" escape decodes to a lone surrogate, which has no UTF-8 form
            text_bytes = json.dumps(text, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            self.stats.skip_document("invalid_utf8", where)
            return
        digest = hashlib.blake2b(text_bytes, digest_size=8).hexdigest()
        doc_id = f"{self.source_index}-{self.count}"
        self.count += 1
        head = f'{digest}\t{{"id": "{doc_id}", "text": '.encode()
        tail = f', "source": {json.dumps(where)}}}\n'.encode()
        try:
            self.write(head + text_bytes + tail)
        except OSError as error:  # the output side: must not be counted as an unreadable input (READ_ERRORS)
            raise OutputWriteError(f"cannot write the ingest output: {error}") from error
        self.counter.add(text)
        self.stats.documents_out += 1
        self.stats.chars_out += len(text)


def _parse_text(lines: Iterator[bytes | None], name: str, sink: _DocumentSink, options: IngestOptions) -> None:
    separator = options.doc_separator.strip()
    doc: list[str] = []
    size = 0
    bad: str | None = None
    first_line = 0

    def flush() -> None:
        nonlocal doc, size, bad, first_line
        if doc or bad:
            sink.emit("\n".join(doc), f"{name}:{first_line}", bad)
        doc, size, bad, first_line = [], 0, None, 0

    try:
        for number, raw in enumerate(lines, 1):
            if raw is None:
                line, problem = None, "line_too_long"
            else:
                try:
                    line, problem = raw.decode("utf-8").rstrip("\r\n"), None
                except UnicodeDecodeError:
                    line, problem = None, "invalid_utf8"
            if number == 1 and line is not None:
                line = line.removeprefix("\ufeff")
            if options.one_doc_per_line:
                if line is None or line.strip():
                    sink.emit(line, f"{name}:{number}", problem)
                continue
            if line is not None and line.strip() == separator:
                flush()
                continue
            first_line = first_line or number
            if line is None:
                bad = bad or problem
                continue
            if doc and size + len(line) + 1 > options.max_doc_chars:  # cut an overlong document at a line boundary
                flush()
                first_line = number
            doc.append(line)
            size += len(line) + 1
    except READ_ERRORS:
        if doc or bad:
            sink.emit(None, f"{name}:{first_line}", "truncated")
        raise
    flush()


def _parse_json(
    reader: io.BufferedReader, lines: Iterator[bytes | None], name: str, sink: _DocumentSink, options: IngestOptions
) -> None:
    field_name = options.text_field
    if reader.peek(64).lstrip().removeprefix(b"\xef\xbb\xbf")[:1] == b"[":
        _parse_json_array(reader, name, sink, options)
        return
    for number, raw in enumerate(lines, 1):
        where = f"{name}:{number}"
        if raw is None:
            sink.emit(None, where, "line_too_long")
            continue
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            sink.emit(None, where, "invalid_utf8")
            continue
        try:
            record = json.loads(line.removeprefix("\ufeff") if number == 1 else line)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested arrays
            sink.emit(None, where, "malformed_json")
            continue
        text = record.get(field_name) if isinstance(record, dict) else None
        if not isinstance(text, str):
            sink.emit(None, where, "missing_text_field")
            continue
        sink.emit(text, where, None)


def _parse_json_array(reader: io.BufferedReader, name: str, sink: _DocumentSink, options: IngestOptions) -> None:
    data = reader.read(MAX_JSON_ARRAY_BYTES + 1)
    sink.stats.bytes_read += len(data)
    if len(data) > MAX_JSON_ARRAY_BYTES:
        sink.stats.skip_file("json_array_too_large", name)
        return
    try:
        records = json.loads(data.decode("utf-8").removeprefix("\ufeff"))
    except UnicodeDecodeError:
        sink.emit(None, name, "invalid_utf8")
        return
    except (ValueError, RecursionError):
        sink.emit(None, name, "malformed_json")
        return
    for number, record in enumerate(records if isinstance(records, list) else [records]):
        text = record.get(options.text_field) if isinstance(record, dict) else None
        where = f"{name}[{number}]"
        sink.emit(
            text if isinstance(text, str) else None, where, None if isinstance(text, str) else "missing_text_field"
        )


def _read_error_reason(source: Source, error: BaseException) -> str:
    if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError):
        return "unreadable"
    if source.compression:  # gzip.BadGzipFile, EOFError of a truncated stream, zlib/lzma errors
        return "bad_compression"
    if isinstance(error, zipfile.BadZipFile) or source.member is not None:
        return "bad_archive"
    return "unreadable"


def _check_unchanged(source: Source) -> None:
    if source.stamp is None:
        return
    try:
        info = os.stat(source.path)
    except FileNotFoundError:
        raise InputChangedError(f"input {source.path!r} disappeared during ingest") from None
    except OSError:
        return  # unreadable now: reported as a skipped file by the caller
    if (info.st_size, info.st_mtime_ns) != source.stamp:
        raise InputChangedError(
            f"input {source.path!r} changed during ingest ({source.stamp[0]} -> {info.st_size} bytes, modified "
            "after it was listed)"
        )


def ingest_source(
    source_index: int,
    *,
    source: Source,
    options: IngestOptions,
    write: Callable[[bytes], Any],
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[IngestStats, tuple[np.ndarray, np.ndarray]]:
    """Parse one source, passing ``hash \\t json`` lines to ``write``; never raises on bad content.

    Returns the counts and the codepoint histogram (sparse) of the documents it kept."""
    stats = IngestStats()
    stack: list = []

    def on_bytes(n: int) -> None:
        stats.bytes_read += n
        progress(n)

    sink = _DocumentSink(write, source_index, options, stats)
    try:
        reader = _open_source(source, stack)
        head = reader.peek(BINARY_SNIFF_BYTES)[:BINARY_SNIFF_BYTES]
        if not head:
            stats.skip_file("empty_file", source.name)
        elif b"\x00" in head:
            stats.skip_file("binary_file", source.name)
        else:
            lines = _read_lines(reader, options.max_line_bytes, on_bytes)
            if source.is_json:
                _parse_json(reader, lines, source.name, sink, options)
            else:
                _parse_text(lines, source.name, sink, options)
            stats.files_read += 1
        _check_unchanged(source)
    except READ_ERRORS as error:
        _check_unchanged(source)  # vanished or rewritten: an error, not a skipped file
        stats.skip_file(_read_error_reason(source, error), f"{source.name}: {type(error).__name__}: {error}")
    finally:
        for closable in reversed(stack):
            with contextlib.suppress(READ_ERRORS):  # closing a truncated stream may raise again
                closable.close()
    return stats, sink.counter.sparse()


# --------------------------------------------------------------------------------------------------------------
# parallel map with bounded memory


def bounded_imap(
    function: Callable,
    items: Iterable[Any],
    *,
    num_proc: int,
    initializer: Callable | None = None,
    initargs: tuple = (),
    max_in_flight: int | None = None,
) -> Iterator[Any]:
    """``map(function, items)`` in order over ``num_proc`` processes, with at most ``max_in_flight`` items queued
    (``Pool.imap`` reads its whole input ahead, which defeats streaming). ``num_proc == 1`` runs in-process."""
    if num_proc == 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(function, items)
        return
    max_in_flight = max_in_flight or 2 * num_proc
    with mp_context().Pool(num_proc, initializer=initializer, initargs=initargs) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.apply_async(function, (item,)))
            if len(pending) >= max_in_flight:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def mp_context():
    """fork where available: workers inherit imported modules (rjieba's dictionary, numpy) instead of re-importing."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def check_num_proc(num_proc: int) -> int:
    if num_proc < 1:
        raise PrepareError(f"num_proc must be >= 1, got {num_proc}")
    return num_proc


# --------------------------------------------------------------------------------------------------------------
# merging: dedup + bounded shuffle + output parts


class _HashSet:
    """Set of 64-bit hashes at ~8 bytes each: a sorted numpy array plus a small Python set merged into it."""

    def __init__(self, flush_every: int = 1 << 18) -> None:  # a set of 2^18 ints is ~20 MB; merges stay cheap
        self.sorted = np.zeros(0, dtype=np.uint64)
        self.recent: set[int] = set()
        self.flush_every = flush_every

    def add(self, value: int) -> bool:
        """Add ``value``; False if it was already present."""
        if value in self.recent:
            return False
        if self.sorted.size:
            i = int(np.searchsorted(self.sorted, np.uint64(value)))
            if i < self.sorted.size and int(self.sorted[i]) == value:
                return False
        self.recent.add(value)
        if len(self.recent) >= self.flush_every:
            self.sorted = np.union1d(self.sorted, np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent)))
            self.recent.clear()
        return True


class JsonlPartWriter:
    """Writes lines into ``part-00000.jsonl``, ``part-00001.jsonl``... of about ``part_bytes`` each."""

    def __init__(self, directory: Path, part_bytes: int, prefix: str = "part") -> None:
        self.directory = directory
        self.part_bytes = part_bytes
        self.prefix = prefix
        self.paths: list[Path] = []
        self._file = None
        self._size = 0

    def write(self, line: bytes) -> None:
        if self._file is None or self._size >= self.part_bytes:
            self._roll()
        self._file.write(line)
        self._size += len(line)

    def _roll(self) -> None:
        if self._file is not None:
            self._file.close()
        path = self.directory / f"{self.prefix}-{len(self.paths):05d}.jsonl"
        self.paths.append(path)
        self._file = open(path, "wb")  # noqa: SIM115 - closed in _roll/close
        self._size = 0

    def close(self) -> list[Path]:
        if self._file is not None:
            self._file.close()
            self._file = None
        return self.paths


class _Merger:
    """Main-process end of ingest: drops duplicate hashes, shuffles through a bounded buffer, writes the parts and
    keeps the codepoint histogram of what it writes."""

    def __init__(
        self, writer: JsonlPartWriter, stats: IngestStats, *, dedup: bool, shuffle: bool, shuffle_buffer: int, seed
    ) -> None:
        self.writer = writer
        self.stats = stats
        self.seen = _HashSet() if dedup else None
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.rng = random.Random(f"{seed}/buffer")
        self.buffer: list[bytes] = []
        self.buffer_bytes = 0
        self.counts = np.zeros(NUM_CODEPOINTS, dtype=np.int64)

    def add_source(self, result: tuple[IngestStats, tuple[np.ndarray, np.ndarray]]) -> None:
        stats, (cps, counts) = result
        self.stats.merge(stats)
        self.counts[cps] += counts

    def add(self, line: bytes) -> None:
        payload = line[17:]
        if self.seen is not None and not self.seen.add(int(line[:16], 16)):
            record = json.loads(payload)
            self.stats.documents_out -= 1
            self.stats.chars_out -= len(record["text"])
            self.stats.skip_document("duplicate", record["source"])
            np.subtract.at(self.counts, codepoints(record["text"]), 1)
        elif not self.shuffle:
            self.writer.write(payload)
        else:
            self.buffer.append(payload)
            self.buffer_bytes += len(payload)
            # over budget (documents or bytes): emit random buffered documents (swap with the last, pop)
            while len(self.buffer) > self.shuffle_buffer or self.buffer_bytes > SHUFFLE_BUFFER_BYTES:
                j = self.rng.randrange(len(self.buffer))
                self.buffer[j], self.buffer[-1] = self.buffer[-1], self.buffer[j]
                emitted = self.buffer.pop()
                self.buffer_bytes -= len(emitted)
                self.writer.write(emitted)

    def finish(self) -> list[Path]:
        self.rng.shuffle(self.buffer)
        for payload in self.buffer:
            self.writer.write(payload)
        self.buffer, self.buffer_bytes = [], 0
        return self.writer.close()


def _ingest_task(task: tuple[int, Source, IngestOptions, str]) -> tuple[IngestStats, tuple, str]:
    index, source, options, out_path = task
    with open(out_path, "wb") as out:
        result = ingest_source(index, source=source, options=options, write=out.write, progress=_worker_progress)
    return (*result, out_path)


_PROGRESS_COUNTER = None


def _init_ingest_worker(counter) -> None:
    global _PROGRESS_COUNTER
    _PROGRESS_COUNTER = counter


def _worker_progress(n: int) -> None:
    if _PROGRESS_COUNTER is not None and n:
        with _PROGRESS_COUNTER.get_lock():
            _PROGRESS_COUNTER.value += n


COUNTS_FILE = "codepoint_counts.npy"


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
    progress: bool = True,
) -> dict:
    """Run the ingest stage; returns the report (also written to ``output_dir/report.json``).

    Sources are processed in the shuffled source order and merged as they complete: in-process for
    ``num_proc == 1``, else through one temporary file per source in flight."""
    check_num_proc(num_proc)
    if shuffle_buffer < 1:
        raise PrepareError(f"shuffle_buffer must be >= 1, got {shuffle_buffer}")
    if shard_size_mb <= 0:
        raise PrepareError(f"shard_size_mb must be positive, got {shard_size_mb}")
    if not inputs:
        raise PrepareError("no --input given")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise PrepareError(f"output_dir {str(output_dir)!r} exists and is not a directory")
    resolved_out = os.path.realpath(output_dir)
    for item in inputs:
        if os.path.realpath(item) == resolved_out:
            raise PrepareError(f"output_dir {str(output_dir)!r} is also an input; choose another directory")
    started = time.perf_counter()
    stats = IngestStats()
    sources = discover_sources(inputs, stats=stats)
    order = list(range(len(sources)))
    if shuffle:
        random.Random(f"{seed}/sources").shuffle(order)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*output_dir.glob("part-[0-9][0-9][0-9][0-9][0-9].jsonl"), output_dir / "report.json"]:
        stale.unlink(missing_ok=True)
    writer = JsonlPartWriter(output_dir, int(shard_size_mb * (1 << 20)))
    merger = _Merger(writer, stats, dedup=dedup, shuffle=shuffle, shuffle_buffer=shuffle_buffer, seed=seed)
    bar = _progress_bar(sum(s.size for s in sources), "ingest", progress)
    if num_proc == 1:
        for i in order:
            merger.add_source(
                ingest_source(i, source=sources[i], options=options, write=merger.add, progress=bar.update)
            )
    else:
        tmp = output_dir / ".ingest-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            tasks = [(i, sources[i], options, str(tmp / f"source-{i:07d}.txt")) for i in order]
            counter = mp_context().Value("q", 0)
            shown = 0
            for *result, part in bounded_imap(
                _ingest_task, tasks, num_proc=num_proc, initializer=_init_ingest_worker, initargs=(counter,)
            ):
                merger.add_source(tuple(result))
                with open(part, "rb") as lines:
                    for line in lines:
                        merger.add(line)
                os.unlink(part)
                bar.update(counter.value - shown)
                shown = counter.value
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    outputs = merger.finish()
    bar.close()
    nonzero = np.flatnonzero(merger.counts)
    np.save(output_dir / COUNTS_FILE, np.stack([nonzero, merger.counts[nonzero]], axis=1))
    seconds = time.perf_counter() - started
    report = {
        "documents_in": stats.documents_in,
        "documents_out": stats.documents_out,
        "skipped": dict(sorted(stats.skipped.items())),
        "files_read": stats.files_read,
        "files_skipped": dict(sorted(stats.files_skipped.items())),
        "examples": dict(sorted(stats.examples.items())),
        "bytes_read": stats.bytes_read,
        "chars_out": stats.chars_out,
        "outputs": [p.name for p in outputs],
        "output_bytes": {p.name: p.stat().st_size for p in outputs},
        "codepoint_counts": COUNTS_FILE,
        "seconds": round(seconds, 3),
        "mb_per_s": round(stats.bytes_read / 1e6 / max(seconds, 1e-9), 3),
        "settings": {
            "inputs": [str(i) for i in inputs],
            **asdict(options),
            "num_proc": num_proc,
            "dedup": dedup,
            "shuffle": shuffle,
            "shuffle_buffer": shuffle_buffer,
            "seed": seed,
            "shard_size_mb": shard_size_mb,
        },
    }
    assert report["documents_in"] == report["documents_out"] + sum(report["skipped"].values()), report
    (output_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return report


def corpus_codepoint_counts(directory: str | Path) -> np.ndarray | None:
    """Dense codepoint histogram that ``ingest`` saved for ``directory``, or None when it is missing or the parts
    changed since (their byte sizes are recorded in report.json)."""
    directory = Path(directory)
    try:
        report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
        sparse = np.load(directory / report["codepoint_counts"])
    except (OSError, KeyError, ValueError):
        return None
    parts = {p.name: p.stat().st_size for p in directory.glob("part-*.jsonl")}
    if parts != report.get("output_bytes"):
        return None
    counts = np.zeros(NUM_CODEPOINTS, dtype=np.int64)
    counts[sparse[:, 0]] = sparse[:, 1]
    return counts


def _progress_bar(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total or None,
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1 << 20,
        disable=None if enabled else True,  # None: off when stderr is not a terminal
        smoothing=0.1,
    )


# --------------------------------------------------------------------------------------------------------------
# reading the corpus back (tokenizer and shard stages)


def corpus_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The jsonl files of a corpus: a ``prepare corpus`` directory (its ``part-*.jsonl``), jsonl files or dirs."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise PrepareError(f"input path does not exist: {str(path)!r}")
        if path.is_dir():
            found = sorted(path.glob("part-*.jsonl"))
            if found and not (path / "report.json").is_file():  # written last by ingest: its parts are complete
                raise PrepareError(
                    f"{str(path)!r} holds part-*.jsonl but no report.json: an interrupted 'lmforge prepare corpus'; "
                    "rerun it (it starts over) before the next stage"
                )
            found = found or sorted(path.rglob("*.jsonl"))
            if not found:
                raise PrepareError(f"no .jsonl files in {str(path)!r}; run 'lmforge prepare corpus' first")
            files.extend(found)
        else:
            files.append(path)
    if not files:
        raise PrepareError("no corpus files given")
    return files


def iter_texts(files: Iterable[Path], *, text_field: str = "text") -> Iterator[str]:
    """Texts of the jsonl documents; lines that are not a JSON object with a valid string ``text_field`` are
    skipped (``prepare corpus`` writes none of those)."""
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                text = record.get(text_field) if isinstance(record, dict) else None
                if isinstance(text, str) and is_encodable(text):
                    yield text


def is_encodable(text: str) -> bool:
    """False for strings with lone surrogates (from JSON escapes), which the Rust tokenizers cannot take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
