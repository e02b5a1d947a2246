"""Numerical faults injected into real runs: NaN in the inputs of the network, Inf in the gradients, fp16
loss-scale overflow. Each faulty step is skipped (weights and optimizer moments untouched) and counted; K in a
row stop the run with a clear message; the run then resumes from its last good checkpoint, bitwise equal to a
run that never saw the fault."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from reliability_helpers import run_tiny
from safetensors.torch import load_file
from torch import nn

from lmforge.models.loading import LoadedModel
from lmforge.train.checkpoint import MODEL_FILE, load_training_state
from lmforge.train.loop import NonFiniteLossError


def _inject(monkeypatch: pytest.MonkeyPatch, *, where: str, steps: set[int], value: float = math.nan) -> None:
    """Build models whose training forward number ``s`` (1-based = the step, no accumulation) is poisoned:
    ``inputs``: the embedding output (what the encoder sees) becomes ``value``;
    ``grads``: the gradient of the word embeddings becomes ``value``;
    ``overflow``: the nonzero entries of that gradient become inf, the loss stays finite: what an fp16 backward
    that overflows at the current loss scale hands to the GradScaler."""
    original = LoadedModel.build

    def build(self):
        model = original(self)
        embedding = next(m for m in model.modules() if isinstance(m, nn.Embedding))
        counter = {"step": 0}

        def forward_hook(module, inputs, output):
            if module.training:
                counter["step"] += 1
                if where == "inputs" and counter["step"] in steps:
                    return torch.full_like(output, value)
            return output

        def grad_hook(grad):
            if counter["step"] in steps:
                if where == "grads":
                    return torch.full_like(grad, value)
                return torch.where(grad != 0, torch.full_like(grad, math.inf), grad)
            return grad

        embedding.register_forward_hook(forward_hook)
        if where in ("grads", "overflow"):
            embedding.weight.register_hook(grad_hook)
        return model

    monkeypatch.setattr(LoadedModel, "build", build)  # what pretrain calls to make its model


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / f"checkpoint-{step}" / MODEL_FILE))


@pytest.mark.parametrize(("where", "value"), [("inputs", math.nan), ("inputs", math.inf), ("grads", math.nan)])
def test_isolated_faulty_steps_are_skipped_and_counted(
    mlm_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, where, value
) -> None:
    _inject(monkeypatch, where=where, steps={3, 6}, value=value)
    run = tmp_path / "run"
    result = run_tiny(mlm_data, run, max_steps=8, save_steps=1)
    assert result["step"] == 8 and result["nonfinite_steps"] == 2
    out = capsys.readouterr()
    assert "step 3: non-finite loss" in out.out + out.err and "step 6: non-finite loss" in out.out + out.err
    records = {r["step"]: r for r in _records(run)}
    assert records[8]["nonfinite_steps"] == 2 and math.isfinite(records[8]["train_loss"])
    for skipped in (3, 6):  # the update of a skipped step is not applied: weights stay those of the step before
        before, after = _weights(run, skipped - 1), _weights(run, skipped)
        assert all(torch.equal(before[k], after[k]) for k in before)
        moments = load_training_state(run / f"checkpoint-{skipped}")["optimizer"]["state"]
        assert all(torch.isfinite(m["exp_avg_sq"]).all() for m in moments.values())
    final = _weights(run, 8)
    assert all(torch.isfinite(t).all() for t in final.values())
    assert not torch.equal(_weights(run, 2)[next(iter(final))], final[next(iter(final))])  # training went on


def test_k_faulty_steps_in_a_row_stop_the_run_and_it_resumes_from_the_last_good_checkpoint(
    mlm_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, faulty = tmp_path / "straight", tmp_path / "faulty"
    run_tiny(mlm_data, straight)
    with monkeypatch.context() as patch:
        _inject(patch, where="grads", steps=set(range(5, 100)))
        with pytest.raises(NonFiniteLossError, match="3 consecutive steps skipped") as error:
            run_tiny(mlm_data, faulty, max_nonfinite_steps=3)
    message = str(error.value)
    assert "stopping at step 7" in message and "checkpoint-4" in message and "--resume_from_checkpoint" in message
    assert not (faulty / "checkpoint-8").exists()

    # the fault is gone (e.g. a bad node replaced, a lower learning rate): resume from the last good checkpoint
    run_tiny(mlm_data, faulty, resume_from_checkpoint="auto")
    losses = [(r["step"], r["train_loss"]) for r in _records(faulty) if "train_loss" in r]
    assert losses == [(r["step"], r["train_loss"]) for r in _records(straight) if "train_loss" in r]
    a, b = _weights(straight, 8), _weights(faulty, 8)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fp16_loss_scale_overflow_is_skipped_counted_and_lowers_the_scale(
    mlm_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a genuine fp16 overflow at the initial scale 65536 depends on the data (packed sequences have one at step 1),
    # so the injected overflows are counted on top of a clean run's
    clean = run_tiny(mlm_data, tmp_path / "clean", fp16=True, max_steps=4, save_steps=1)
    _inject(monkeypatch, where="overflow", steps={2, 3})
    run = tmp_path / "run"
    result = run_tiny(mlm_data, run, fp16=True, max_steps=4, save_steps=1)
    assert result["step"] == 4 and result["nonfinite_steps"] == clean["nonfinite_steps"] + 2
    assert result["overflow_steps"] == clean["overflow_steps"] + 2
    scales = [load_training_state(run / f"checkpoint-{s}")["scaler"]["scale"] for s in (1, 2, 3, 4)]
    assert scales[1] == scales[0] / 2 and scales[2] == scales[1] / 2 and scales[3] == scales[2]  # backoff 0.5
    records = {r["step"]: r for r in _records(run)}
    assert all(math.isfinite(records[s]["train_loss"]) for s in (1, 2, 3, 4))  # the loss itself stayed finite
    before, after = _weights(run, 1), _weights(run, 3)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fp16_persistent_overflow_stops_with_the_loss_scale_in_the_message(
    mlm_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _inject(monkeypatch, where="overflow", steps=set(range(1, 100)))
    with pytest.raises(NonFiniteLossError, match="loss scale"):
        run_tiny(mlm_data, tmp_path / "run", fp16=True, max_nonfinite_steps=4)
