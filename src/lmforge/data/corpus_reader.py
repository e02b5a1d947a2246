"""Reading a corpus back (the tokenizer and shard stages): the jsonl files of a ``prepare corpus`` directory, their
texts, and the codepoint histogram that ingest saved beside them. Ingest itself is ``lmforge.data.corpus``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from lmforge.data.errors import PrepareError
from lmforge.data.tokenizer_spec import NUM_CODEPOINTS, is_encodable

__all__ = ["COUNTS_FILE", "corpus_codepoint_counts", "corpus_files", "iter_texts"]

COUNTS_FILE = "codepoint_counts.npy"


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
