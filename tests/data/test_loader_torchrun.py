"""Multi-process reading under torchrun (2 processes, gloo, CPU): the ranks' ``ShardLoader``s read disjoint sequences
whose union is the epoch, each rank reading only its own (the in-process split of one global batch is
``test_loader.test_ranks_partition_each_global_batch``; docs/pipeline/distributed.md says which bytes a node reads)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Every rank records the sequence indices its ShardSet.read is asked for: one epoch of iter_epoch (drop_last false:
# the whole epoch) and one epoch of training batches (next(), drop_last true, what pretrain uses); rank 0 gathers.
CHILD = r"""
import json, sys
import numpy as np
import torch.distributed as dist
from lmforge.data.collate import CLMCollator
from lmforge.data.loader import ShardLoader
from lmforge.data.shards import ShardSet
from lmforge.data.tokenizer import load_tokenizer

class RecordingShardSet(ShardSet):
    def read(self, indices):
        self.seen.extend(np.asarray(indices).tolist())
        return super().read(indices)

prepared, out = sys.argv[1], sys.argv[2]
dist.init_process_group("gloo")
rank, world_size = dist.get_rank(), dist.get_world_size()
shards = RecordingShardSet(prepared + "/shards/train")
collator = CLMCollator(load_tokenizer(prepared + "/tokenizer"))
seen = {}
for mode, drop_last in (("epoch", False), ("train", True)):
    shards.seen = []
    loader = ShardLoader(shards, batch_size=4, collator=collator, seed=3, rank=rank, world_size=world_size,
                         drop_last=drop_last)
    batches = loader.iter_epoch() if mode == "epoch" else (next(loader) for _ in range(len(loader)))
    for _ in batches:
        pass
    seen[mode] = shards.seen
gathered = [None] * world_size
dist.all_gather_object(gathered, {"world_size": world_size, "seen": seen, "sequences": len(shards)})
if rank == 0:
    with open(out, "w") as handle:
        json.dump(gathered, handle)
dist.destroy_process_group()
"""


def test_torchrun_ranks_read_disjoint_sequences_covering_the_epoch(prepared: Path, tmp_path: Path) -> None:
    script, out = tmp_path / "child.py", tmp_path / "seen.json"
    script.write_text(CHILD, encoding="utf-8")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(prepared), str(out)]
    process = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    ranks = json.loads(out.read_text(encoding="utf-8"))
    assert [r["world_size"] for r in ranks] == [2, 2]
    total = ranks[0]["sequences"]
    global_batch = 4 * 2
    for mode in ("epoch", "train"):
        first, second = (set(r["seen"][mode]) for r in ranks)
        assert len(first) == len(ranks[0]["seen"][mode]) and len(second) == len(ranks[1]["seen"][mode])  # once each
        assert not first & second  # disjoint: no sequence is read by both ranks
        union = first | second
        if mode == "epoch":
            assert union == set(range(total))  # together they cover the epoch
        else:  # drop_last: the epoch less the last partial global batch, both ranks equally
            assert len(union) == total // global_batch * global_batch and len(first) == len(second)
        assert abs(len(first) - len(second)) <= 4  # each rank reads about half, not everything
