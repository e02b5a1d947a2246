"""Exact resume after a real SIGKILL: N straight steps == k steps, kill, resume, N - k steps (bitwise).

The killed run dies *inside* the save of its second checkpoint (the weights file half written, the directory
not yet renamed), so the test also proves that a torn checkpoint is never picked up: ``--resume_from_checkpoint
auto`` must fall back to the previous complete one. Dropout is on and gradient accumulation is 2, so the RNG
states and the loader position both have to be restored for the losses to match.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from lmforge.train.checkpoint import MODEL_FILE, load_training_state, verify_checkpoint
from sigkill_child import CHILD

ROOT = Path(__file__).resolve().parents[2]


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        CHILD,
        "pretrain",
        "--config",
        str(ROOT / "configs/tiny/bert-mlm.yaml"),
        "--train_dir",
        str(data),
        "--output_dir",
        str(out),
        "--max_steps",
        "12",
        "--gradient_accumulation_steps",
        "2",
        "--logging_steps",
        "1",
        "--save_steps",
        "4",
        "--eval_steps",
        "4",
        "--report_to",
        "none",
        *extra,
    ]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), **extra}
    env.pop("KILL_AT_STEP", None)
    return env | extra


def _losses(run: Path) -> dict[tuple[str, int], float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {(k, r["step"]): r[k] for r in records for k in ("train_loss", "eval_loss", "eval_accuracy") if k in r}


def test_sigkill_during_save_then_resume_is_bitwise_identical(mlm_data: Path, tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    runs = [
        subprocess.Popen(_command(mlm_data, straight), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
        subprocess.Popen(
            _command(mlm_data, killed), env=_env(KILL_AT_STEP="8"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ),
    ]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert runs[0].returncode == 0, outputs[0]
    assert runs[1].returncode == -signal.SIGKILL, outputs[1]

    # the kill left checkpoint-4 complete and a torn temporary directory for step 8
    assert verify_checkpoint(killed / "checkpoint-4") is None
    torn = list(killed.glob(".tmp-checkpoint-8-*"))
    assert len(torn) == 1 and not (killed / "checkpoint-8").exists()

    resumed = subprocess.run(
        _command(mlm_data, killed, "--resume_from_checkpoint", "auto"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout and "checkpoint-4" in resumed.stdout
    assert not torn[0].exists()  # stale temporaries are cleaned up by the next save

    expected, got = _losses(straight), _losses(killed)
    assert len([k for k in expected if k[0] == "train_loss"]) == 12
    assert got == expected  # exact: every training loss, eval loss and eval accuracy

    final_a, final_b = (
        load_file(str(straight / "checkpoint-12" / MODEL_FILE)),
        load_file(str(killed / "checkpoint-12" / MODEL_FILE)),
    )
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    state_a, state_b = (load_training_state(run / "checkpoint-12") for run in (straight, killed))
    moments_a, moments_b = state_a["optimizer"]["state"], state_b["optimizer"]["state"]
    assert all(torch.equal(moments_a[n]["exp_avg_sq"], moments_b[n]["exp_avg_sq"]) for n in moments_a)
    assert state_a["ranks"][0]["loader"]["step"] == state_b["ranks"][0]["loader"]["step"]
