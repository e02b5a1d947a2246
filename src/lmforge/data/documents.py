"""Documents between reading and writing: the filters, exact de-duplication, the shuffle buffer and the parts.

``IngestOptions`` are the options of ``lmforge prepare corpus``; ``IngestStats`` counts every document and file by
reason (``documents_in == documents_out + sum(skipped) + documents_lost``, checked at the end of ingest) and keeps
the verdict of every source that was not read in full (``files``: skipped, or kept partial). ``_DocumentSink`` applies
the filters to each parsed document (Unicode NFC, ``min_doc_length`` on the stripped text, no lone surrogates) and
writes survivors as ``blake2b-64 hash \t json`` lines. ``_Merger`` (main process) drops hashes it has seen (8 bytes
per distinct document: a sorted numpy array plus a small set; two different documents collide with probability
~n^2/2^65, 1e-5 for 15M documents) and passes documents through a seeded shuffle buffer of ``shuffle_buffer``
documents (and at most 256 MB) into ``part-00000.jsonl``... (``JsonlPartWriter``), keeping the codepoint histogram
of what it writes. Output depends on the seed, never on ``num_proc``.

Deviation from trans_to_json.py (which ends with ``shuf``, holding the whole file): the shuffle is bounded.
"""

from __future__ import annotations

import collections
import hashlib
import json
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring, encode_basestring_ascii
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.data.errors import OutputWriteError, PrepareError
from lmforge.data.tokenizer_spec import NUM_CODEPOINTS, codepoints

DOCUMENT_REASONS = (
    "too_short",
    "duplicate",
    "invalid_utf8",
    "line_too_long",
    "malformed_json",
    "missing_text_field",
    "damaged_file",  # in a compressed file or zip member that failed (bad CRC, broken stream): skipped whole
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
    "symlink_loop",
    "symlinked_directory",
    "bad_parquet",  # a .parquet file that pyarrow cannot read (truncated, corrupt page or footer)
    "bad_arrow",  # an .arrow file that pyarrow cannot read (truncated stream, batch failing validation)
    "dataset_metadata",  # state.json / dataset_info.json / dataset_dict.json of a datasets save_to_disk directory
    "dataset_cache",  # an .arrow file in a save_to_disk directory that its state.json does not list (cache-*.arrow)
)
VERDICTS = ("read", "skipped", "kept_partial")
MAX_EXAMPLES = 5

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
    keep_partial: bool = False
    follow_symlinks: bool = True

    def __post_init__(self) -> None:
        if self.min_doc_length < 0:
            raise PrepareError(f"min_doc_length must be >= 0, got {self.min_doc_length}")
        if self.max_line_bytes < 1:
            raise PrepareError(f"max_line_bytes must be >= 1, got {self.max_line_bytes}")
        if self.max_doc_chars < 1:
            raise PrepareError(f"max_doc_chars must be >= 1, got {self.max_doc_chars}")
        if not self.text_field or "" in self.text_field.split("."):
            raise PrepareError(f"text_field must be a name or a dotted path like 'meta.text', got {self.text_field!r}")


@dataclass
class IngestStats:
    """Counts by reason; merged across sources. ``documents_out`` counts documents that passed every filter;
    ``documents_lost`` those cut by a read error in a file whose other documents were kept (``--keep_partial``,
    or an uncompressed file, which is not buffered). ``files`` holds the verdict of every source not read in
    full, by name: ``{"verdict": "skipped" | "kept_partial", "reason": ..., "error": ..., counts}``."""

    documents_in: int = 0
    documents_out: int = 0
    documents_lost: int = 0
    skipped: collections.Counter = field(default_factory=collections.Counter)
    files_read: int = 0
    files_skipped: collections.Counter = field(default_factory=collections.Counter)
    files_partial: collections.Counter = field(default_factory=collections.Counter)
    files: dict[str, dict] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    bytes_read: int = 0
    chars_out: int = 0

    def skip_document(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self._example(reason, where)

    def skip_file(self, reason: str, name: str, error: str | None = None, **counts: int) -> None:
        self.files_skipped[reason] += 1
        self._example(reason, name if error is None else f"{name}: {error}")
        self.files[name] = {"verdict": "skipped", "reason": reason, **({"error": error} if error else {}), **counts}

    def keep_partial_file(self, reason: str, name: str, error: str, **counts: int) -> None:
        self.files_partial[reason] += 1
        self._example(f"kept_partial/{reason}", f"{name}: {error}")
        self.files[name] = {"verdict": "kept_partial", "reason": reason, "error": error, **counts}

    def _example(self, reason: str, where: str) -> None:
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(where)

    def merge(self, other: IngestStats) -> None:
        self.documents_in += other.documents_in
        self.documents_out += other.documents_out
        self.documents_lost += other.documents_lost
        self.skipped.update(other.skipped)
        self.files_read += other.files_read
        self.files_skipped.update(other.files_skipped)
        self.files_partial.update(other.files_partial)
        self.files.update(other.files)
        self.bytes_read += other.bytes_read
        self.chars_out += other.chars_out
        for reason, examples in other.examples.items():
            for where in examples:
                self._example(reason, where)


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

    def lose(self, where: str, count: int = 1) -> None:
        """A document cut by a read error (or ``count`` of them, the rows a damaged parquet file had left): seen,
        never written (``ingest_source`` decides how it is counted)."""
        self.stats.documents_in += count
        self.stats.documents_lost += count
        self.stats._example("lost", where)

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
            text_bytes = _json_string(text).encode("utf-8")
        except UnicodeEncodeError:
            self.stats.skip_document("invalid_utf8", where)
            return
        digest = hashlib.blake2b(text_bytes, digest_size=8).hexdigest()
        doc_id = f"{self.source_index}-{self.count}"
        self.count += 1
        head = f'{digest}\t{{"id": "{doc_id}", "text": '.encode()
        tail = f', "source": {_json_ascii_string(where)}}}\n'.encode()
        try:
            self.write(head + text_bytes + tail)
        except OSError as error:  # the output side: must not be counted as an unreadable input (READ_ERRORS)
            raise OutputWriteError(f"cannot write the ingest output: {error}") from error
        self.counter.add(text)
        self.stats.documents_out += 1
        self.stats.chars_out += len(text)


# What json.dumps(s, ensure_ascii=False) and json.dumps(s) return for a str, without building a JSONEncoder per call
# (json.dumps with a non-default argument does: a third of the per-document cost of ingest).
_json_string = encode_basestring
_json_ascii_string = encode_basestring_ascii


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
        self,
        writer: JsonlPartWriter,
        stats: IngestStats,
        *,
        dedup: bool,
        shuffle: bool,
        shuffle_buffer: int,
        seed,
        count_sources: bool = False,
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
        # documents written per source number (for --source_weights): the id "<source>-<n>" opens the payload
        self.kept_by_source: collections.Counter | None = collections.Counter() if count_sources else None

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
            return
        if self.kept_by_source is not None:
            self.kept_by_source[int(payload[8 : payload.index(b"-", 8)])] += 1
        if not self.shuffle:
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
