"""DDP under torchrun (gloo, CPU): 2 processes x accumulation 2 x batch b == 1 process x accumulation 4 x batch b.

The loader gives rank r of W the r-th slice of each global batch, so micro-step m of rank r reads what micro-step
2m + r of the single process reads: both setups see the same sequences per optimizer step, and with dropout off
the losses agree to float rounding. Accumulation on the DDP side exercises the skipped gradient sync
(``require_backward_grad_sync``) of the first micro-step.
The objective is CLM because its collator draws no random numbers (MLM masks come from a per-rank generator, so
rank 1 masks differently from the single process's second micro-step: same maths, different batch).

FSDP2 (``--fsdp full_shard``) is construct-and-train tested on the same data: its losses match too, and its
checkpoint (gathered to full tensors) loads in a single process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge.train.checkpoint import MODEL_FILE, load_model, load_training_state

ROOT = Path(__file__).resolve().parents[2]
COMMON = [
    "--model",
    "bert",
    "--model_preset",
    "tiny",
    "--objective",
    "clm",
    "--max_seq_length",
    "24",
    "--model_overrides",
    '{"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}',
    "--per_device_train_batch_size",
    "2",
    "--learning_rate",
    "1e-3",
    "--max_steps",
    "4",
    "--warmup_steps",
    "1",
    "--logging_steps",
    "1",
    "--save_steps",
    "4",
    "--do_eval",
    "false",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--seed",
    "3",
]
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def _single(data: Path, out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "lmforge", "pretrain", "--train_dir", str(data), "--output_dir", str(out), *COMMON]
    return subprocess.Popen(
        [*argv, "--gradient_accumulation_steps", "4"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _torchrun(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    argv = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "lmforge", "pretrain"]
    argv += ["--train_dir", str(data), "--output_dir", str(out), *COMMON, "--gradient_accumulation_steps", "2", *extra]
    return subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(process: subprocess.Popen) -> None:
    output = process.communicate(timeout=180)[0].decode()
    assert process.returncode == 0, output[-4000:]


def _train_losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in records if "train_loss" in r]


def test_ddp_two_processes_equal_one_process_with_accumulation(clm_data: Path, tmp_path: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    processes = [_single(clm_data, single), _torchrun(clm_data, ddp)]
    for process in processes:
        _wait(process)
    expected, got = _train_losses(single), _train_losses(ddp)
    assert len(expected) == 4 and expected[0] > expected[-1]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=0, atol=1e-6)
    a, b = load_file(str(single / "checkpoint-4" / MODEL_FILE)), load_file(str(ddp / "checkpoint-4" / MODEL_FILE))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5)
    env = json.loads((ddp / "env.json").read_text())
    assert env["world_size"] == 2
    assert len(load_training_state(ddp / "checkpoint-4")["ranks"]) == 2  # both ranks' loader and RNG states


@pytest.mark.slow
def test_fsdp_trains_like_one_process_and_its_checkpoint_loads_anywhere(clm_data: Path, tmp_path: Path) -> None:
    single, fsdp = tmp_path / "single", tmp_path / "fsdp"
    processes = [_single(clm_data, single), _torchrun(clm_data, fsdp, "--fsdp", "full_shard")]
    for process in processes:
        _wait(process)
    torch.testing.assert_close(
        torch.tensor(_train_losses(fsdp)), torch.tensor(_train_losses(single)), rtol=0, atol=1e-5
    )
    model = load_model(fsdp)  # full tensors gathered to rank 0
    assert sum(p.numel() for p in model.parameters()) > 0
    state = load_training_state(fsdp / "checkpoint-4")
    assert set(state["optimizer"]["state"]) == {n for n, _ in model.named_parameters()}
