"""``--source_weights``: mix the ``--input`` sources of an ingest in given proportions of documents.

``--source_weights mnbvc=0.5,c4=0.3,oscar=0.2`` with ``--input mnbvc/ c4.jsonl.gz oscar.parquet``: a source is one
``--input`` item, its key the item's last path component without a file's suffixes (``data/c4.en.jsonl.gz`` ->
``c4``, ``corpora/mnbvc/`` -> ``mnbvc``); every input must be named, and two inputs may not share a key. Weights are
any positive numbers (``7,3`` = ``0.7,0.3``), read exactly as decimals or fractions (``1/3``).

Unit: documents, counted after every filter and de-duplication. Down-sampling only, never repetition: the output
holds the largest N documents for which each source's share ``w_i * N`` fits in what it has, each source giving
``n_i = floor(w_i * N)`` documents plus one for the sources with the largest remainders until the n_i sum to N
(so ``|n_i - w_i * N| < 1``, and equal when ``w_i * N`` is whole). The source that runs short sets N; the others
are down-sampled, which documents are kept a seeded random choice (one bit mask per source, shuffled with a
generator derived from ``--seed`` and the key). The documents left out are counted in ``documents_left_out``
(``report["source_weights"]["left_out"]`` per source), never as skipped: ``documents_in == documents_out +
sum(skipped) + documents_lost + documents_left_out``.

How: it needs each source's count after de-duplication, known only once every input has been read, so it is a
second pass over the written parts (not the raw input), which keeps the kept documents in their shuffled order and
rewrites the parts (twice their size on disk for a moment; memory one byte per document).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np

from lmforge.data.documents import CodepointCounter, IngestStats, JsonlPartWriter
from lmforge.data.errors import PrepareError

WEIGHT_KEY = "the --input item's last path component, without a file's suffixes"


def source_key(item: str) -> str:
    """The ``--source_weights`` key of one ``--input`` item."""
    path = Path(item)
    return path.name if path.is_dir() else path.name.split(".")[0]


def parse_source_weights(value: str | dict | None, inputs: list[str]) -> dict[str, Fraction] | None:
    """``"a=0.7,b=0.3"`` (or a dict) -> ``{key: weight}`` in ``inputs`` order, checked against the inputs' keys."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        if any(not sep or not key.strip() for key, sep, _ in pairs):
            raise PrepareError(f"--source_weights must look like 'name=0.7,other=0.3', got {value!r}")
        given = [(key.strip(), weight.strip()) for key, _, weight in pairs]
    else:
        given = [(str(key), str(weight)) for key, weight in value.items()]
    weights: dict[str, Fraction] = {}
    for key, text in given:
        try:
            weight = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise PrepareError(f"--source_weights: the weight of {key!r} is not a number: {text!r}") from None
        if weight <= 0:
            raise PrepareError(f"--source_weights: the weight of {key!r} must be > 0, got {text} (leave it out of "
                               "--input to drop a source)")  # fmt: skip
        if key in weights:
            raise PrepareError(f"--source_weights names {key!r} twice")
        weights[key] = weight
    keys = [source_key(item) for item in inputs]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise PrepareError(f"--source_weights: several --input items have the key {twice} ({WEIGHT_KEY}); rename one "
                           "or put them in one directory")  # fmt: skip
    if set(weights) != set(keys):
        raise PrepareError(
            f"--source_weights must name every --input by its key ({WEIGHT_KEY}): inputs {keys}, weights "
            f"{list(weights)}"
        )
    total = sum(weights.values())
    return {key: weights[key] / total for key in keys}


def apportion(weights: dict[str, Fraction], available: dict[str, int]) -> dict[str, int]:
    """Documents to keep per source: the largest N with ``w_i * N <= available_i`` for all i, split by largest
    remainder (ties in key order) so that the counts sum to N and each is within 1 of ``w_i * N``."""
    total = min(int(available[key] / weight) for key, weight in weights.items())  # floor of a Fraction
    exact = {key: weight * total for key, weight in weights.items()}
    kept = {key: int(share) for key, share in exact.items()}
    by_remainder = sorted(weights, key=lambda key: exact[key] - kept[key], reverse=True)
    for key in by_remainder[: total - sum(kept.values())]:
        kept[key] += 1  # never above available: w_i * N <= available_i, an integer
    return kept


def apply_source_weights(
    parts: list[Path],
    *,
    directory: Path,
    weights: dict[str, Fraction],
    inputs: list[str],
    origin_of_source: list[int],
    kept_by_source: dict[int, int],
    stats: IngestStats,
    codepoint_counts: np.ndarray,
    part_bytes: int,
    seed: int,
) -> tuple[list[Path], dict]:
    """Rewrite ``parts`` keeping the apportioned documents of each source; updates ``stats`` (``documents_out``,
    ``chars_out``, the ``left_out_by_source_weights`` examples) and ``codepoint_counts`` in place. Returns the new
    parts and the report's ``source_weights`` section."""
    keys = list(weights)
    available = dict.fromkeys(keys, 0)
    for index, count in kept_by_source.items():
        available[keys[origin_of_source[index]]] += count
    empty = [key for key in keys if available[key] == 0]
    if empty:
        raise PrepareError(f"--source_weights: no documents left from {empty} after ingest; nothing to weight against")
    kept = apportion(weights, available)
    masks = {}
    for key in keys:
        mask = np.zeros(available[key], dtype=bool)
        mask[: kept[key]] = True
        digest = hashlib.blake2b(f"{seed}/source_weights/{key}".encode(), digest_size=8).digest()
        np.random.default_rng(int.from_bytes(digest, "little")).shuffle(mask)
        masks[key] = mask
    scratch = directory / ".source-weights-tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    writer = JsonlPartWriter(scratch, part_bytes)
    seen = dict.fromkeys(keys, 0)
    left_out = CodepointCounter()
    try:
        for part in parts:
            with open(part, "rb") as lines:
                for line in lines:
                    key = keys[origin_of_source[_source_index(line)]]
                    ordinal = seen[key]
                    seen[key] += 1
                    if masks[key][ordinal]:
                        writer.write(line)
                        continue
                    record = json.loads(line)
                    left_out.add(record["text"])
                    stats.chars_out -= len(record["text"])
                    stats._example("left_out_by_source_weights", record["source"])
        written = writer.close()
        for part in parts:
            part.unlink()
        for path in written:
            os.replace(path, directory / path.name)
    finally:
        writer.close()
        shutil.rmtree(scratch, ignore_errors=True)
    assert seen == available, (seen, available)
    cps, counts = left_out.sparse()
    codepoint_counts[cps] -= counts
    total_kept = sum(kept.values())
    stats.documents_out -= sum(available.values()) - total_kept
    section = {
        "key": WEIGHT_KEY,
        "unit": "documents (after filters and de-duplication); down-sampling only, no repetition",
        "inputs": {key: item for key, item in zip(keys, inputs)},
        "weights": {key: float(weights[key]) for key in keys},
        "available": available,
        "kept": kept,
        "left_out": {key: available[key] - kept[key] for key in keys},
        "realised": {key: kept[key] / total_kept if total_kept else 0.0 for key in keys},
    }
    return [directory / path.name for path in written], section


def _source_index(line: bytes) -> int:
    """The source number of a written document: its id is ``"<source>-<n>"`` and comes first (``_DocumentSink``)."""
    assert line.startswith(b'{"id": "'), line[:40]
    return int(line[8 : line.index(b"-", 8)])
