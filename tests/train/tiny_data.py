"""A tiny prepared-data directory for the training and export tests, written with the data package's writers.

``make_data(root, objective=...)`` builds ``root/tokenizer`` (char vocabulary) and ``root/shards/{train,
validation}`` from a synthetic corpus of two-to-three-character "words" (word starts are real, so whole-word
masking has something to do, and the text is learnable, so losses fall within a few dozen steps).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from lmforge.data.shards import ShardWriter
from lmforge.data.tokenizer import build_char_tokenizer

CHARS = "天气预报说今日的很好那么我们一起去公园玩吧春风花月夜山水人家书读写看听"


def _corpus(num_docs: int, seed: int) -> tuple[list[str], list[list[int]]]:
    """Documents and the character offsets where their words start."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(CHARS) for _ in range(rng.choice((1, 2, 2, 3)))) for _ in range(40)]
    texts, starts = [], []
    for _ in range(num_docs):
        chosen = [rng.choice(words) for _ in range(rng.randint(8, 30))]
        offsets = np.cumsum([0] + [len(w) for w in chosen[:-1]]).tolist()
        texts.append("".join(chosen))
        starts.append(offsets)
    return texts, starts


def make_data(root: Path, *, objective: str = "mlm", sequence_length: int = 32, num_docs: int = 96) -> Path:
    texts, word_offsets = _corpus(num_docs, seed=1)
    tokenizer = build_char_tokenizer(texts, vocab_size=200, min_frequency=1)
    tokenizer.save(root / "tokenizer")
    info = {
        "fingerprint": tokenizer.fingerprint,
        "kind": tokenizer.kind,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "separator_id": tokenizer.document_separator_id,
    }
    cut = num_docs * 5 // 6
    for split, docs, offsets in (
        ("train", texts[:cut], word_offsets[:cut]),
        ("validation", texts[cut:], word_offsets[cut:]),
    ):
        encoded = tokenizer.encode_batch(docs)
        flags = np.zeros(encoded.ids.size, dtype=bool)
        for d, doc_offsets in enumerate(offsets):  # one token per character here
            flags[encoded.doc_tokens[d] + np.asarray(doc_offsets)] = True
        lengths = np.diff(encoded.doc_tokens)
        kwargs = {"max_seq_length": sequence_length} if objective == "mlm" else {"block_size": sequence_length}
        directory = root / "shards" / split
        writer = ShardWriter(
            directory, objective=objective, vocab_size=tokenizer.vocab_size, tokenizer_info=info, **kwargs
        )
        writer.add(encoded.ids, flags, lengths)
        writer.close()
    return root
