"""Training faults: skipped steps logged as skipped, the newest *healthy* checkpoint named after a divergence, the
memory pre-check of a config, a full disk while saving and damaged weights (one line each, naming what is intact)."""

from __future__ import annotations

import errno
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmforge.train import checkpoint as checkpoint_module
from lmforge.train.checkpoint import CheckpointWriteError, list_checkpoints, save_checkpoint
from lmforge.train.config import PretrainArgs
from lmforge.train.distributed import init_distributed
from lmforge.train.loop import NonFiniteLossError, train
from lmforge.train.pretrain import build_job, pretrain
from tiny_args import tiny_pretrain

ROOT = Path(__file__).resolve().parents[2]
TINY = tiny_pretrain(model="bert", max_steps=12, logging_steps=1, save_steps=2, save_total_limit=1, do_eval=False,
                     max_nonfinite_steps=2)  # fmt: skip


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _faulty_job(data: Path, run: Path, *, spike: set[int], nan: set[int], **kw):
    """A tiny pretraining job whose loss at the (1-based) steps in ``spike`` is multiplied by 100 (finite but far
    above the running mean) and at those in ``nan`` is NaN."""
    job = build_job(
        PretrainArgs(train_dir=str(data), output_dir=str(run), **(TINY | kw)), init_distributed(use_cpu=True)
    )

    def hook(module, inputs, output):
        step = job.state.step + 1
        if step in spike:
            output.loss = output.loss * 100
        if step in nan:
            output.loss = output.loss * math.nan
        return output

    job.model.register_forward_hook(hook)
    return job


def test_skipped_steps_are_logged_as_skipped_not_as_a_zero_loss(mlm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    job = _faulty_job(mlm_data, run, spike=set(), nan={3}, max_steps=4, logging_steps=1)
    train(job)
    records = {r["step"]: r for r in _records(run) if "learning_rate" in r}
    assert "train_loss" not in records[3] and records[3]["skipped_steps"] == 1
    assert records[3]["skip_reason"].startswith("non-finite loss nan")
    assert all(math.isfinite(records[s]["train_loss"]) and "skipped_steps" not in records[s] for s in (1, 2, 4))
    assert records[4]["nonfinite_steps"] == 1


def test_a_window_with_finite_and_skipped_steps_logs_both(mlm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_faulty_job(mlm_data, run, spike=set(), nan={2}, max_steps=2, logging_steps=2))
    (record,) = [r for r in _records(run) if "learning_rate" in r]
    assert math.isfinite(record["train_loss"]) and record["skipped_steps"] == 1  # the mean of step 1 alone


def test_stop_message_names_the_newest_healthy_checkpoint(mlm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # steps 1-4 fine (checkpoints 2, 4 healthy); step 5 spikes, so checkpoint-6 is not healthy; 7 and 8 are NaN
    job = _faulty_job(mlm_data, run, spike={5}, nan={7, 8})
    with pytest.raises(NonFiniteLossError) as error:
        train(job)
    message = str(error.value)
    assert "stopping at step 8: 2 consecutive steps skipped" in message
    assert message.endswith(
        f"resume from the newest healthy checkpoint with --resume_from_checkpoint {run}/checkpoint-4"
    )
    # save_total_limit=1 keeps the newest checkpoint and, besides it, the healthy one
    assert [step for step, _ in list_checkpoints(run)] == [4, 6]
    unhealthy = [r for r in _records(run) if "unhealthy_checkpoint" in r]
    assert [r["unhealthy_checkpoint"] for r in unhealthy] == [6] and "spiked" in unhealthy[0]["unhealthy_reason"]

    # resuming from it with a lower learning rate runs to the end
    result = pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), resume_from_checkpoint=str(
        run / "checkpoint-4"), **(TINY | {"learning_rate": 3e-4})))  # fmt: skip
    assert result["step"] == 12 and result["nonfinite_steps"] == 0 and math.isfinite(result["train_loss"])


def test_no_healthy_checkpoint_yet(mlm_data: Path, tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=r"start again \(no healthy checkpoint was saved\)$"):
        train(_faulty_job(mlm_data, tmp_path / "run", spike=set(), nan={1, 2}))


@pytest.mark.parametrize(
    "overrides", ['{"num_hidden_layers": 1000000000}', '{"vocab_size": 1e12}'], ids=["layers", "vocabulary"]
)
def test_a_config_that_cannot_fit_is_one_line_before_allocating(mlm_data: Path, tmp_path: Path, overrides) -> None:
    command = [
        sys.executable,
        "-m",
        "lmforge",
        "pretrain",
        "--train_dir",
        str(mlm_data),
        "--output_dir",
        str(tmp_path / "run"),
        "--model",
        "bert",
        "--model_preset",
        "tiny",
        "--model_overrides",
        overrides,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "PATH": ""})  # fmt: skip
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("lmforge pretrain: error: the bert model") and "parameters" in line
    assert "TiB" in line and "memory is" in line and "Traceback" not in result.stderr


def test_disk_full_while_saving_is_one_line_naming_the_file_and_the_intact_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, info = {"w": torch.ones(3)}, {"model": "bert", "task": "mlm", "config": {}}
    save_checkpoint(tmp_path, 1, weights=weights, model_info=info)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "_fsync_write", full)  # config.json, after the weights were written
    with pytest.raises(CheckpointWriteError) as error:
        save_checkpoint(tmp_path, 2, weights=weights, model_info=info)
    message = str(error.value)
    assert "\n" not in message
    assert f"cannot write {tmp_path / 'checkpoint-2' / 'config.json'}: No space left on device" in message
    assert f"{tmp_path / 'checkpoint-1'} is intact" in message
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-1"]  # the partial files are gone


def test_damaged_weights_of_a_hugging_face_directory_are_one_line(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from lmforge.models.loading import load_model

    directory = tmp_path / "hf"
    directory.mkdir()
    config = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": 99, "hidden_size": 32,
              "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    with pytest.raises(ValueError) as error:
        load_model(directory, quiet=True)
    message = str(error.value)
    assert "\n" not in message and str(directory / "model.safetensors") in message
    assert f"the other files in {directory} are untouched" in message
