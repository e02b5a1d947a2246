"""``prepare all`` on datatrove's local executor with 2 tasks equals a one-process run on the same input: corpus parts,
report counts, tokenizer, every shard file. And the runner's option checks, the Slurm executor built (not run)
from its options, and the one-line error without datatrove."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import datatrove  # noqa: F401  (a dev dependency: the test fails, never skips, without it)
import pytest
from data_helpers import make_documents, write_jsonl

from lmforge.data.errors import PrepareError
from lmforge.data.prepare import PrepareAllArgs, prepare_all
from lmforge.data.shard_stage import _byte_ranges as _ranges


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """Six sources with duplicates across them, short documents and a truncated gzip (documents lost with
    keep_partial): every count of the report is non-zero somewhere."""
    root = tmp_path_factory.mktemp("raw")
    documents = make_documents(240, seed=7)
    for i in range(4):
        write_jsonl(root / f"part{i}.jsonl", [*documents[i * 50 : i * 50 + 60], "短"])  # 10 shared with the next
    (root / "plain.txt").write_text("\n\n".join(documents[200:230]) + "\n", encoding="utf-8")
    data = gzip.compress("\n\n".join(documents[230:]).encode())
    (root / "cut.txt.gz").write_bytes(data[: len(data) * 2 // 3])
    return root


def _prepare(raw: Path, out: Path, **kwargs) -> Path:
    return prepare_all(
        PrepareAllArgs(
            input=[str(raw)],
            output_dir=str(out),
            max_seq_length=32,
            keep_partial=True,
            validation_split_percentage=10.0,
            progress=False,
            **kwargs,
        )
    )


def _contents(out: Path) -> dict:
    """Every file of the output by relative path; JSON without its timings and run settings."""
    found = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = str(path.relative_to(out))
        if name == "prepare.json":
            continue  # its args name the executor
        if path.suffix == ".json":  # paths inside (the tokenizer's, the inputs') relative to the output directory
            data = json.loads(path.read_text(encoding="utf-8").replace(str(out), "OUT"))
            for key in ("seconds", "mb_per_s", "settings"):
                data.pop(key, None)
                data.get("build", {}).pop(key, None)
            found[name] = data
        else:
            found[name] = path.read_bytes()
    return found


def _small_ranges(
    files, size
):  # 4 KB byte ranges instead of 2 MB: each task encodes several of the shard stage's items
    return _ranges(files, 4096)


@pytest.fixture(scope="module")
def single(raw: Path, tmp_path_factory) -> Path:
    from lmforge.data import shard_stage

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shard_stage, "_byte_ranges", _small_ranges)
        single = _prepare(raw, tmp_path_factory.mktemp("single") / "out")
    assert len(_small_ranges([single / "corpus" / "part-00000.jsonl"], 0)) >= 4
    return single


def test_two_datatrove_tasks_equal_one_process(raw: Path, single: Path, tmp_path: Path, monkeypatch) -> None:
    from lmforge.data import shard_stage

    monkeypatch.setattr(shard_stage, "_byte_ranges", _small_ranges)
    split = _prepare(raw, tmp_path / "datatrove", executor="datatrove-local", tasks=2, executor_options={"workers": 2})
    one, two = _contents(single), _contents(split)
    assert sorted(one) == sorted(two)  # the same files, and no datatrove work folders left behind
    assert one == two
    assert any(name.endswith(".bin") for name in one) and "tokenizer/lmforge_tokenizer.json" in one
    report = json.loads((split / "prepare.json").read_text(encoding="utf-8"))["corpus"]
    assert report["settings"]["executor"] == "datatrove-local" and report["settings"]["tasks"] == 2
    out, lost, left_out = report["documents_out"], report["documents_lost"], report["documents_left_out"]
    assert report["documents_in"] == out + sum(report["skipped"].values()) + lost + left_out
    assert report["skipped"]["duplicate"] and report["skipped"]["too_short"] and report["documents_lost"]
    train = json.loads((split / "shards" / "train" / "index.json").read_text(encoding="utf-8"))
    assert (
        train["tokenizer"]["fingerprint"]
        == json.loads((single / "tokenizer" / "lmforge_tokenizer.json").read_text(encoding="utf-8"))["fingerprint"]
    )


def test_runner_options_are_checked_before_any_work(tmp_path: Path) -> None:
    from lmforge.data.stage import make_runner

    with pytest.raises(PrepareError, match="not options of datatrove-local"):
        make_runner("datatrove-local", tasks=2, options={"partition": "cpu"})
    with pytest.raises(PrepareError, match=r"needs --executor_options with \['partition', 'time'\]"):
        make_runner("datatrove-slurm", tasks=2, options={})
    with pytest.raises(PrepareError, match="--tasks and --executor_options are for --executor datatrove"):
        make_runner("local", tasks=2, options=None)
    with pytest.raises(PrepareError, match="tasks must be >= 1"):
        make_runner("datatrove-local", tasks=0, options=None)
    assert make_runner("local", tasks=1, options=None) is None


def test_slurm_executor_is_built_from_its_options(tmp_path: Path) -> None:
    from lmforge.data.distributed import TaskShare
    from lmforge.data.stage import make_runner

    runner = make_runner(
        "datatrove-slurm",
        tasks=8,
        options={"partition": "cpu", "time": "04:00:00", "cpus_per_task": 2, "venv_path": ".venv/bin/activate",
                 "sbatch_args": {"account": "lm"}},
    )  # fmt: skip
    executor = runner.executor([TaskShare(len, [], str(tmp_path))], logging_dir=str(tmp_path / "logs"))
    script = executor.get_launch_file_contents(executor.get_sbatch_args(8), "launch_pickled_pipeline executor.pik")
    for line in ("--partition=cpu", "--time=04:00:00", "--cpus-per-task=2", "--array=0-7", "--account=lm"):
        assert f"#SBATCH {line}" in script
    assert "source .venv/bin/activate" in script and executor.world_size == 8


def test_without_datatrove_the_error_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['datatrove'] = None\n"
        "from lmforge.data.stage import make_runner\n"
        "try:\n    make_runner('datatrove-local', tasks=2, options=None)\n"
        "except ValueError as error:\n    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == (
        "--executor datatrove-local/datatrove-slurm needs datatrove: pip install 'lmforge[distributed]'"
    )


# A stand-in for Slurm on this machine: sbatch runs the array's tasks one after the other (SLURM_ARRAY_TASK_ID set,
# the --export variables passed) and prints a job id; squeue says the job has left the queue; scontrol names the node.
FAKE_SBATCH = r"""
import os, re, subprocess, sys
script = open(sys.argv[-1]).read()
env = dict(os.environ, SLURM_NODELIST="localhost")
for arg in sys.argv[1:-1]:
    if arg.startswith("--export=ALL,"):
        env.update(kv.split("=", 1) for kv in arg[len("--export=ALL,"):].split(","))
