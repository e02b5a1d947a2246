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

Code: ``shard_format`` (constants, token dtype), ``shard_writer`` (``ShardWriter``), ``shard_reader`` (``ShardSet``,
``open_shards``, ``check_fingerprint``); this module re-exports all of them.
"""

from __future__ import annotations

from lmforge.data.shard_format import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_FILE,
    LAYOUTS,
    READABLE_VERSIONS,
    SHARD_FILES,
    UINT16_MAX_VOCAB,
    Objective,
    token_dtype,
)
from lmforge.data.shard_reader import ShardSet, check_fingerprint, open_shards
from lmforge.data.shard_writer import ShardWriter

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "LAYOUTS",
    "READABLE_VERSIONS",
    "SHARD_FILES",
    "UINT16_MAX_VOCAB",
    "Objective",
    "ShardSet",
    "ShardWriter",
    "check_fingerprint",
    "open_shards",
    "token_dtype",
]
