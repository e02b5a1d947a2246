"""Pretraining logs whether the model learned: the cloze probe (MLM) and degeneration measures (CLM) at every
evaluation, into metrics.jsonl and all_results.json; ``--threads`` is applied and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lmforge import cli
from lmforge.tasks.finetune import FinetuneArgs
from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain
from tiny_args import tiny_pretrain

TINY = tiny_pretrain(per_device_eval_batch_size=8, max_steps=4, logging_steps=2, save_steps=4, eval_steps=2,
                     max_eval_samples=8)  # fmt: skip
PROBE_KEYS = {"eval_probe_top1", "eval_probe_top5", "eval_probe_punctuation", "eval_probe_items", "eval_probe_skipped"}
CLM_KEYS = {"eval_distinct_1", "eval_distinct_2", "eval_longest_repeat", "eval_blank_fraction"}


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_mlm_logs_the_probe_at_every_evaluation(
    mlm_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "mlm"
    result = pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), model="bert", **TINY))
    evals = [r for r in _records(run) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4] and all(set(r) >= PROBE_KEYS for r in evals)
    saved = json.loads((run / "all_results.json").read_text())
    assert set(saved) >= PROBE_KEYS and set(result) >= PROBE_KEYS
    assert saved["eval_probe_items"] == saved["eval_probe_scored"] + saved["eval_probe_skipped"] == 64
    assert saved["eval_probe_skipped"] > 0  # the tiny data's 40-character vocabulary lacks most answers
    assert 0.0 <= saved["eval_probe_top1"] <= saved["eval_probe_top5"] <= 1.0
    assert not CLM_KEYS & set(saved)
    # lmforge evaluate probe on the run: the same numbers as the last evaluation, printed and written
    probed = cli.run(["evaluate", "probe", str(run), "--show", "3"])
    out = capsys.readouterr().out
    assert probed["probe_top5"] == saved["eval_probe_top5"] and probed["probe_skipped"] == saved["eval_probe_skipped"]
    assert "skipped classics-" in out and f"over {probed['probe_masks']} masks (64 items" in out
    assert json.loads((run / "probe_results.json").read_text())["probe_items"] == 64


def test_clm_logs_degeneration_at_every_evaluation(clm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "clm"
    args = TINY | dict(max_seq_length=24, generation_max_new_tokens=6)
    result = pretrain(PretrainArgs(train_dir=str(clm_data), output_dir=str(run), model="gpt", **args))
    evals = [r for r in _records(run) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4] and all(set(r) >= CLM_KEYS for r in evals)
    assert set(json.loads((run / "all_results.json").read_text())) >= CLM_KEYS
    assert 0.0 < result["eval_distinct_1"] <= 1.0 and 0 <= result["eval_longest_repeat"] < 6
    assert "||" in result["eval_sample_0"] and not PROBE_KEYS & set(result)


def test_threads_is_applied_recorded_and_restored(mlm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "threads"
    torch.set_num_threads(2)  # the one_thread fixture restores the caller's setting afterwards
    pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), model="bert", threads=1, do_eval=False,
                          **(TINY | dict(max_steps=2, save_steps=2))))  # fmt: skip
    assert yaml.safe_load((run / "config.yaml").read_text())["threads"] == 1
    assert json.loads((run / "env.json").read_text())["torch_num_threads"] == 1  # applied while the run was built
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        PretrainArgs(threads=0)
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        FinetuneArgs("tnews", threads=0)
    assert FinetuneArgs("tnews", threads=2).threads == 2
