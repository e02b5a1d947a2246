"""``lmforge finetune --gradient_checkpointing``: the same training as without it."""

from __future__ import annotations

import json

import pytest

from lmforge.tasks.finetune import FinetuneArgs, finetune


@pytest.mark.parametrize("model", ["bert", "gau-alpha"])
def test_gradient_checkpointing_trains_the_same(synthetic_task, char_tokenizer_dir, tmp_path, model: str) -> None:
    def run(name: str, **options) -> list[float]:
        args = FinetuneArgs(
            "classification", model=model, model_preset="tiny", tokenizer_dir=str(char_tokenizer_dir),
            data_dir=str(synthetic_task), output_dir=str(tmp_path / name), learning_rate=3e-3, max_steps=6,
            per_device_train_batch_size=16, logging_steps=1, disable_tqdm=True, report_to="none", do_predict=False,
            classifier_dropout=0.1, **options,
        )  # fmt: skip
        finetune(args)
        records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [r["train_loss"] for r in records if "train_loss" in r]

    plain, checkpointed = run("plain"), run("checkpointed", gradient_checkpointing=True)
    assert len(plain) == 6 and checkpointed == pytest.approx(plain, abs=1e-6)
