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
    # the baseline is the run's majority training label, not the dev split's own counts
    assert result["majority_baseline_accuracy"] == report["dev"]["majority_baseline_accuracy"]
    assert "classification dev" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval" / "eval_dev_metrics.json").read_text())["per_class"]
    before = (tmp_path / "run" / "dev_metrics.json").read_text()
    run(["evaluate", "clue", "--model", str(tmp_path / "run")])  # into the run directory: its own file
    assert (tmp_path / "run" / "dev_metrics.json").read_text() == before
    assert (tmp_path / "run" / "eval_dev_metrics.json").is_file()
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


@pytest.mark.parametrize("task", ["cluener", "cmrc2018"])
def test_evaluate_clue_on_span_and_tagging_runs(task, char_tokenizer_dir, tmp_path):
    from task_data import NER_ROWS, cmrc_document

    data = tmp_path / task
    if task == "cluener":
        for split in ("train", "dev"):
            write_rows(data / f"{split}.json", NER_ROWS)
    else:
        data.mkdir()
        for split in ("train", "dev"):
            (data / f"{split}.json").write_text(json.dumps(cmrc_document(), ensure_ascii=False), encoding="utf-8")
    args = FinetuneArgs(task, model="bert", tokenizer_dir=str(char_tokenizer_dir), data_dir=str(data),
                        output_dir=str(tmp_path / "run"), max_steps=2, max_seq_length=24, doc_stride=8,
                        disable_tqdm=True)  # fmt: skip
    report = finetune(args)
    result = run(["evaluate", "clue", "--model", str(tmp_path / "run")])
    assert result["f1"] == report["dev"]["f1"] and result["task"] == task
