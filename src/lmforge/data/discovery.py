"""Discovering the raw inputs of ingest: ``discover_sources`` expands files, directories and zip archives into
``Source`` units in a stable order (sorted walk, sorted zip members; hidden files, nested archives and duplicates
are counted, not read), following symlinked directories at most once each (a ``loop -> ..`` link is a
``symlink_loop``), and ``_check_unchanged`` tells whether a source changed on disk since it was listed. Reading and
parsing the sources is ``readers.py``'s, which re-exports these names."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import lzma
import os
import stat
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lmforge.data.columnar import columnar_kind, datasets_directory_files
from lmforge.data.documents import IngestStats
from lmforge.data.errors import InputChangedError, PrepareError

__all__ = ["COMPRESSIONS", "JSON_SUFFIXES", "Source", "discover_sources"]

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSIONS: dict[str, Callable] = {
    ".gz": lambda stream: gzip.GzipFile(fileobj=stream, mode="rb"),
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
}


@dataclass(frozen=True)
class Source:
    """One readable unit: a file, or a member of a zip archive (read in place)."""

    path: str
    member: str | None = None
    size: int = 0  # uncompressed size when known (progress bar)
    stamp: tuple[int, int] | None = None  # (bytes, mtime_ns) of the file on disk at discovery (the archive for members)
    link: str | None = None  # the symlinked directory this source was found through, if any
    origin: int = 0  # which --input item it came from (the key of --source_weights)

    @property
    def is_transactional(self) -> bool:
        """Compressed, archived or columnar: its documents are committed only once it has been read to the end and
        checked."""
        return self.member is not None or self.compression is not None or self.columnar is not None

    @property
    def columnar(self) -> str | None:
        """The kind, "parquet" or "arrow", of a datasets Parquet/Arrow file (read by ``columnar.parse_columnar``)."""
        return None if self.member is not None else columnar_kind(self.path)

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


def discover_sources(inputs: Iterable[str | os.PathLike], *, stats: IngestStats) -> list[Source]:
    """Expand directories (sorted walk) and zip archives (sorted members) into sources, in a stable order."""
    sources: list[Source] = []
    seen: set[str] = set()

    def add_file(path: Path, link: str | None = None) -> None:
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
            members = _zip_members(path, stats)
            sources.extend(dataclasses.replace(member, stamp=stamp, link=link) for member in members)
        else:
            sources.append(Source(str(path), size=info.st_size, stamp=stamp, link=link))

    for origin, item in enumerate(inputs):
        path = Path(item)
        if not path.exists() and not path.is_symlink():
            raise PrepareError(f"input path does not exist: {str(path)!r}")
        first = len(sources)
        if path.is_dir():
            _walk_directory(path, add_file, stats)
        else:
            add_file(path)
        sources[first:] = [dataclasses.replace(s, origin=origin) for s in sources[first:]]
    return sources


def _walk_directory(top: Path, add_file: Callable[[Path, str | None], None], stats: IngestStats) -> None:
    """Sorted walk that follows symlinked directories but enters each directory (device, inode) once: a link to an
    ancestor of where it lies (``loop -> ..``) is a ``symlink_loop``, a second way into a directory already walked
    a ``duplicate_input``; neither is entered."""

    def identity(path: str) -> tuple[int, int]:
        info = os.stat(path)
        return info.st_dev, info.st_ino

    walked = {identity(str(top))}
    links: dict[str, str] = {}  # walked directory -> the symlinked directory it lies under
    for root, dirs, files in os.walk(top, followlinks=True):
        link = links.get(root)
        kept = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            path = os.path.join(root, name)
            try:
                key = identity(path)
            except OSError:
                stats.skip_file("unreadable", path)
                continue
            target, here = os.path.realpath(path), os.path.realpath(root)
            if here == target or here.startswith(target.rstrip(os.sep) + os.sep):  # an ancestor: walking it loops
                stats.skip_file("symlink_loop", path, f"-> {target}")
                continue
            if key in walked:
                stats.skip_file("duplicate_input", path, f"-> {target} (already walked)")
                continue
            walked.add(key)
            kept.append(name)
            if os.path.islink(path) or link is not None:
                links[path] = link or path
        dirs[:] = kept
        not_data = datasets_directory_files(root, files)  # a datasets save_to_disk directory's metadata
        for name in sorted(files):
            if name.startswith("."):
                stats.skip_file("hidden_file", os.path.join(root, name))
            elif name in not_data:
                stats.skip_file(not_data[name], os.path.join(root, name))
            else:
                add_file(Path(root) / name, link)


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
        elif columnar_kind(base):  # pyarrow reads files on disk (parquet seeks to its footer)
            stats.skip_file("unsupported", where, "a .parquet/.arrow file inside a zip: extract it first")
        else:
            members.append(Source(str(path), info.filename, size=info.file_size))
    return members


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
