"""Reading raw inputs for ingest: directories, zip archives (read in place), txt, gz/bz2/xz and json/jsonl/ndjson
(datasets .parquet/.arrow files: ``columnar.py``).

``discover_sources`` expands the inputs into ``Source`` units in a stable order (sorted walk, sorted zip members;
hidden files, nested archives and duplicates are counted, not read). A source is read as bytes through a
``BufferedReader`` (a line at most ``max_line_bytes`` at a time, never held whole) and parsed into documents
passed to a sink (``documents._DocumentSink``, which filters and hashes them):

* text: PaddleNLP ``trans_to_json.py`` rules (copied into JunnYu/FLASHQuad_pytorch): a document ends at a line
  equal (after strip) to ``doc_separator`` ("" = a blank line), or every non-blank line is one
  (``one_doc_per_line``); a document is cut at a line boundary before it exceeds ``max_doc_chars``;
* json: one object per line with a string ``text_field``, or a top-level array of at most 64 MB. A dotted
  ``text_field`` ("meta.body", "paragraphs.0.text") is a path into nested objects and lists (``field_value``),
  as ``datasets``' flattened column names are; a key that itself contains the dots wins.

Directories are walked following symlinked directories, each directory at most once (by device and inode), so a
``loop -> ..`` link is reported as ``symlink_loop`` instead of recursing; a source remembers the symlinked
directory it was reached through (``Source.link``) so that ``follow_symlinks=False`` can skip those by name.

A read error never escapes mid-parse: ``_RawAdapter`` stores it and ends the stream, so every byte decoded before
the failure reaches the parser, the line it cut is marked (``_read_lines`` yields ``CUT_LINE``), and the caller
decides what happens to the source's documents (``corpus.ingest_source``: commit, skip whole or keep partial).
Zip members are CRC-checked here (``_CrcCheckedMember``) after their last byte, not by ``zipfile``, which raises
inside the read that returns the last chunk and so loses it. A read error is the reason of a skipped file
(``_read_error_reason``); an input whose size or mtime changed since discovery is an ``InputChangedError``
(``_check_unchanged``). Deviation from trans_to_json.py: a UTF-8 BOM is dropped from the first line.

Code: discovering the sources (``Source``, ``discover_sources``, ``_check_unchanged``) is in ``discovery.py``; this
module opens, reads and parses them, and re-exports those names.
"""

from __future__ import annotations

import io
import json
import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from lmforge.data.discovery import (  # re-exported: discovering the sources lives in discovery.py
    COMPRESSIONS,
    JSON_SUFFIXES,
    Source,
    _check_unchanged,  # noqa: F401 (re-exported)
    discover_sources,
)
from lmforge.data.documents import IngestOptions

if TYPE_CHECKING:
    from lmforge.data.documents import _DocumentSink

__all__ = [
    "BINARY_SNIFF_BYTES",
    "COMPRESSIONS",
    "CUT_LINE",
    "JSON_SUFFIXES",
    "MAX_JSON_ARRAY_BYTES",
    "READ_ERRORS",
    "Source",
    "discover_sources",
    "field_value",
]

READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, lzma.LZMAError, NotImplementedError)
CUT_LINE = b""  # _read_lines: the last line of a failed stream (a real line is never empty: it ends in \n or EOF)
BINARY_SNIFF_BYTES = 8192  # git's heuristic: a NUL byte in the first 8 KB means binary
MAX_JSON_ARRAY_BYTES = 64 << 20


# --------------------------------------------------------------------------------------------------------------
# reading one source


