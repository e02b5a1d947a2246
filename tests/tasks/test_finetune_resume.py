"""Fine-tuning trains through ``train/loop.py``: exact resume, the loop's non-finite handling, its run records and
checkpoint format, the resumable ``FeatureLoader``, and DDP under torchrun (slow)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from task_data import synthetic_rows, write_rows

import lmforge.heads.classification as classification
import lmforge.train.loop as loop
from lmforge.heads.classification import TaskOutput
from lmforge.tasks.common import FeatureLoader
from lmforge.tasks.finetune import FinetuneArgs, finetune
from lmforge.train.checkpoint import load_training_state, verify_checkpoint
from lmforge.train.loop import NonFiniteLossError
from sigkill_child import CHILD

ROOT = Path(__file__).resolve().parents[2]
VOLATILE = ("elapsed_s", "tokens_per_s", "samples_per_s")  # wall-clock figures differ between runs


def _args(data_dir: Path, tokenizer_dir: Path, out: Path, **overrides) -> FinetuneArgs:
    values = dict(
        model="bert", model_preset="tiny", tokenizer_dir=str(tokenizer_dir), data_dir=str(data_dir),
        output_dir=str(out), learning_rate=3e-3, per_device_train_batch_size=16, gradient_accumulation_steps=2,
        max_steps=8, warmup_steps=2, eval_steps=2, save_steps=3, logging_steps=1, disable_tqdm=True,
    )  # fmt: skip
    return FinetuneArgs("classification", **(values | overrides))


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in lines]


class _Stop(Exception):
    """Stands for a kill right after a checkpoint was written."""


def test_stop_then_resume_auto_is_bitwise_identical(synthetic_task, char_tokenizer_dir, tmp_path, monkeypatch):
    """6 straight steps == 3 steps, stop, ``--resume_from_checkpoint auto``, 3 steps: the same losses, dev
    metrics, best checkpoint, final weights and test predictions. Dropout is on, accumulation is 2 and batches
    span epochs (36 features, micro-batches of 8), so the RNG, loader and optimizer states all matter."""
    final: dict[str, dict[str, torch.Tensor]] = {}
    original_train, original_save = loop.train, loop.save_training_checkpoint

    def train(job):  # the weights after the last step (the run keeps only its best checkpoint)
        result = original_train(job)
        final[str(job.run_dir)] = {k: v.detach().clone() for k, v in job.model.state_dict().items()}
        return result

    def save_then_stop(job):
        path = original_save(job)
        if job.state.step == 3 and "stopped" in str(job.run_dir):
            raise _Stop
        return path

    monkeypatch.setattr(loop, "train", train)
    monkeypatch.setattr(loop, "save_training_checkpoint", save_then_stop)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    small = dict(max_train_samples=36, per_device_train_batch_size=8, max_steps=6)
    expected = finetune(_args(synthetic_task, char_tokenizer_dir, straight, **small))
    with pytest.raises(_Stop):
        finetune(_args(synthetic_task, char_tokenizer_dir, stopped, **small))
    # the best checkpoint (dev at step 2) survives rotation beside the newest; both are complete and resumable
    assert sorted(p.name for p in stopped.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert verify_checkpoint(stopped / "checkpoint-3") is None
    saved = load_training_state(stopped / "checkpoint-3")
    assert saved["train"]["best"] == {"step": 2, "value": pytest.approx(saved["train"]["best"]["value"])}
    assert saved["ranks"][0]["loader"]["batches"] == 6

    got = finetune(_args(synthetic_task, char_tokenizer_dir, stopped, resume_from_checkpoint="auto", **small))
    assert _records(stopped) == _records(straight)
    assert len([r for r in _records(straight) if "train_loss" in r]) == 6
    assert {k: v for k, v in got.items() if k != "predict_file"} == {
        k: v for k, v in expected.items() if k != "predict_file"
    }
    assert final[str(stopped)].keys() == final[str(straight)].keys()
    for key, value in final[str(straight)].items():
        assert torch.equal(final[str(stopped)][key], value), key
    for name in ("classification_predict.json", "dev_metrics.json"):
        assert (stopped / name).read_text() == (straight / name).read_text()
    assert sorted(p.name for p in stopped.glob("checkpoint-*")) == [f"checkpoint-{expected['best_step']}"]
    # the loop's run records: TensorBoard events and the loop's metrics beside the loss
    assert list((straight / "tensorboard").glob("events.out.tfevents.*"))
    assert {"train_loss", "grad_norm", "learning_rate", "nonfinite_steps"} <= set(_records(straight)[0])


@pytest.mark.slow
def test_sigkill_during_a_save_then_resume_is_bitwise_identical(synthetic_task, char_tokenizer_dir, tmp_path):
    """A real SIGKILL halfway through writing checkpoint-4: auto falls back to checkpoint-3 (the best so far;
    checkpoint-2 was rotated away) and finishes exactly like the uninterrupted run."""
    args = ["finetune", "classification", "--model", "bert", "--tokenizer_dir", str(char_tokenizer_dir),
            "--data_dir", str(synthetic_task), "--max_train_samples", "36", "--per_device_train_batch_size", "8",
            "--gradient_accumulation_steps", "2", "--max_steps", "6", "--learning_rate", "3e-3", "--save_steps", "2",
            "--eval_steps", "3", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    env.pop("KILL_AT_STEP", None)
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    def child(out: Path, **extra: str) -> subprocess.Popen:
        command = [sys.executable, "-c", CHILD, *args, "--output_dir", str(out)]
        return subprocess.Popen(command, env=env | extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    runs = [child(straight), child(killed, KILL_AT_STEP="4")]
    outputs = [run.communicate(timeout=300)[0].decode() for run in runs]
    assert runs[0].returncode == 0, outputs[0]
    assert runs[1].returncode == -signal.SIGKILL, outputs[1]
    assert sorted(p.name for p in killed.glob("checkpoint-*")) == ["checkpoint-3"]
    assert len(list(killed.glob(".tmp-checkpoint-4-*"))) == 1

    resumed = subprocess.run([sys.executable, "-c", CHILD, *args, "--output_dir", str(killed),
                              "--resume_from_checkpoint", "auto"], env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout and "checkpoint-3" in resumed.stdout
    assert _records(killed) == _records(straight)
    for name in ("classification_predict.json", "dev_metrics.json"):
        assert (killed / name).read_text() == (straight / name).read_text()
    (best,) = straight.glob("checkpoint-*")
    assert (killed / best.name / "model.safetensors").read_bytes() == (best / "model.safetensors").read_bytes()


def test_an_output_directory_with_a_run_needs_resume_or_overwrite(synthetic_task, char_tokenizer_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a run"):
        finetune(_args(synthetic_task, char_tokenizer_dir, run, max_steps=1))
    # auto with nothing to resume from is a fresh start (a run killed before its first checkpoint)
    report = finetune(_args(synthetic_task, char_tokenizer_dir, run, max_steps=1, resume_from_checkpoint="auto"))
    assert report["steps"] == 1 and json.loads((run / "report.json").read_text())["steps"] == 1


def _poison(monkeypatch: pytest.MonkeyPatch, steps: set[int]) -> None:
    """Task models whose training forward number s (1-based; the step, without accumulation) has a NaN loss."""

    class Poisoned(classification.TaskModel):
        calls = 0

        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            if self.training:
                Poisoned.calls += 1
                if Poisoned.calls in steps:
                    return TaskOutput(loss=out.loss * float("nan"), logits=out.logits, hidden_states=out.hidden_states)
            return out

    monkeypatch.setattr(classification, "TaskModel", Poisoned)


def test_nonfinite_steps_are_skipped_and_too_many_in_a_row_stop(
    synthetic_task, char_tokenizer_dir, tmp_path, monkeypatch
):
    common = dict(gradient_accumulation_steps=1, max_steps=3, eval_steps=3, do_predict=False)
    _poison(monkeypatch, {2})
    report = finetune(_args(synthetic_task, char_tokenizer_dir, tmp_path / "once", **common))
    assert report["steps"] == 3 and report["nonfinite_steps"] == 1
    # every step is logged; the skipped one without a train_loss (issue 18: it was a fake 0.0)
    assert [r["nonfinite_steps"] for r in _records(tmp_path / "once") if "learning_rate" in r] == [0, 1, 1]
    assert [("train_loss" in r) for r in _records(tmp_path / "once") if "learning_rate" in r] == [True, False, True]
    _poison(monkeypatch, {1, 2})
    with pytest.raises(NonFiniteLossError, match="stopping at step 2: 2 consecutive steps skipped"):
        finetune(_args(synthetic_task, char_tokenizer_dir, tmp_path / "twice", max_nonfinite_steps=2, **common))


def test_feature_loader_resumes_and_shards_one_stream():
    features = [{"input_ids": [1, 2 + i], "labels": i} for i in range(10)]

    def labels(batch):
        return batch["labels"].tolist()

    loader = FeatureLoader(features, batch_size=4, pad_id=0, seed=7)
    assert len(loader) == 3
    stream = [labels(next(loader)) for _ in range(5)]  # 20 items: two whole epochs
    flat = [i for batch in stream for i in batch]
    assert sorted(flat[:10]) == sorted(flat[10:]) == list(range(10)) and flat[:10] != flat[10:]
    assert loader.epoch == 2
    # a loader restored from a state dict continues bitwise the same
    replay = FeatureLoader(features, batch_size=4, pad_id=0, seed=7)
    for _ in range(2):
        next(replay)
    resumed = FeatureLoader(features, batch_size=4, pad_id=0, seed=7)
    resumed.load_state_dict(replay.state_dict())
    assert [labels(next(resumed)) for _ in range(3)] == stream[2:]
    # two ranks of batch 2 split each global batch of the one-rank loader
    ranks = [FeatureLoader(features, batch_size=2, pad_id=0, seed=7, rank=r, world_size=2) for r in (0, 1)]
    assert [labels(next(ranks[0])) + labels(next(ranks[1])) for _ in range(5)] == stream
    with pytest.raises(ValueError, match="world_size=1 but this loader has world_size=2"):
        ranks[0].load_state_dict(replay.state_dict())


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(char_tokenizer_dir, tmp_path):
    """torchrun, 2 CPU processes (gloo) x batch 8 == 1 process x batch 16, dropout off: same losses and dev metrics."""
    data = tmp_path / "data"
    write_rows(data / "train.json", synthetic_rows(64, seed=1))
    write_rows(data / "dev.json", synthetic_rows(24, seed=2))
    common = ["finetune", "classification", "--model", "bert", "--tokenizer_dir", str(char_tokenizer_dir),
              "--data_dir", str(data), "--max_steps", "4", "--learning_rate", "3e-3", "--logging_steps", "1",
              "--eval_steps", "2", "--classifier_dropout", "0", "--report_to", "none", "--disable_tqdm",
              "--model_overrides", '{"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}']  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    runs = [
        subprocess.Popen([sys.executable, "-m", "lmforge", *common, "--output_dir", str(tmp_path / "one"),
                          "--per_device_train_batch_size", "16"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT),
        subprocess.Popen([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "lmforge", *common,
                          "--output_dir", str(tmp_path / "two"), "--per_device_train_batch_size", "8"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
    ]  # fmt: skip
    outputs = [run.communicate(timeout=300)[0].decode() for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] and len(one) == 6
    for a, b in zip(one, two, strict=True):
        for key in a.keys() - {"tokens"}:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    assert sorted(p.name for p in (tmp_path / "two").glob("checkpoint-*")) == sorted(
        p.name for p in (tmp_path / "one").glob("checkpoint-*")
    )


@pytest.mark.parametrize(("greater_is_better", "kept"), [(True, [1, 3]), (False, [1, 2])])
def test_best_checkpoint_follows_the_metric_direction(greater_is_better: bool, kept: list[int]) -> None:
    """``greater_is_better=False`` (a loss) keeps the lowest value, as HF; ties keep the earlier step."""
    from types import SimpleNamespace

    from lmforge.train.loop import TrainState, _track_best

    job = SimpleNamespace(state=TrainState(), metric_for_best_model="eval_m", greater_is_better=greater_is_better)
    improved = []
    for step, value in ((1, 0.5), (2, 0.4), (3, 0.7), (4, 0.7)):
        job.state.step, job.state.last_eval = step, {"eval_m": value}
        if _track_best(job):
            improved.append(step)
    assert improved == kept
    assert job.state.best["step"] == kept[-1]
