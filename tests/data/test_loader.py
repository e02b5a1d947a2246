"""Loader: resume gives bitwise-identical batches, rank sharding, epochs, one-epoch evaluation."""

from __future__ import annotations

import io

import pytest
import torch

from lmforge.data.collate import CLMCollator, MLMCollator
from lmforge.data.loader import ShardLoader
from lmforge.data.shards import open_shards
from lmforge.data.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def train(prepared):
    return open_shards(prepared / "shards" / "train")


@pytest.fixture(scope="module")
def collator(prepared):
    return MLMCollator(load_tokenizer(prepared / "tokenizer"), mode="word", max_seq_length=32)


def batches_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_gives_identical_batches(train, collator):
    straight = ShardLoader(train, batch_size=8, collator=collator, seed=1)
    steps = straight.steps_per_epoch + 3  # cross an epoch boundary after resuming
    expected = [next(straight) for _ in range(steps + 4)]

    first = ShardLoader(train, batch_size=8, collator=collator, seed=1)
    for _ in range(steps):
        next(first)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # through a checkpoint file, as the trainer does
    buffer.seek(0)
    resumed = ShardLoader(train, batch_size=8, collator=collator, seed=1)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.epoch == 1
    for want in expected[steps:]:
        assert batches_equal(next(resumed), want)


def test_seed_changes_order_and_masks(train, collator):
    a = next(ShardLoader(train, batch_size=8, collator=collator, seed=1))
    b = next(ShardLoader(train, batch_size=8, collator=collator, seed=2))
    assert not batches_equal(a, b)


def test_ranks_partition_each_global_batch(prepared, train):
    collator = CLMCollator(load_tokenizer(prepared / "tokenizer"))  # no masking: input_ids are the sequences

    def rows(loader):
        batch = next(loader)
        return [tuple(r[m.bool()].tolist()) for r, m in zip(batch["input_ids"], batch["attention_mask"])]

    single = ShardLoader(train, batch_size=8, collator=collator, seed=5, shuffle=True)
    ranks = [ShardLoader(train, batch_size=4, collator=collator, seed=5, rank=r, world_size=2) for r in range(2)]
    assert ranks[0].steps_per_epoch == single.steps_per_epoch
    for _ in range(3):
        together = rows(single)
        first, second = rows(ranks[0]), rows(ranks[1])
        assert sorted(first + second) == sorted(together)  # the same global batch, split between the ranks
        assert first == together[:4] and second == together[4:]


def test_epochs_visit_every_sequence_once(prepared, train):
    collator = CLMCollator(load_tokenizer(prepared / "tokenizer"))
    loader = ShardLoader(train, batch_size=5, collator=collator, seed=0, shuffle=False, drop_last=False)
    seen = [
        tuple(r[m.bool()].tolist()) for b in loader.iter_epoch() for r, m in zip(b["input_ids"], b["attention_mask"])
    ]
    assert len(seen) == len(train)
    assert sorted(seen) == sorted(tuple(train[i]["input_ids"].tolist()) for i in range(len(train)))
    assert loader.epoch == 0 and loader.step == 0  # evaluation does not move the training position
    for _ in range(loader.steps_per_epoch + 1):
        next(loader)
    assert loader.epoch == 1 and loader.step == 1


def test_iter_epoch_is_repeatable(train, collator):
    loader = ShardLoader(train, batch_size=8, collator=collator, seed=0, shuffle=False, drop_last=False)
    first = list(loader.iter_epoch())
    next(loader)
    assert all(batches_equal(a, b) for a, b in zip(first, loader.iter_epoch()))


def test_bad_configurations(train, collator):
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ShardLoader(train, batch_size=len(train) + 1, collator=collator, seed=0)
    with pytest.raises(ValueError, match="rank"):
        ShardLoader(train, batch_size=2, collator=collator, seed=0, rank=2, world_size=2)
    state = ShardLoader(train, batch_size=2, collator=collator, seed=0).state_dict()
    with pytest.raises(ValueError, match="batch_size=2"):
        ShardLoader(train, batch_size=4, collator=collator, seed=0).load_state_dict(state)
