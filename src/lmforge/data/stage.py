"""Plumbing shared by the ``prepare`` stages: an order-keeping parallel map with bounded memory, the worker
start method, the ``num_proc`` and ``output_dir`` checks, the ``--executor`` flags (``ExecutorArgs``, which the
corpus, shards and all stages extend) and their runner, the MB/s progress bar and the ``--input`` list."""

from __future__ import annotations

import collections
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from lmforge.data.errors import PrepareError


def bounded_imap(
    function: Callable,
    items: Iterable[Any],
    *,
    num_proc: int,
    initializer: Callable | None = None,
    initargs: tuple = (),
    max_in_flight: int | None = None,
) -> Iterator[Any]:
    """``map(function, items)`` in order over ``num_proc`` processes, with at most ``max_in_flight`` items queued
    (``Pool.imap`` reads its whole input ahead, which defeats streaming). ``num_proc == 1`` runs in-process."""
    if num_proc == 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(function, items)
        return
    max_in_flight = max_in_flight or 2 * num_proc
    with mp_context().Pool(num_proc, initializer=initializer, initargs=initargs) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.apply_async(function, (item,)))
            if len(pending) >= max_in_flight:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def mp_context():
    """fork where available: workers inherit imported modules (rjieba's dictionary, numpy) instead of re-importing."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def check_num_proc(num_proc: int) -> int:
    if num_proc < 1:
        raise PrepareError(f"num_proc must be >= 1, got {num_proc}")
    return num_proc


ExecutorKind = Literal["local", "datatrove-local", "datatrove-slurm"]
EXECUTOR_KINDS: tuple[str, ...] = get_args(ExecutorKind)


@dataclass(kw_only=True)
class ExecutorArgs:
    """The flags that choose who does a stage's work, written once for every stage that has them. Keyword-only, so
    a stage's fields without a default may follow these in its own class."""

    executor: ExecutorKind = "local"
    """local: --num_proc processes on this machine. datatrove-local / datatrove-slurm: --tasks datatrove tasks (local
    processes, or a Slurm job array on a shared filesystem) do the work; this process merges it in order, so the output
    equals a local run's (docs/pipeline/distributed.md; pip install 'lmforge[distributed]')."""
    tasks: int = 1
    """Datatrove tasks (each takes every tasks-th work item) with --executor datatrove-*."""
    executor_options: dict | None = None
    """Keyword arguments of datatrove's LocalPipelineExecutor / SlurmPipelineExecutor as JSON, e.g. '{"workers": 2}'
    or '{"partition": "cpu", "time": "04:00:00", "venv_path": ".venv/bin/activate"}'."""

    def executor_fields(self) -> dict[str, Any]:
        """These flags' values, to hand on to another stage's arguments (``prepare all`` -> corpus, shards)."""
        return {f.name: getattr(self, f.name) for f in fields(ExecutorArgs)}

    def runner(self):
        """``make_runner`` for these flags."""
        return make_runner(self.executor, tasks=self.tasks, options=self.executor_options)


def make_runner(executor: str, *, tasks: int, options: dict | None):
    """None for ``--executor local`` (the stage maps its work items over ``--num_proc`` processes with
    ``bounded_imap``), else a ``distributed.DatatroveRunner`` whose ``map`` hands the same items to datatrove tasks.
    Built at the start of a stage, so a missing datatrove or a wrong option is one line before any work."""
    if executor not in EXECUTOR_KINDS:
        raise PrepareError(f"unknown executor {executor!r}; choose from {EXECUTOR_KINDS}")
    if executor == "local":
        if tasks != 1 or options:
            raise PrepareError("--tasks and --executor_options are for --executor datatrove-*; --num_proc sets the "
                               "processes of --executor local")  # fmt: skip
        return None
    from lmforge.data.distributed import DatatroveRunner

    return DatatroveRunner(executor, tasks=tasks, options=options)


def _progress_bar(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total or None,
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1 << 20,
        disable=None if enabled else True,  # None: off when stderr is not a terminal
        smoothing=0.1,
    )


def _check_output_dir(path: str) -> None:
    if Path(path).exists() and not Path(path).is_dir():
        raise PrepareError(f"output_dir {path!r} exists and is not a directory")


def _as_list(value: list[str] | str) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]