array = re.search(r"#SBATCH --array=0-(\d+)", script)
for task in range(int(array.group(1)) + 1) if array else [None]:
    task_env = env if task is None else dict(env, SLURM_ARRAY_TASK_ID=str(task))
    subprocess.run(["bash", sys.argv[-1]], env=task_env, check=True, stdout=sys.stderr)
print("Submitted batch job 4242")
"""


def test_slurm_executor_runs_the_stages_through_sbatch(raw: Path, single: Path, tmp_path: Path) -> None:
    """The whole datatrove-slurm path through the CLI: the executor pickled with dill, the job array, the wait on the
    completion markers, the merge; sbatch/squeue/scontrol are stand-ins that run the tasks here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!{sys.executable}\n{FAKE_SBATCH}", encoding="utf-8")
    (bin_dir / "squeue").write_text("#!/bin/sh\n", encoding="utf-8")
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho localhost\n", encoding="utf-8")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    options = {"partition": "cpu", "time": "00:10:00", "with_srun": False, "mail_type": "NONE"}
    driver = (
        "import sys\nfrom lmforge import cli\nfrom lmforge.data import shard_stage\n"
        "import test_distributed_prepare as t\nshard_stage._byte_ranges = t._small_ranges\ncli.main(sys.argv[1:])\n"
    )
    argv = ["prepare", "all", "--input", str(raw), "--output_dir", str(tmp_path / "slurm"), "--max_seq_length", "32"]
    argv += ["--keep_partial", "true", "--validation_split_percentage", "10", "--progress", "false"]
    argv += ["--executor", "datatrove-slurm", "--tasks", "2", "--executor_options", json.dumps(options)]
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    process = subprocess.run(
        [sys.executable, "-c", driver, *argv], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert _contents(tmp_path / "slurm") == _contents(single)
    report = json.loads((tmp_path / "slurm" / "corpus" / "report.json").read_text(encoding="utf-8"))
    assert report["settings"]["executor"] == "datatrove-slurm"


def test_slurm_job_that_left_the_queue_unfinished_is_an_error(tmp_path: Path, monkeypatch) -> None:
    from lmforge.data.stage import make_runner

    (tmp_path / "squeue").write_text("#!/bin/sh\n", encoding="utf-8")  # the job is no longer queued
    (tmp_path / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), os.environ.get("PATH", "")]))
    runner = make_runner("datatrove-slurm", tasks=2, options={"partition": "cpu", "time": "01:00:00"})

    class Submitted:  # task 1 never wrote its completion marker
        job_id = "4242"

        def get_incomplete_ranks(self, skip_completed):
            return [1]

    with pytest.raises(PrepareError, match=r"tasks \[1\] of 2 did not complete; see the logs in"):
        runner._wait(Submitted(), tmp_path)
