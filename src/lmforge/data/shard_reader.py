"""Read side of token shards: ``ShardSet`` (sequences, global token ranges, documents), ``open_shards`` and the
tokenizer fingerprint check. The format is described in ``lmforge.data.shards``."""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np

from lmforge.data.shard_format import FORMAT, INDEX_FILE, READABLE_VERSIONS


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
        if hasattr(mmap, "MADV_RANDOM"):  # pages read: those of the wanted sequences, no read-around (shards.py doc)
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