class _RawAdapter(io.RawIOBase):
    """Lets io.BufferedReader (peek, readline with a limit) sit on any stream with ``read1``/``read``.

    A read error is kept in ``error`` and ends the stream instead of propagating: ``BufferedReader.readline`` would
    otherwise drop the bytes it had gathered for the line, and the parser could not tell a cut line from a whole
    one. ``read1`` (one underlying read) rather than ``read``: ``GzipFile.read(n)`` loops and loses what it had
    decompressed when the CRC trailer check raises on the way."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.read_some = getattr(stream, "read1", stream.read)
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.error is not None:
            return 0
        try:
            data = self.read_some(len(buffer))
        except READ_ERRORS as error:
            self.error = error
            return 0
        buffer[: len(data)] = data
        return len(data)


class _CrcCheckedMember:
    """A zip member whose CRC-32 is checked after its last byte has been delivered (``zipfile`` checks it inside
    the read of the last chunk and raises, losing that chunk). Encrypted members are refused (no password)."""

    def __init__(self, archive: zipfile.ZipFile, member: str) -> None:
        info = archive.getinfo(member)
        if info.flag_bits & 0x1:
            raise zipfile.BadZipFile(f"{member!r} is encrypted (no password support)")
        self.stream = archive.open(info)
        assert hasattr(self.stream, "_expected_crc"), "zipfile.ZipExtFile changed: update _CrcCheckedMember"
        self.stream._expected_crc = None  # zipfile's own check off: ours below runs after the data is out
        self.expected = info.CRC
        self.crc = 0
        self.name = member

    def read1(self, size: int) -> bytes:
        data = self.stream.read1(size)
        if data:
            self.crc = zlib.crc32(data, self.crc)
        elif self.crc != self.expected:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {self.name!r}")
        return data

    read = read1  # for gzip/bz2/lzma readers stacked on a member: a short read is fine, b"" only at the end

    def close(self) -> None:
        self.stream.close()


def _open_source(source: Source, stack: list) -> io.BufferedReader:
    """The source as a buffered byte stream; ``reader.raw.error`` holds the read error that ended it, if any."""
    if source.member is None:
        stream = open(source.path, "rb")  # noqa: SIM115 - closed by the caller through ``stack``
    else:
        archive = zipfile.ZipFile(source.path)
        stack.append(archive)
        stream = _CrcCheckedMember(archive, source.member)
    stack.append(stream)
    if source.compression:
        stream = COMPRESSIONS[source.compression](stream)
        stack.append(stream)
    reader = io.BufferedReader(_RawAdapter(stream), buffer_size=1 << 16)
    stack.append(reader)
    return reader


def _read_lines(reader: io.BufferedReader, limit: int, on_bytes: Callable[[int], None]) -> Iterator[bytes | None]:
    """Lines as bytes, None for a line longer than ``limit`` bytes (consumed in pieces, never held), and
    ``CUT_LINE`` in place of a last line that a read error cut off."""
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
        elif not line.endswith(b"\n") and reader.raw.error is not None:
            yield CUT_LINE
        else:
            yield line


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

    for number, raw in enumerate(lines, 1):
        if raw is CUT_LINE:  # the stream broke inside this line: the document it belongs to is lost
            sink.lose(f"{name}:{first_line or number}")
            return
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
    flush()


def _parse_json(
    reader: io.BufferedReader, lines: Iterator[bytes | None], name: str, sink: _DocumentSink, options: IngestOptions
) -> None:
    field_name = options.text_field
    nested = "." in field_name
    if reader.peek(64).lstrip().removeprefix(b"\xef\xbb\xbf")[:1] == b"[":
        _parse_json_array(reader, name, sink, options)
        return
    for number, raw in enumerate(lines, 1):
        where = f"{name}:{number}"
        if raw is CUT_LINE:
            sink.lose(where)
            return
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
        if nested:
            text = field_value(record, field_name)
        else:  # the common case, kept to one dict lookup
            text = record.get(field_name) if isinstance(record, dict) else None
        if not isinstance(text, str):
            sink.emit(None, where, "missing_text_field")
            continue
        sink.emit(text, where, None)


def _parse_json_array(reader: io.BufferedReader, name: str, sink: _DocumentSink, options: IngestOptions) -> None:
    data = reader.read(MAX_JSON_ARRAY_BYTES + 1)
    sink.stats.bytes_read += len(data)
    if reader.raw.error is not None:  # an array is whole or nothing: the caller reports the file
        return
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
        text = field_value(record, options.text_field)
        where = f"{name}[{number}]"
        sink.emit(
            text if isinstance(text, str) else None, where, None if isinstance(text, str) else "missing_text_field"
        )


def field_value(record: object, field_name: str) -> object:
    """``record[field_name]``, or for a dotted name the value at that path through objects and lists (a list step
    is a decimal index); None where the path does not exist."""
    if not isinstance(record, dict):
        return None
    if field_name in record or "." not in field_name:
        return record.get(field_name)
    value = record
    for step in field_name.split("."):
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def _read_error_reason(source: Source, error: BaseException) -> str:
    if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError):
        return "unreadable"
    if source.columnar:
        return f"bad_{source.columnar}"
    if source.compression:  # gzip.BadGzipFile, EOFError of a truncated stream, zlib/lzma errors
        return "bad_compression"
    if isinstance(error, zipfile.BadZipFile) or source.member is not None:
        return "bad_archive"
    return "unreadable"
