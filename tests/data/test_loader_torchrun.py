"""Multi-process reading under torchrun (2 processes, gloo, CPU): the ranks' ``ShardLoader``s read disjoint sequences
whose union is the epoch, each rank reading only its own (the in-process split of one global batch is
``test_loader.test_ranks_partition_each_global_batch``); and the pages one rank of 32 brings in from disk are about
its share, not the whole shard set (docs/pipeline/distributed.md says which bytes a node reads)."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmforge.data.loader import ShardLoader
from lmforge.data.shards import ShardSet, ShardWriter

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


def _resident_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache (mincore)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size, page = path.stat().st_size, mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        pages = ctypes.create_string_buffer((size + page - 1) // page)
        assert libc.mincore(address, size, pages) == 0
        libc.munmap(address, size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in pages.raw) * page


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and posix_fadvise: Linux")
def test_one_rank_of_32_reads_about_its_share_of_the_pages(tmp_path: Path) -> None:
    """4096 CLM blocks of 512 uint16 tokens (1 KB each, 4 per page): rank 0 of 32 wants 1/32 of them, so it should
    touch ~12% of the token pages (and every page of the 1-bit word flags, 1/16 of the bytes), not the default
    read-around's 100%."""
    info = {"fingerprint": "f", "kind": "char", "path": "", "pad_token_id": 0, "cls_token_id": 1, "sep_token_id": 2,
            "mask_token_id": 3, "eos_token_id": 2, "separator_id": 2}  # fmt: skip
    writer = ShardWriter(tmp_path, objective="clm", vocab_size=30000, tokenizer_info=info, block_size=512)
    ids = np.random.default_rng(0).integers(5, 30000, size=4096 * 512).astype(np.uint16)
    writer.add(ids, word_starts=np.ones(ids.size, bool), doc_lengths=np.full(2048, 1024))
    writer.close(extra={"split": "train", "build": {}})
    files = sorted(tmp_path.glob("*.bin"))
    for path in files:  # out of the page cache (works on disk-backed filesystems, not tmpfs)
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    shards = ShardSet(tmp_path)
    tokens = shards._open(shards.files[0], "tokens")  # the advice itself, seen by the kernel: VmFlags "rr"
    assert "rr" in _vm_flags(Path(shards.path / shards.files[0]["tokens"]).resolve()), "map not advised MADV_RANDOM"
    del tokens
    evictable = not sum(map(_resident_bytes, files))  # tmpfs keeps the pages: only the advice is checked there
    loader = ShardLoader(shards, batch_size=4, collator=lambda examples, g: examples, seed=0, world_size=32)
    for _ in range(len(loader)):
        next(loader)
    share = sum(map(_resident_bytes, files)) / sum(p.stat().st_size for p in files)
    assert share < 0.3 or not evictable, f"rank 0 of 32 brought {share:.0%} of the shard bytes into memory"


def _vm_flags(path: Path) -> set[str]:
    """The VmFlags of this process's mapping of ``path`` (/proc/self/smaps)."""
    current = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line and "-" in line.split()[0] and ":" not in line.split()[0]:
            current = line.split()[-1] if len(line.split()) >= 6 else None
        elif line.startswith("VmFlags:") and current == str(path):
            return set(line.split()[1:])
    raise AssertionError(f"{path} is not mapped")
