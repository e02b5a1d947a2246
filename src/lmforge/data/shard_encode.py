"""The work of ``lmforge prepare shards``, cut into byte ranges: ``_byte_ranges`` splits the corpus files into
~2 MB ranges (a line belongs to the range it starts in, ``_read_range``), ``_with_refs`` gives each range its slice
of a ``--train_ref_file``, and ``_encode_range`` (in a worker process or a datatrove task, set up once by
``_init_shard_worker``) parses, segments and tokenizes one range. ``shard_stage.py`` drives them and writes the
results; every name here stays importable from there, and the driver looks up ``_byte_ranges``, ``_encode_range``
and ``_init_shard_worker`` there. Functions live at module level so worker processes can find them; imports of
heavy modules stay inside them (``lmforge prepare --help`` stays fast).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

_WORKER: dict = {}


def _init_shard_worker(
    tokenizer_path: str, segmenter: str, text_field: str, fraction: float, seed: int, write_refs: bool = False
) -> None:
    """Load the tokenizer once per process. The parent calls it before the pool forks, so forked workers inherit
    it (and rjieba's dictionary) instead of loading their own."""
    import multiprocessing
    import os

    if multiprocessing.parent_process() is not None:  # a pool worker: num_proc processes, not num_proc * threads
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    key = (tokenizer_path, segmenter, text_field, fraction, seed, write_refs)
    if _WORKER.get("key") == key:
        return
    from lmforge.data.shards import token_dtype
    from lmforge.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    _WORKER.update(
        key=key,
        tokenizer=tokenizer,
        dtype=token_dtype(tokenizer.vocab_size),
        segmenter=segmenter,
        text_field=text_field,
        threshold=int(fraction * 2**64),
        hash_key=str(seed).encode()[:64],
        write_refs=write_refs,
    )


def _read_range(path: str, start: int, end: int) -> list[bytes]:
    """The lines of ``path`` whose first byte lies in [start, end)."""
    lines = []
    with open(path, "rb") as handle:
        position = start
        if start:
            handle.seek(start - 1)
            position += len(handle.readline()) - 1  # finish the line that started before ``start``
        while position < end:
            line = handle.readline()
            if not line:
                break
            lines.append(line)
            position += len(line)
    return lines


def _encode_range(task: tuple) -> dict:
    """Read, parse, segment and tokenize the jsonl lines of one byte range (runs in a worker). ``task``: (path, start,
    end), plus (refs, first document number) with a ref file."""
    import hashlib

    import numpy as np

    from lmforge.data.chinese_ref import apply_refs, ref_lines
    from lmforge.data.errors import PrepareError
    from lmforge.data.segment import token_word_starts, word_starts
    from lmforge.data.tokenizer_spec import codepoints

    path, start, end, *ref_task = task
    tokenizer, field = _WORKER["tokenizer"], _WORKER["text_field"]
    texts: list[str] = []
    encoded_texts: list[bytes] = []
    bad = 0
    for line in _read_range(path, start, end):
        try:
            record = json.loads(line.decode("utf-8"))  # json.loads(bytes) sniffs the encoding in Python: 2x slower
            text = record.get(field) if isinstance(record, dict) else None
            data = text.encode("utf-8") if isinstance(text, str) else None  # lone surrogates raise here
        except (ValueError, RecursionError):  # malformed JSON, invalid UTF-8, UnicodeEncodeError, absurd nesting
            data = None
        if data is not None:
            texts.append(text)
            encoded_texts.append(data)
        elif line.strip():
            bad += 1
    encoded = tokenizer.encode_batch(texts)
    char_starts = word_starts(texts, segmenter=_WORKER["segmenter"])
    cps = codepoints("\n".join(texts)) if ref_task or _WORKER["write_refs"] else None
    if ref_task:
        refs, first = ref_task
        if bad:  # its ref line would go to the next document
            raise PrepareError(
                f"{path} (bytes {start}-{end}): {bad} non-blank lines are not JSON documents with a string {field!r}; "
                "with --train_ref_file every non-blank corpus line must be one (ref line k belongs to document k)"
            )
        char_starts = apply_refs(
            char_starts,
            refs,
            codepoints=cps,
            starts=encoded.starts,
            ends=encoded.ends,
            doc_tokens=encoded.doc_tokens,
            doc_chars=encoded.doc_chars,
            where=lambda doc: f"--train_ref_file line {first + doc + 1} (a document of {path})",
        )
    flags = token_word_starts(char_starts, starts=encoded.starts, ends=encoded.ends)
    lengths = np.diff(encoded.doc_tokens)
    flags[encoded.doc_tokens[:-1][lengths > 0]] = True  # a document always starts a word
    refs_text = None
    if _WORKER["write_refs"]:
        refs_text = ref_lines(
            flags, codepoints=cps, starts=encoded.starts, ends=encoded.ends, doc_tokens=encoded.doc_tokens
        )
    hash_key, threshold = _WORKER["hash_key"], _WORKER["threshold"]
    if threshold:
        digests = [hashlib.blake2b(d, digest_size=8, key=hash_key).digest() for d in encoded_texts]
        validation = np.array([int.from_bytes(d) < threshold for d in digests], dtype=bool)
    else:  # nothing held out (--validation_file, or 0%): no hashing
        validation = np.zeros(len(texts), dtype=bool)
    return {
        "ids": encoded.ids.astype(_WORKER["dtype"]),  # the shard dtype: half the bytes back to the parent
        "flags": flags,
        "lengths": lengths,
        "validation": validation,
        "bad": bad,
        "chars": int(sum(map(len, texts))),
        "bytes": end - start,
        "refs_text": refs_text,
    }


def _byte_ranges(files: list[Path], size: int) -> list[tuple[str, int, int]]:
    """Tasks of about ``size`` bytes; each worker reads its own range (lines belong to the range they start in)."""
    tasks = []
    for path in files:
        total = path.stat().st_size
        tasks += [(str(path), start, min(start + size, total)) for start in range(0, total, size)]
    return tasks


def _with_refs(tasks: list[tuple[str, int, int]], ref_file: str) -> Iterator[tuple]:
    """``tasks`` with each range's refs and first document number. Its documents (non-blank lines) are counted
    first, in the parent, so that a ref file that does not match the corpus is one line before any work."""
    import itertools

    from lmforge.data.chinese_ref import count_ref_lines, read_ref_file
    from lmforge.data.errors import PrepareError

    documents = [sum(1 for line in _read_range(*task) if line.strip()) for task in tasks]
    expected, found = sum(documents), count_ref_lines(ref_file)
    if expected != found:
        raise PrepareError(
            f"--train_ref_file {ref_file!r} has {found} non-blank lines but the corpus has {expected} documents; "
            "ref line k must belong to document k (run_chinese_ref.py on the same text, one line per document)"
        )
    refs = read_ref_file(ref_file)
    first = 0
    for task, count in zip(tasks, documents):
        yield (*task, list(itertools.islice(refs, count)), first)
        first += count
