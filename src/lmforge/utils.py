"""Small shared helpers: seeding, devices, CPU threads, rank-0 printing. Kept small on purpose."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices). Each rank gets ``seed + rank`` (nanoGPT's seed offset)."""
    s = seed + rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def get_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when available, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def print0(*args, **kwargs) -> None:
    """Print on rank 0 only."""
    if rank() == 0:
        print(*args, **kwargs, flush=True)


@contextlib.contextmanager
def torch_threads(threads: int | None, *, flag: str = "--threads") -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block, restored afterwards; None leaves torch's default."""
    if threads is not None and threads < 1:
        raise ValueError(f"{flag} must be >= 1, got {threads}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back until the block ends, then raise ``KeyboardInterrupt``: a checkpoint being written
    is finished rather than cut (``torch.save`` interrupted mid-file turns the interrupt into a ``RuntimeError``).
    Outside the main thread, or where SIGINT is ignored (``nohup``), nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
