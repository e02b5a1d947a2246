"""Token shard format: the index constants and the token dtype rule shared by ``shard_writer`` and ``shard_reader``.
The layout of a split directory is described in ``lmforge.data.shards``."""

from __future__ import annotations

from typing import Literal

import numpy as np

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
