"""Token shards: memory-mapped binary token files plus ``index.json``, written by ``prepare shards``.

Layout of a split directory (``D/shards/train``)::

    index.json          format, objective, dtype, tokenizer fingerprint + special ids, file table, totals
    tokens-00000.bin    token ids, documents back to back (raw little-endian uint16 or uint32)
    words-00000.bin     word-start flags, one bit per token (np.packbits, little bit order)
    docs-00000.npy      int64 offset of every document that starts in this file
    seqs-00000.npy      (MLM only) int64 (n, 2) token ranges [start, end) of the training sequences

Token dtype: uint16 while the vocabulary has at most 65,536 ids, else uint32 (nanoGPT's uint16 bins; PaddleNLP
switches at 65,535). A token id outside the vocabulary is a ``ValueError`` at write time, never a silent wrap.

Sequences, MLM (``layout`` in the index): ``"packed"`` (the default, HF ``run_mlm.py``'s ``group_texts`` and
RoBERTa's FULL-SENTENCES) fills every sequence: documents follow one another with a [SEP] between two of them, and
a document that does not fit is cut at its last word start that fits and continues in the next sequence, so a
sequence reads ``[CLS] end of doc 1 [SEP] doc 2 [SEP] start of doc 3 [SEP]``. ``"document"`` (``--line_by_line``,
the only layout of format v1) takes consecutive tokens of *one* document. Either way a sequence is a token range
[start, end) of one file holding at most ``max_seq_length - 2`` tokens and separators; [CLS], [SEP] and the
separators between documents are added at read time (at the document offsets inside the range), so the token
stream is the same for both layouts, and long documents are cut at a word start so no word is split across two
sequences (a word longer than a sequence is cut hard). Attention crosses documents in packed sequences, as in
``group_texts``; a block-diagonal document mask is not implemented (it needs a 3-D mask through every
architecture's kernel).

CLM concatenates documents, each followed by EOS (or [SEP] when the tokenizer has no EOS), and cuts the stream
into ``block_size`` blocks (HF ``run_clm.py`` ``group_texts``); a CLM file always holds whole blocks and the
final partial block is dropped (counted in ``dropped_tokens``). The model shifts labels itself.

Reading re-opens the memmaps on every ``read`` call instead of holding them: a long-lived ``np.memmap`` makes the
process RSS grow with every page touched (karpathy/nanoGPT#287, PR #428). The maps are advised ``MADV_RANDOM``: the
loader reads sequences in random order, and the kernel's default read-around (128 KB per page fault) would pull in
~128 sequences per one wanted, so every torchrun rank would read the whole shard set from disk instead of its share
(docs/pipeline/distributed.md, tests/data/test_loader_torchrun.py).

``index.json`` is written last (atomically), so a directory without it is an interrupted write, not a dataset.
A write that fails (disk full, file too large, permissions) is an ``OutputWriteError`` (a ``ValueError``) naming
the file and the cause; the writer first deletes every file it wrote, so nothing half-written is left behind.
Writes go through Python file objects, not ``ndarray.tofile``/``np.save``, whose errors carry no errno.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import json
import mmap
import os
from pathlib import Path
from typing import Literal

import numpy as np

from lmforge.data.errors import OutputWriteError, os_error_text

Objective = Literal["mlm", "clm"]
INDEX_FILE = "index.json"
FORMAT = "lmforge.shards"
FORMAT_VERSION = 2  # v2 adds "layout"; v1 indexes (MLM: one document per sequence) are still read
READABLE_VERSIONS = (1, 2)
LAYOUTS: tuple[str, ...] = ("packed", "document")
UINT16_MAX_VOCAB = 65536  # ids 0..65535 fit in uint16
SHARD_FILES = "*-[0-9][0-9][0-9][0-9][0-9].*"  # tokens-00000.bin, docs-00000.npy, ...


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id of a ``vocab_size`` vocabulary fits (<= 65,536 ids), else uint32."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size > 2**32:
        raise ValueError(f"vocab_size {vocab_size} does not fit in uint32 token ids")
    return np.dtype(np.uint16) if vocab_size <= UINT16_MAX_VOCAB else np.dtype(np.uint32)


def _file_names(number: int) -> dict[str, str]:
    return {
        "tokens": f"tokens-{number:05d}.bin",
        "words": f"words-{number:05d}.bin",
        "documents": f"docs-{number:05d}.npy",
        "sequences": f"seqs-{number:05d}.npy",
    }


class ShardWriter:
    """Streams documents into shard files; memory holds one batch plus the current file's offsets.

    ``tokenizer_info`` needs ``fingerprint``, ``kind`` and the special ids ``cls_token_id``, ``sep_token_id``,
    ``pad_token_id`` (written to the index so readers need no tokenizer).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        objective: str,
        vocab_size: int,
        tokenizer_info: dict,
        max_seq_length: int | None = None,
        block_size: int | None = None,
        tokens_per_file: int = 1 << 25,
        layout: str = "packed",
    ) -> None:
        if objective not in ("mlm", "clm"):
            raise ValueError(f"unknown objective {objective!r}; choose from ('mlm', 'clm')")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown shard layout {layout!r}; choose from {LAYOUTS}")
        if objective == "clm" and layout != "packed":
            raise ValueError("clm blocks always pack documents; layout='document' (--line_by_line) is for mlm")
        if objective == "mlm" and (max_seq_length is None or max_seq_length < 3):
            raise ValueError(f"max_seq_length must be >= 3 for MLM ([CLS] x [SEP]), got {max_seq_length}")
        if objective == "clm" and (block_size is None or block_size < 2):
            raise ValueError(f"block_size must be >= 2 for CLM, got {block_size}")
        if tokens_per_file < 1:
            raise ValueError(f"tokens_per_file must be positive, got {tokens_per_file}")
        self.directory = Path(directory)
        self._target = self.directory  # the path being written, named by a write error
        self._tokens = self._words = None
        with self._clean_failure():
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in (self.directory / INDEX_FILE, *self.directory.glob(SHARD_FILES)):
                stale.unlink(missing_ok=True)
        self.objective = objective
        self.vocab_size = vocab_size
        self.dtype = token_dtype(vocab_size)
        self.tokenizer_info = dict(tokenizer_info)
        self.max_seq_length = max_seq_length
        self.block_size = block_size
        self.layout = layout
        if objective == "clm":  # CLM files hold whole blocks
            tokens_per_file = max(block_size, tokens_per_file // block_size * block_size)
        self.tokens_per_file = tokens_per_file
        self.separator_id = int(tokenizer_info.get("separator_id", tokenizer_info["sep_token_id"]))
        self.files: list[dict] = []
        self.num_documents = 0
        self.num_empty_documents = 0
        self.dropped_tokens = 0
        with self._clean_failure():
            self._open_file()

    # ---- file management --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _clean_failure(self):
        """Turn an ``OSError`` of the output into ``OutputWriteError`` after deleting what was written."""
        try:
            yield
        except OSError as error:
            target = self._target
            self.abort()
            raise OutputWriteError(
                f"cannot write shard file {str(target)!r}: {os_error_text(error) or error}; the partial shards were "
                "removed. Fix the cause and rerun the same command"
            ) from error

    def abort(self) -> None:
        """Close the open files and delete every file this writer wrote, ``index.json`` included."""
        for handle in (self._tokens, self._words):
            if handle is not None:
                with contextlib.suppress(OSError):  # the buffer that failed to flush fails again
                    handle.close()
        for path in (self.directory / INDEX_FILE, self.directory / (INDEX_FILE + ".tmp"), *self._glob_files()):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def _glob_files(self) -> list[Path]:
        with contextlib.suppress(OSError):
            return list(self.directory.glob(SHARD_FILES))
        return []

    def _open(self, key: str):
        self._target = self.directory / self._names[key]
        return open(self._target, "wb")  # closed in _close_file or abort

    def _save(self, key: str, array: np.ndarray) -> None:
        """``np.save`` into memory, then one Python write: a full disk raises with its errno."""
        buffer = io.BytesIO()
        np.save(buffer, array)
        self._target = self.directory / self._names[key]
        self._target.write_bytes(buffer.getbuffer())

    def _open_file(self) -> None:
        names = _file_names(len(self.files))
        self._names = names
        self._tokens = self._open("tokens")
        self._words = self._open("words")
        self._bits = np.zeros(0, dtype=bool)  # flags waiting for a full byte
        self._num_tokens = 0
        self._doc_starts: list[np.ndarray] = []
        self._sequences: list[np.ndarray] = []
        self._open_sequence = (0, 0)  # packed MLM: (start, tokens + separators) of the sequence being filled

    def _write(self, ids: np.ndarray, flags: np.ndarray) -> None:
        self._target = self.directory / self._names["tokens"]
        self._tokens.write(ids.astype(self.dtype))
        bits = np.concatenate([self._bits, flags])
        full = bits.size // 8 * 8
        self._target = self.directory / self._names["words"]
        self._words.write(np.packbits(bits[:full], bitorder="little"))
        self._bits = bits[full:]
        self._num_tokens += ids.size

    def _close_file(self, keep_tokens: int | None = None) -> None:
        self._target = self.directory / self._names["words"]
        if self._bits.size:
            self._words.write(np.packbits(self._bits, bitorder="little"))
        self._words.close()
        self._target = self.directory / self._names["tokens"]
        self._tokens.close()
        num_tokens = self._num_tokens if keep_tokens is None else keep_tokens
        start, used = self._open_sequence
        if used:  # a packed sequence never spans two files: the last one of a file may be short
            self._sequences.append(np.array([[start, self._num_tokens]], dtype=np.int64))
            self._open_sequence = (0, 0)
        if keep_tokens is not None:  # the last CLM file drops its partial block
            os.truncate(self.directory / self._names["tokens"], num_tokens * self.dtype.itemsize)
            os.truncate(self.directory / self._names["words"], (num_tokens + 7) // 8)
        docs = np.concatenate(self._doc_starts) if self._doc_starts else np.zeros(0, dtype=np.int64)
        docs = docs[docs < num_tokens]
        self._save("documents", docs.astype(np.int64))
        entry = {
            "tokens": self._names["tokens"],
            "words": self._names["words"],
            "documents": self._names["documents"],
            "num_tokens": int(num_tokens),
            "num_documents": int(docs.size),
        }
        if self.objective == "mlm":
            seqs = np.concatenate(self._sequences) if self._sequences else np.zeros((0, 2), dtype=np.int64)
            self._save("sequences", seqs.astype(np.int64))
            entry["sequences"] = self._names["sequences"]
            entry["num_sequences"] = int(seqs.shape[0])
        else:
            entry["num_sequences"] = int(num_tokens // self.block_size)
        self.files.append(entry)

    # ---- adding documents ---------------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, word_starts: np.ndarray, doc_lengths: np.ndarray) -> None:
        """Append documents given as concatenated ``ids``/``word_starts`` and their token counts."""
        ids = np.asarray(ids)
        word_starts = np.asarray(word_starts, dtype=bool)
        doc_lengths = np.asarray(doc_lengths, dtype=np.int64)
        if ids.shape != word_starts.shape or int(doc_lengths.sum()) != ids.size:
            raise ValueError(
                f"ids {ids.shape}, word_starts {word_starts.shape} and doc_lengths (sum {int(doc_lengths.sum())}) "
                "must describe the same tokens"
            )
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            bad = int(ids.max()) if int(ids.max()) >= self.vocab_size else int(ids.min())
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.vocab_size}) of these shards")
        self.num_empty_documents += int((doc_lengths == 0).sum())
        keep = doc_lengths > 0
        doc_lengths = doc_lengths[keep]
        self.num_documents += int(doc_lengths.size)
        if not doc_lengths.size:
            return
        with self._clean_failure():
            if self.objective == "mlm":
                self._add_mlm(ids, word_starts, doc_lengths)
            else:
                self._add_clm(ids, word_starts, doc_lengths)

    def _add_mlm(self, ids: np.ndarray, flags: np.ndarray, lengths: np.ndarray) -> None:
        local = np.zeros(lengths.size, dtype=np.int64)
        np.cumsum(lengths[:-1], out=local[1:])
        starts = local + self._num_tokens
        self._doc_starts.append(starts)
        if self.layout == "packed":
            self._sequences.append(self._pack(flags, starts, lengths))
        else:
            self._sequences.append(self._windows(flags, local, lengths) + self._num_tokens)
        self._write(ids, flags)
        if self._num_tokens >= self.tokens_per_file:
            self._close_file()
            self._open_file()

    def _windows(self, flags: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """[start, end) of the MLM sequences of each document; long documents are cut at a word start."""
        width = self.max_seq_length - 2
        short = lengths <= width
        out = [np.stack([starts[short], starts[short] + lengths[short]], axis=1)]
        for start, length in zip(starts[~short].tolist(), lengths[~short].tolist()):
            end = start + length
            position = start
            while end - position > width:
                limit = position + width
                word_heads = np.flatnonzero(flags[position + 1 : limit + 1])
                cut = position + 1 + int(word_heads[-1]) if word_heads.size else limit
                out.append(np.array([[position, cut]], dtype=np.int64))
                position = cut
            out.append(np.array([[position, end]], dtype=np.int64))
        windows = np.concatenate(out)
        return windows[np.argsort(windows[:, 0], kind="stable")]

    def _pack(self, flags: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """[start, end) (file positions) of the packed MLM sequences closed by this batch of documents.

        A sequence holds at most ``max_seq_length - 2`` tokens plus separators (one before every document but
        its first). Whole documents are added while they fit (one ``searchsorted``); the next one is cut at its
        last word start that fits and continues in the next sequence. If no word start fits, the sequence is
        closed a few tokens short, unless it is empty (a word longer than a sequence): then the cut is hard. The
        last sequence stays open (``_open_sequence``) for the next batch or ``_close_file``.
        """
        width = self.max_seq_length - 2
        base = self._num_tokens  # flags[k] is the flag of file position base + k
        cost = np.zeros(lengths.size + 1, dtype=np.int64)  # cost[j] - cost[i]: docs i..j-1, a separator before each
        np.cumsum(lengths + 1, out=cost[1:])
        # one step per sequence: Python ints and bisect, numpy scalars cost ~1 us per operation here
        cost_list, starts_list, ends_list = cost.tolist(), starts.tolist(), (starts + lengths).tolist()
        count = lengths.size
        out = []
        start, used = self._open_sequence
        i, position = 0, starts_list[0]
        while i < count:
            if used == 0:
                start = position
            if position == starts_list[i]:  # at a document start: take every whole document that fits
                budget = width - used + (used == 0)  # the first document of a sequence needs no separator
                j = bisect.bisect_right(cost_list, cost_list[i] + budget) - 1
                if j > i:
                    used += cost_list[j] - cost_list[i] - (used == 0)
                    i, position = j, ends_list[j - 1]
                    continue
            room = width - used - (used > 0)
            if ends_list[i] - position <= room:  # the rest of a document cut by the previous sequence
                used += ends_list[i] - position + (used > 0)
                position = ends_list[i]
                i += 1
                continue
            if room > 0:
                window = flags[position + 1 - base : position + room + 1 - base]
                last = window.size - 1 - int(window[::-1].argmax())  # the last word start that fits, if any
                if window[last]:
                    position += 1 + last
                elif used == 0:
                    position += room  # one word longer than a sequence: cut hard, as the document layout does
            out.append((start, position))
            used = 0
        self._open_sequence = (start, used)
        return np.array(out, dtype=np.int64).reshape(-1, 2)

    def _add_clm(self, ids: np.ndarray, flags: np.ndarray, lengths: np.ndarray) -> None:
        # insert the separator after every document
        ends = np.cumsum(lengths)
        ids = np.insert(ids, ends, self.separator_id)
        flags = np.insert(flags, ends, True)
        doc_starts = np.zeros(lengths.size, dtype=np.int64)
        np.cumsum(lengths[:-1] + 1, out=doc_starts[1:])
        while ids.size:
            room = self.tokens_per_file - self._num_tokens
            take = min(room, ids.size)
            in_file = doc_starts < take
            self._doc_starts.append(doc_starts[in_file] + self._num_tokens)
            self._write(ids[:take], flags[:take])
            ids, flags, doc_starts = ids[take:], flags[take:], doc_starts[~in_file] - take
            if self._num_tokens == self.tokens_per_file:
                self._close_file()
                self._open_file()

    def close(self, *, extra: dict | None = None) -> dict:
        """Finish the last file and write ``index.json``; returns the index."""
        with self._clean_failure():
            return self._close(extra)

    def _close(self, extra: dict | None) -> dict:
        if self.objective == "clm":
            keep = self._num_tokens // self.block_size * self.block_size
            self.dropped_tokens = self._num_tokens - keep
            self._close_file(keep_tokens=keep)
        else:
            self._close_file()
        if len(self.files) > 1 and self.files[-1]["num_tokens"] == 0:  # drop the empty file opened after a roll
            last = self.files.pop()
            for key in ("tokens", "words", "documents", "sequences"):
                if key in last:
                    (self.directory / last[key]).unlink()
        index = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "objective": self.objective,
            "dtype": self.dtype.name,
            "vocab_size": self.vocab_size,
            "layout": self.layout,
            "max_seq_length": self.max_seq_length if self.objective == "mlm" else None,
            "block_size": self.block_size if self.objective == "clm" else None,
            "tokenizer": self.tokenizer_info,
            "num_tokens": sum(f["num_tokens"] for f in self.files),
            "num_documents": sum(f["num_documents"] for f in self.files),
            "documents_added": self.num_documents,
            "num_empty_documents": self.num_empty_documents,
            "num_sequences": sum(f["num_sequences"] for f in self.files),
            "dropped_tokens": self.dropped_tokens,
            "files": self.files,
            **(extra or {}),
        }
        tmp = self._target = self.directory / (INDEX_FILE + ".tmp")
        tmp.write_text(json.dumps(index, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.directory / INDEX_FILE)
        return index


class ShardSet:
    """Read side of a shard directory. ``shards[i]`` is sequence i as ``{"input_ids", "word_starts"}`` numpy arrays
    (MLM sequences include [CLS] and [SEP]); ``read(indices)`` reads many with one opening of each file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        index_path = self.path / INDEX_FILE
        if not index_path.is_file():
            hints = [str(self.path / s) for s in ("train", "shards/train") if (self.path / s / INDEX_FILE).is_file()]
            hint = f"; did you mean {hints[0]!r}?" if hints else ""
            raise ValueError(f"no shards at {str(self.path)!r}: {INDEX_FILE} is missing{hint}")
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT or index.get("version") not in READABLE_VERSIONS:
            raise ValueError(
                f"{index_path}: unsupported shard format {index.get('format')!r} v{index.get('version')} "
                f"(expected {FORMAT!r} v{' or v'.join(map(str, READABLE_VERSIONS))})"
            )
        self.index = index
        self.objective: str = index["objective"]
        # v1 had no layout: MLM one document per sequence, CLM blocks (always packed)
        self.layout: str = index.get("layout", "document" if self.objective == "mlm" else "packed")
        self.dtype = np.dtype(index["dtype"])
        self.vocab_size: int = index["vocab_size"]
        self.tokenizer_info: dict = index["tokenizer"]
        self.fingerprint: str = self.tokenizer_info["fingerprint"]
        self.max_seq_length: int | None = index.get("max_seq_length")
        self.block_size: int | None = index.get("block_size")
        self.files: list[dict] = index["files"]
        self.num_tokens: int = index["num_tokens"]
        self.num_documents: int = index["num_documents"]
        self.num_sequences: int = index["num_sequences"]
        counts = [f["num_sequences"] for f in self.files]
        self._seq_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._doc_offsets = np.concatenate([[0], np.cumsum([f["num_documents"] for f in self.files])]).astype(np.int64)
        self.cls_token_id = int(self.tokenizer_info["cls_token_id"])
        self.sep_token_id = int(self.tokenizer_info["sep_token_id"])
        self._doc_starts: np.ndarray | None = None

    def __len__(self) -> int:
        return self.num_sequences

    def __repr__(self) -> str:
        return (
            f"ShardSet({str(self.path)!r}, objective={self.objective!r}, layout={self.layout!r}, "
            f"sequences={self.num_sequences}, tokens={self.num_tokens}, dtype={self.dtype.name}, "
            f"fingerprint={self.fingerprint!r})"
        )

    @property
    def sequence_length(self) -> int:
        """Longest sequence ``__getitem__`` returns (``max_seq_length`` for MLM, ``block_size`` for CLM)."""
        return self.max_seq_length if self.objective == "mlm" else self.block_size

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self.read([i])[0]

    def _open(self, file: dict, key: str) -> np.ndarray:
        if key == "tokens":
            array = np.memmap(self.path / file["tokens"], dtype=self.dtype, mode="r", shape=(file["num_tokens"],))
        elif key == "words":
            array = np.memmap(self.path / file["words"], dtype=np.uint8, mode="r")
        else:
            array = np.load(self.path / file[key], mmap_mode="r")
        if hasattr(mmap, "MADV_RANDOM"):  # pages read: those of the wanted sequences, no read-around (module doc)
            array._mmap.madvise(mmap.MADV_RANDOM)
        return array

    def _slice(self, tokens: np.ndarray, words: np.ndarray, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(tokens[start:end], dtype=np.int64)
        packed = np.asarray(words[start // 8 : (end + 7) // 8])
        bits = np.unpackbits(packed, bitorder="little")[start % 8 : start % 8 + (end - start)].astype(bool)
        return ids, bits

    def read(self, indices) -> list[dict[str, np.ndarray]]:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_sequences):
            raise IndexError(f"sequence index out of range [0, {self.num_sequences}): {indices.min()}..{indices.max()}")
        file_of = np.searchsorted(self._seq_offsets, indices, side="right") - 1
        out: list[dict[str, np.ndarray]] = [{}] * indices.size
        for f in np.unique(file_of).tolist():
            file = self.files[f]
            tokens, words = self._open(file, "tokens"), self._open(file, "words")
            seqs = self._open(file, "sequences") if self.objective == "mlm" else None
            docs = self._open(file, "documents") if seqs is not None and self.layout == "packed" else None
            for k in np.flatnonzero(file_of == f).tolist():
                local = int(indices[k] - self._seq_offsets[f])
                if seqs is not None:
                    start, end = (int(x) for x in seqs[local])
                    ids, bits = self._slice(tokens, words, start, end)
                    if docs is not None:  # [SEP] before every document that starts inside the sequence
                        inner = docs[np.searchsorted(docs, start, "right") : np.searchsorted(docs, end, "left")]
                        ids = np.insert(ids, inner - start, self.sep_token_id)
                        bits = np.insert(bits, inner - start, True)
                    ids = np.concatenate([[self.cls_token_id], ids, [self.sep_token_id]])
                    bits = np.concatenate([[True], bits, [True]])
                else:
                    start = local * self.block_size
                    ids, bits = self._slice(tokens, words, start, start + self.block_size)
                out[k] = {"input_ids": ids, "word_starts": bits}
            del tokens, words, seqs, docs  # re-opened next call: RSS does not grow with pages touched (nanoGPT#287)
        return out

    def _read_global(self, key: str, start: int, end: int) -> np.ndarray:
        parts = []
        offset = 0
        for file in self.files:
            lo, hi = max(start - offset, 0), min(end - offset, file["num_tokens"])
            if lo < hi:
                if key == "tokens":
                    parts.append(np.asarray(self._open(file, "tokens")[lo:hi], dtype=np.int64))
                else:
                    parts.append(self._slice(self._open(file, "tokens"), self._open(file, "words"), lo, hi)[1])
            offset += file["num_tokens"]
        if parts:
            return np.concatenate(parts)
        return np.zeros(0, dtype=np.int64 if key == "tokens" else bool)

    def tokens(self, start: int, end: int) -> np.ndarray:
        """Token ids at global positions [start, end) of the concatenated files."""
        return self._read_global("tokens", start, end)

    def word_starts(self, start: int, end: int) -> np.ndarray:
        """Word-start flags at global positions [start, end)."""
        return self._read_global("words", start, end)

    def document_span(self, d: int) -> tuple[int, int]:
        """Global token range of document ``d`` without the CLM separator (loads all document offsets once)."""
        if not 0 <= d < self.num_documents:
            raise IndexError(f"document index {d} out of range [0, {self.num_documents})")
        if self._doc_starts is None:
            file_starts = np.concatenate([[0], np.cumsum([f["num_tokens"] for f in self.files])])
            self._doc_starts = np.concatenate(
                [np.asarray(self._open(f, "documents")) + o for f, o in zip(self.files, file_starts)]
            )
        start = int(self._doc_starts[d])
        if d + 1 < self._doc_starts.size:
            end = int(self._doc_starts[d + 1]) - (self.objective == "clm")
        else:
            end = self.num_tokens
            if self.objective == "clm" and end > start and int(self.tokens(end - 1, end)[0]) == self.separator_id:
                end -= 1
        return start, end

    def document(self, d: int) -> np.ndarray:
        """Token ids of document ``d`` (for inspection and tests)."""
        return self.tokens(*self.document_span(d))

    @property
    def separator_id(self) -> int:
        """Token after every CLM document."""
        return int(self.tokenizer_info.get("separator_id", self.sep_token_id))


def open_shards(path: str | Path) -> ShardSet:
    """Open a split directory written by ``prepare shards`` (e.g. ``D/shards/train``)."""
    return ShardSet(path)


def check_fingerprint(shards: ShardSet, tokenizer) -> None:
    """Raise ``ValueError`` if ``shards`` were not built with ``tokenizer`` (ids would mean other tokens)."""
    if shards.fingerprint != tokenizer.fingerprint:
        raise ValueError(
            f"shards at {str(shards.path)!r} were built with tokenizer {shards.fingerprint} "
            f"({shards.tokenizer_info.get('kind')}) but the training tokenizer is {tokenizer.fingerprint} "
            f"({tokenizer.kind}); rebuild the shards with this tokenizer or train with the one they were built with"
        )
