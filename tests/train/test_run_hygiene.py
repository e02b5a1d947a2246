"""How a pretraining run behaves as a tool: Ctrl-C, one writer per run directory, ``auto`` with nothing to resume,
the final summary's learning rate, and resuming with a lower learning rate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge.train.checkpoint import LOCK_FILE, RunLockedError, acquire_run_lock, release_run_lock
from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import format_summary, pretrain
from tiny_args import tiny_pretrain

ROOT = Path(__file__).resolve().parents[2]
TINY = tiny_pretrain(model="bert", max_steps=4, logging_steps=1, save_steps=2, do_eval=False)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_ctrl_c_prints_step_checkpoint_and_resume_command(mlm_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["pretrain", "--config", str(ROOT / "configs/tiny/bert-mlm.yaml"), "--train_dir", str(mlm_data),
            "--output_dir", str(out), "--max_steps", "100000", "--save_steps", "2", "--logging_steps", "1000",
            "--do_eval", "false", "--report_to", "none", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    # SIGINT back to its default in the child: a test run started in the background (`pytest &`, nohup) inherits
    # an ignored SIGINT, which Python keeps ignoring, and the child would train on to max_steps
    child = subprocess.Popen([sys.executable, "-m", "lmforge", *argv], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 600  # generous: a loaded 2-core machine starts torch slowly

    def saved() -> bool:  # checkpoint-4 or later: rotation (save_total_limit 2) deletes early ones within milliseconds
        return any(int(p.name.split("-")[1]) >= 4 for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit())

    while not saved() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert saved(), child.communicate()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("lmforge pretrain: interrupted at step ")
    step = int(line.split("interrupted at step ")[1].split(";")[0])
    newest = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert step >= newest >= 4 and f"last valid checkpoint {out / f'checkpoint-{newest}'}" in line
    assert line.endswith(f"resume with: lmforge {' '.join(argv)} --resume_from_checkpoint auto")
    assert not (out / LOCK_FILE).exists()  # released on the way out


def test_second_writer_fails_at_once_with_the_holders_pid(mlm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.mkdir()
        (run / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename}))
        started = time.perf_counter()
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid}"):
            pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), **TINY))
        assert time.perf_counter() - started < 5 and not list(run.glob("checkpoint-*"))
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead now: its stale lock is taken over, and released at the end of the run
    assert pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), **TINY))["step"] == 4
    assert not (run / LOCK_FILE).exists()


def test_lock_is_reentrant_and_released_only_by_its_holder(tmp_path: Path) -> None:
    path = acquire_run_lock(tmp_path)
    assert acquire_run_lock(tmp_path) == path  # the same process again (resume in-process)
    path.write_text(json.dumps({"pid": 1, "host": os.uname().nodename}))  # pid 1 is alive: someone else's lock
    release_run_lock(tmp_path)
    assert path.exists()
    with pytest.raises(RunLockedError, match="process 1 "):
        acquire_run_lock(tmp_path)


def test_auto_with_nothing_to_resume_says_it_starts_from_scratch(
    mlm_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(tmp_path / "run"), resume_from_checkpoint="auto",
                          **TINY))  # fmt: skip
    out = capsys.readouterr().out
    assert f"no checkpoint in {tmp_path / 'run'} to resume from, starting from scratch" in out


def test_summary_prints_the_last_learning_rate(mlm_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), **(TINY | {"learning_rate": 4e-5})))
    last_lr = [r["learning_rate"] for r in _records(run) if "learning_rate" in r][-1]
    assert 0 < last_lr < 1e-4  # linear decay: the last step's rate is 1e-05
    summary = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pretrain finished"))
    assert f"learning_rate: {last_lr:.4g}" in summary and "learning_rate: 0.0" not in summary
    assert format_summary({"learning_rate": 1e-05, "step": 3}) == "{learning_rate: 1e-05, step: 3}"


def test_resume_with_a_lower_learning_rate(mlm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    constant = TINY | {"lr_scheduler_type": "constant"}
    pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), **(constant | {"max_steps": 2})))
    result = pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), resume_from_checkpoint="auto",
                                   **(constant | {"learning_rate": 1e-4})))  # fmt: skip
    assert result["step"] == 4
    rates = {r["step"]: r["learning_rate"] for r in _records(run) if "learning_rate" in r}
    assert rates == {1: 1e-3, 2: 1e-3, 3: 1e-4, 4: 1e-4}
