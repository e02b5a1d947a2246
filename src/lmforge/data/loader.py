"""Resumable, rank-sharded batch iterator over a ``ShardSet``.

Order: epoch e visits the sequences in ``randperm(N)`` drawn from a generator seeded by (seed, e) (or in order
with ``shuffle=False``). Step s of an epoch takes the global batch ``order[s*B*W : (s+1)*B*W]`` and rank r keeps
its slice ``[r*B : (r+1)*B]``, so the union over ranks of one step does not depend on how the work is split.
With ``drop_last`` every rank sees the same number of full batches (what DDP needs); without it the last global
batch is partial and a rank may get fewer (or no) sequences in it.

Resumption (torchtitan ``test_dataset_checkpointing``, style R12): ``state_dict()`` holds the epoch, the number of
batches consumed in it and the state of the collator's generator; the permutation is recomputed from (seed, epoch)
so the state stays a few bytes. A loader restored from ``state_dict()`` yields bitwise the same next batches.

Memory: the permutation is ``4 * N`` bytes (int32 when it fits); the shards are read through memmaps re-opened for
every batch (``ShardSet.read``; nanoGPT#287).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from lmforge.data.shards import ShardSet


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes and Python versions (unlike ``hash``)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class ShardLoader:
    """Infinite iterator of collated batches over epochs; ``iter_epoch()`` walks exactly one epoch (evaluation)."""

    def __init__(
        self,
        shards: ShardSet,
        *,
        batch_size: int,
        collator: Callable[[list, torch.Generator], dict[str, torch.Tensor]],
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
        self.shards = shards
        self.batch_size = batch_size
        self.collator = collator
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_sequences = len(shards)
        global_batch = batch_size * world_size
        if drop_last:
            self.steps_per_epoch = self.num_sequences // global_batch
        else:
            self.steps_per_epoch = -(-self.num_sequences // global_batch)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{shards.path} has {self.num_sequences} sequences, fewer than one global batch of "
                f"{batch_size} x {world_size} ranks; lower batch_size or use drop_last=False"
            )
        self.epoch = 0
        self.step = 0  # batches of the current epoch already yielded
        self.generator = torch.Generator().manual_seed(derive_seed(seed, "collate", rank))
        self._order_epoch = -1
        self._order = torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __repr__(self) -> str:
        return (
            f"ShardLoader(sequences={self.num_sequences}, batch_size={self.batch_size}, rank={self.rank}/"
            f"{self.world_size}, epoch={self.epoch}, step={self.step}/{self.steps_per_epoch})"
        )

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_sequences)
        if epoch != self._order_epoch:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch))
            dtype = torch.int32 if self.num_sequences < 2**31 else torch.long
            self._order = torch.randperm(self.num_sequences, generator=generator, dtype=dtype)
            self._order_epoch = epoch
        return self._order

    def _indices(self, order: torch.Tensor, step: int) -> torch.Tensor:
        global_batch = self.batch_size * self.world_size
        chunk = order[step * global_batch : (step + 1) * global_batch]
        return chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __iter__(self) -> ShardLoader:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        while True:
            if self.step >= self.steps_per_epoch:
                self.epoch += 1
                self.step = 0
            indices = self._indices(self._epoch_order(self.epoch), self.step)
            self.step += 1
            if indices.numel():  # only the partial last batch of drop_last=False can leave a rank empty
                return self.collator(self.shards.read(indices.numpy()), self.generator)

    def iter_epoch(self, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's batches of one whole epoch, masked with a fresh generator so every evaluation sees the
        same batches; the training position and generator are left untouched."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "evaluate", self.rank))
        order = self._epoch_order(epoch)
        for step in range(self.steps_per_epoch):
            indices = self._indices(order, step)
            if indices.numel():
                yield self.collator(self.shards.read(indices.numpy()), generator)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "generator": self.generator.get_state(),
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "num_sequences": self.num_sequences,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "rank", "world_size", "batch_size", "shuffle", "num_sequences"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"loader state was saved with {key}={state.get(key)!r} but this loader has "
                    f"{key}={getattr(self, key)!r}; resuming would not reproduce the batches"
                )
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
