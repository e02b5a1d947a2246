"""``lmforge evaluate clue`` on a fine-tuned run: same dev metrics as the run reported, the same test predictions,
and a label-set mismatch is refused."""

from __future__ import annotations

import json

import pytest
from task_data import write_rows

from lmforge.cli import run
from lmforge.tasks.finetune import FinetuneArgs, finetune


def test_evaluate_clue_reproduces_the_run(synthetic_task, char_tokenizer_dir, tmp_path, capsys):
    args = FinetuneArgs("classification", model="bert", tokenizer_dir=str(char_tokenizer_dir),
                        data_dir=str(synthetic_task), output_dir=str(tmp_path / "run"), max_steps=4,
                        max_seq_length=16, learning_rate=3e-3, disable_tqdm=True)  # fmt: skip
    report = finetune(args)
    result = run(["evaluate", "clue", "--model", str(tmp_path / "run"), "--output_dir", str(tmp_path / "eval")])
    assert result["accuracy"] == report["dev"]["accuracy"]
    assert "classification dev" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval" / "dev_metrics.json").read_text())["per_class"]
    result = run(["evaluate", "clue", "--model", str(tmp_path / "run"), "--split", "test",
                  "--output_dir", str(tmp_path / "eval")])  # fmt: skip
    written = (tmp_path / "eval" / "classification_predict.json").read_text()
    assert written == (tmp_path / "run" / "classification_predict.json").read_text()

    other = tmp_path / "other"
    write_rows(other / "dev.json", [{"sentence": "春", "label": "yes"}, {"sentence": "金", "label": "no"}])
    (other / "labels.json").write_text(json.dumps(["yes", "no"]))
    with pytest.raises(SystemExit):
        run(["evaluate", "clue", "--model", str(tmp_path / "run"), "--data_dir", str(other)])
    assert "differ from the labels the model was trained with" in capsys.readouterr().err
