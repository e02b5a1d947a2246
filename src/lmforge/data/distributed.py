"""The prepare stages beyond one machine, on datatrove's executors (local processes or a Slurm job array).

The only module that imports datatrove (``pip install 'lmforge[distributed]'``). Nothing here partitions or merges
on its own: a stage already cuts its work into ordered items (ingest: the sources in seeded order; shards: ~2 MB
byte ranges of the corpus) and merges the items' results in that order in one process (the de-duplication, the
shuffle buffer and the parts of ingest; the sequence packing and the shard writers of the shard stage). With
``--num_proc`` the items go to a local process pool (``stage.bounded_imap``); with ``--executor datatrove-*`` they
go to ``DatatroveRunner.map``: datatrove task ``rank`` of ``world_size`` runs the same item function on items
``rank, rank + world_size, ...`` (``TaskShare``, one ``PipelineStep``) and pickles each result into
``work_dir/results`` on the shared filesystem; this process waits for every task and yields the results in item
order to the stage's own merge. The output therefore equals a one-process run's, byte for byte, whatever the number
of tasks (tests/data/test_distributed_prepare.py). docs/pipeline/distributed.md compares this with Ray Data.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import pickle
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from lmforge.data.errors import PrepareError

try:
    from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
    from datatrove.pipeline.base import PipelineStep
except ImportError as error:  # one line on the command line (a PrepareError is a ValueError)
    raise PrepareError(
        "--executor datatrove-local/datatrove-slurm needs datatrove: pip install 'lmforge[distributed]'"
    ) from error

EXECUTORS = {"datatrove-local": LocalPipelineExecutor, "datatrove-slurm": SlurmPipelineExecutor}
# set by DatatroveRunner for every stage, so not --executor_options
RESERVED_OPTIONS = ("pipeline", "tasks", "logging_dir", "depends", "depends_job_id", "skip_completed")


class TaskShare(PipelineStep):
    """One datatrove task's share of a stage: ``function`` on items ``rank, rank + world_size, ...``, each result
    pickled to ``results_dir/{item:07d}.pkl`` (written aside and renamed: a killed task leaves no half result).
    ``initializer(*initargs)`` runs first, as a pool worker's initializer does (it loads the tokenizer)."""

    name = "lmforge stage share"
    type = "lmforge"

    def __init__(
        self,
        function: Callable[[Any], Any],
        items: list,
        results_dir: str,
        initializer: Callable | None = None,
        initargs: tuple = (),
    ) -> None:
        super().__init__()
        self.function, self.items, self.results_dir = function, items, results_dir
        self.initializer, self.initargs = initializer, initargs

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if self.initializer is not None:
            self.initializer(*self.initargs)
        for k in range(rank, len(self.items), world_size):
            with self.track_time("item"):
                result = self.function(self.items[k])
            path = os.path.join(self.results_dir, f"{k:07d}.pkl")
            with open(path + ".tmp", "wb") as handle:
                pickle.dump(result, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(path + ".tmp", path)
            self.stat_update("items")
        yield from data or ()


class DatatroveRunner:
    """An ordered ``map`` over datatrove tasks: ``kind`` is ``datatrove-local`` or ``datatrove-slurm``, ``tasks`` the
    datatrove world size, ``options`` keyword arguments of the executor class (datatrove's own names: ``workers``,
    ``partition``, ``time``, ``cpus_per_task``, ``venv_path``, ``sbatch_args``...). Checked when constructed, so a
    wrong option is one line before any work."""

    def __init__(self, kind: str, *, tasks: int, options: dict | None = None, poll_seconds: float = 30.0) -> None:
        if kind not in EXECUTORS:
            raise PrepareError(f"unknown executor {kind!r}; choose from {sorted(EXECUTORS)}")
        if tasks < 1:
            raise PrepareError(f"tasks must be >= 1, got {tasks}")
        options = dict(options or {})
        allowed = set(inspect.signature(EXECUTORS[kind].__init__).parameters) - {"self", *RESERVED_OPTIONS}
        if unknown := sorted(set(options) - allowed):
            raise PrepareError(f"--executor_options {unknown} are not options of {kind}; choose from {sorted(allowed)}")
        if kind == "datatrove-slurm" and (missing := [k for k in ("partition", "time") if k not in options]):
            raise PrepareError(f"--executor datatrove-slurm needs --executor_options with {missing}")
        if kind == "datatrove-local":  # fork as the --num_proc pool does: workers inherit the imported modules
            options.setdefault("start_method", "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self.kind, self.tasks, self.options, self.poll_seconds = kind, tasks, options, poll_seconds
        self.executor([], logging_dir=tempfile.gettempdir())  # datatrove's own checks, before any work (writes nothing)

    def __repr__(self) -> str:
        return f"DatatroveRunner({self.kind!r}, tasks={self.tasks}, options={self.options})"

    def executor(self, pipeline: list, *, logging_dir: str):
        """The datatrove executor of one stage (constructing it launches nothing)."""
        kwargs = {"tasks": self.tasks, "skip_completed": False, "logging_dir": logging_dir, **self.options}
        try:
            return EXECUTORS[self.kind](pipeline, **kwargs)
        except (TypeError, ValueError) as error:
            raise PrepareError(f"--executor {self.kind} with --executor_options {self.options}: {error}") from error

    def map(
        self,
        function: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        work_dir: str | Path,
        initializer: Callable | None = None,
        initargs: tuple = (),
    ) -> Iterator[Any]:
        """``map(function, items)`` in item order, computed by the datatrove tasks. ``work_dir`` (on a filesystem
        every task sees) holds the results and datatrove's logs; it is removed once every result has been yielded
        and kept, logs included, when a task fails."""
        items = list(items)
        work_dir = Path(work_dir).resolve()
        shutil.rmtree(work_dir, ignore_errors=True)
        results = work_dir / "results"
        results.mkdir(parents=True)
        step = TaskShare(function, items, str(results), initializer, initargs)
        executor = self.executor([step], logging_dir=str(work_dir / "logs"))
        executor.run()  # local: runs every task; slurm: submits the job array and returns
        self._wait(executor, work_dir)
        for k in range(len(items)):
            path = results / f"{k:07d}.pkl"
            with open(path, "rb") as handle:
                result = pickle.load(handle)
            path.unlink()
            yield result
        shutil.rmtree(work_dir, ignore_errors=True)

    def _wait(self, executor, work_dir: Path) -> None:
        """Until every task has marked itself complete; a Slurm job that left the queue short of that is an error."""
        while True:
            queued = self.kind == "datatrove-slurm" and _slurm_job_queued(executor.job_id)
            incomplete = executor.get_incomplete_ranks(skip_completed=True)  # after squeue: no race with the last task
            if not incomplete:
                return
            if not queued:
                raise PrepareError(
                    f"{self.kind}: tasks {incomplete[:10]} of {self.tasks} did not complete; see the logs in "
                    f"{work_dir / 'logs'}"
                )
            time.sleep(self.poll_seconds)


def _slurm_job_queued(job_id) -> bool:
    if job_id in (None, -1):  # -1: datatrove launched nothing, every task was complete
        return False
    try:
        queued = subprocess.run(["squeue", "-h", "-j", str(job_id)], capture_output=True, text=True, check=False)
    except OSError as error:
        raise PrepareError(f"--executor datatrove-slurm waits on its job with squeue, which failed: {error}") from error
    return bool(queued.stdout.strip())
