"""Pretraining options: ``--gradient_checkpointing`` trains the same, ``--report_to wandb`` (an optional
dependency: one line when missing; the adapter checked against a stand-in module) and the bare-flag forms."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from lmforge import cli
from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain
from tiny_args import tiny_pretrain

TINY = tiny_pretrain(model="gau-alpha", max_steps=4, logging_steps=1, save_steps=2, do_eval=False)


def _losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in records if "train_loss" in r]


def test_gradient_checkpointing_trains_the_same(mlm_data: Path, tmp_path: Path) -> None:
    pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(tmp_path / "plain"), **TINY))
    # the HF bare-flag form, through the command line
    cli.main(["pretrain", "--train_dir", str(mlm_data), "--output_dir", str(tmp_path / "ckpt"),
              *[f"--{k}={v}" for k, v in TINY.items()], "--gradient_checkpointing"])  # fmt: skip
    assert _losses(tmp_path / "ckpt") == pytest.approx(_losses(tmp_path / "plain"), abs=1e-6)
    assert len(_losses(tmp_path / "plain")) == 4


def test_report_to_wandb_without_wandb_is_one_line(
    mlm_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    for stage in (["pretrain", "--train_dir", str(mlm_data)], ["finetune", "tnews", "--model", "bert"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*stage, "--output_dir", str(tmp_path / "run"), "--report_to", "wandb"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.endswith("pip install wandb")
        assert not (tmp_path / "run").exists()  # refused before any work


class _FakeRun:
    def __init__(self, calls: list, run_id: str | None):
        self.calls, self.id = calls, run_id or "abc123"

    def log(self, values: dict, step: int) -> None:
        self.calls.append(("log", step, values))

    def finish(self) -> None:
        self.calls.append(("finish",))


def test_report_to_wandb_logs_every_record_and_resumes_the_same_run(
    mlm_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list = []
    wandb = types.ModuleType("wandb")
    wandb.__spec__ = importlib.machinery.ModuleSpec("wandb", None)

    def init(**kwargs):
        calls.append(("init", kwargs))
        return _FakeRun(calls, kwargs["id"])

    wandb.init = init
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    run = tmp_path / "run"
    options = TINY | {"report_to": "wandb", "max_steps": 2}
    pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), **options))
    init_call = calls[0][1]
    assert init_call["id"] is None and init_call["dir"] == str(run) and init_call["config"]["learning_rate"] == 1e-3
    logged = [(c[1], c[2]) for c in calls if c[0] == "log"]
    assert [step for step, values in logged if "train_loss" in values] == [1, 2]
    assert all(isinstance(v, int | float) for _, values in logged for v in values.values())
    assert calls[-1] == ("finish",) and (run / "wandb_run_id").read_text().strip() == "abc123"

    calls.clear()
    pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), resume_from_checkpoint="auto",
                          **(options | {"max_steps": 4})))  # fmt: skip
    assert calls[0][1]["id"] == "abc123" and calls[0][1]["resume"] == "allow"
    assert [c[1] for c in calls if c[0] == "log" and "train_loss" in c[2]] == [3, 4]
