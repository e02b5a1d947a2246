"""Real-token fraction of training batches: attention_mask.sum() / attention_mask.numel() over one epoch.

    python benchmarks/packing.py D/shards/train D/tokenizer [--batch_size 8]

It walks one shuffled epoch of ``ShardLoader`` (the pretrain loader, ``drop_last``) with the collator pretrain
uses for the shards' objective, so the number is what ``lmforge pretrain`` computes on. Results: packing.md.
"""

from __future__ import annotations

import argparse
import json

import torch

from lmforge.data.collate import CLMCollator, MLMCollator
from lmforge.data.loader import ShardLoader
from lmforge.data.shards import open_shards
from lmforge.data.tokenizer import load_tokenizer


def real_token_fraction(shards_dir: str, tokenizer_dir: str, *, batch_size: int = 8, seed: int = 42) -> dict:
    shards = open_shards(shards_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    if shards.objective == "mlm":
        collator = MLMCollator(tokenizer, max_seq_length=shards.sequence_length)
    else:
        collator = CLMCollator(tokenizer, max_length=shards.sequence_length)
    loader = ShardLoader(shards, batch_size=batch_size, collator=collator, seed=seed)
    real = positions = 0
    for batch in loader.iter_epoch():
        real += int(batch["attention_mask"].sum())
        positions += batch["attention_mask"].numel()
    return {
        "objective": shards.objective,
        "layout": shards.index.get("layout", "document" if shards.objective == "mlm" else "packed"),
        "sequence_length": shards.sequence_length,
        "sequences": len(shards),
        "batches": len(loader),
        "real_tokens": real,
        "positions": positions,
        "real_fraction": round(real / positions, 4),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shards")
    parser.add_argument("tokenizer")
    parser.add_argument("--batch_size", type=int, default=8)
    options = parser.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(real_token_fraction(options.shards, options.tokenizer, batch_size=options.batch_size)))
