"""``lmforge predict`` and ``lmforge.Predictor`` on tiny fine-tuned runs (classification, NER, QA): the command and
the API agree, they predict what ``lmforge evaluate clue`` predicts for the same records, probabilities are a
distribution, stdin works, long inputs are windowed or truncated and counted, bad input is one line, exit 2."""

from __future__ import annotations

import io
import json
import sys

import pytest

import lmforge
from lmforge.cli import run
from lmforge.data.tokenizer import build_char_tokenizer, load_tokenizer
from lmforge.tasks.finetune import FinetuneArgs, finetune
from tasks.task_data import NEGATIVE, NER_ROWS, OTHER, POSITIVE, cmrc_document, synthetic_rows, write_rows

TASKS = ("classification", "cluener", "cmrc2018")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """One tiny BERT run per head kind (a few steps each), its dev data and the records to predict."""
    root = tmp_path_factory.mktemp("predict")
    tokenizer = root / "tokenizer"
    build_char_tokenizer([POSITIVE + NEGATIVE + OTHER], vocab_size=600, min_frequency=1).save(tokenizer)
    out = {}
    for task in TASKS:
        data = root / f"data-{task}"
        if task == "classification":
            write_rows(data / "train.json", synthetic_rows(80, seed=1))
            dev = synthetic_rows(24, seed=2)
            write_rows(data / "dev.json", dev)
            records = [{"id": r["id"], "sentence": r["sentence"]} for r in dev]
        elif task == "cluener":
            for split in ("train", "dev"):
                write_rows(data / f"{split}.json", NER_ROWS)
            records = [{"id": i, "text": r["text"]} for i, r in enumerate(NER_ROWS)]
        else:
            data.mkdir()
            for split in ("train", "dev"):
                (data / f"{split}.json").write_text(json.dumps(cmrc_document(), ensure_ascii=False), encoding="utf-8")
            records = [{"id": qa["id"], "question": qa["question"], "context": p["context"]}
                       for p in cmrc_document()["data"][0]["paragraphs"] for qa in p["qas"]]  # fmt: skip
        args = FinetuneArgs(task, model="bert", tokenizer_dir=str(tokenizer), data_dir=str(data),
                            output_dir=str(root / f"run-{task}"), max_steps=4, max_seq_length=24, doc_stride=8,
                            learning_rate=3e-3, disable_tqdm=True, do_predict=False, report_to="none")  # fmt: skip
        finetune(args)
        out[task] = {"run": root / f"run-{task}", "records": records, "root": root}
    return out


def _predict_cli(*argv: str) -> list[dict]:
    return run(["predict", *argv, "--disable_tqdm", "true"])


def _clue_test_predictions(task: str, run_dir, records, tmp_path) -> dict:
    """What ``lmforge evaluate clue --split test`` predicts for ``records`` (written as the task's test file)."""
    data = tmp_path / "as-test"
    if task == "cmrc2018":
        data.mkdir()
        (data / "test.json").write_text(json.dumps(cmrc_document(with_answers=False), ensure_ascii=False))
    else:
        write_rows(data / "test.json", records)
    run(["evaluate", "clue", "--model", str(run_dir), "--split", "test", "--data_dir", str(data),
         "--output_dir", str(tmp_path / "eval")])  # fmt: skip
    text = (tmp_path / "eval" / f"{task}_predict.json").read_text(encoding="utf-8")
    if task == "cmrc2018":
        return json.loads(text)  # {question id: answer}
    return {r["id"]: r["label"] for r in map(json.loads, text.splitlines())}


@pytest.mark.parametrize("task", TASKS)
def test_cli_equals_api_and_evaluate_clue(task, runs, tmp_path, capsys):
    run_dir, records = runs[task]["run"], runs[task]["records"]
    source = write_rows(tmp_path / "in.jsonl", records)
    cli = _predict_cli(str(run_dir), "--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    predictor = lmforge.Predictor.from_pretrained(run_dir, batch_size=2)  # other batches: the same outputs
    api = predictor.predict(records)
    assert written == cli and len(cli) == len(records)
    assert [r["id"] for r in cli] == [r["id"] for r in records]
    for ours, theirs in zip(cli, api, strict=True):
        assert ours.keys() == theirs.keys()
        for key, value in ours.items():
            if isinstance(value, float) or key == "probabilities":  # batches of 2: other matmul shapes
                assert value == pytest.approx(theirs[key], abs=1e-5)
            else:
                assert value == theirs[key]

    expected = _clue_test_predictions(task, run_dir, records, tmp_path)
    if task == "classification":
        for out in cli:
            probabilities = out["probabilities"]
            assert set(probabilities) == {"neg", "pos"} and sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
            assert out["label"] == max(probabilities, key=probabilities.get) == expected[out["id"]]
    elif task == "cluener":
        for out, record in zip(cli, records, strict=True):
            assert out["label"] == expected[out["id"]] and len(out["tags"]) == len(out["tokens"])
            for entity in out["entities"]:
                assert record["text"][entity["start"] : entity["end"]] == entity["text"]
    else:
        for out, record in zip(cli, records, strict=True):
            assert out["answer"] == expected[out["id"]] == record["context"][out["start"] : out["end"]]
            assert 0.0 < out["probability"] <= 1.0
        # the CMRC2018 (SQuAD-layout) file itself as the input: one output per question
        document = tmp_path / "cmrc2018_dev.json"
        document.write_text(json.dumps(cmrc_document(), ensure_ascii=False), encoding="utf-8")
        assert _predict_cli(str(run_dir), "--input", str(document)) == cli


def test_stdin_plain_lines_and_the_text_call(runs, monkeypatch, capsys):
    run_dir = runs["classification"]["run"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("春夏秋冬\n\n金木火土风\n"))
    outputs = _predict_cli(str(run_dir))  # --input - is the default; stdout gets the JSON lines only
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == outputs and len(outputs) == 2  # blank lines skipped
    predictor = lmforge.Predictor.from_pretrained(run_dir)
    called = predictor(["春夏秋冬", "金木火土风"])
    assert [o["label"] for o in called] == [o["label"] for o in outputs]
    assert predictor("春夏秋冬")[0]["label"] == outputs[0]["label"]
    # a sentence pair under the generic names
    pair = predictor.predict([{"text_a": "春夏", "text_b": "秋冬"}, {"sentence1": "春夏", "sentence2": "秋冬"}])
    assert pair[0]["probabilities"] == pytest.approx(pair[1]["probabilities"])


def test_long_inputs_are_truncated_and_counted_or_windowed(runs, capsys):
    predictor = lmforge.Predictor.from_pretrained(runs["classification"]["run"])
    predictor(["春" * 100, "夏秋"])
    assert "1 of 2 records were truncated to max_seq_length=24 tokens" in capsys.readouterr().err
    qa = lmforge.Predictor.from_pretrained(runs["cmrc2018"]["run"])
    context = "春天的花开了，" * 12 + "北京是中国的首都。"  # ~90 characters: several windows of 24 tokens
    (answer,) = qa.predict([{"question": "中国的首都是哪里", "context": context}])
    assert context[answer["start"] : answer["end"]] == answer["answer"] and qa.truncated == 0


def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys):
    from lmforge.models.registry import build_model, config_to_dict
    from lmforge.train.checkpoint import save_checkpoint

    run_dir = runs["classification"]["run"]
    cases = [
        ('{"sentence": "春"}\n{"sentence": \n', "in.jsonl:2: not valid JSON"),
        ('{"sentence": "春"}\n{"label": "pos"}\n', "in.jsonl:2: needs 'text'"),
        ('{"sentence": 3}\n', "in.jsonl:1: field 'sentence' must be a string"),
    ]
    for content, message in cases:
        (tmp_path / "in.jsonl").write_text(content, encoding="utf-8")
        with pytest.raises(SystemExit) as exit_info:
            _predict_cli(str(run_dir), "--input", str(tmp_path / "in.jsonl"))
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and message in err[0], err
    (tmp_path / "qa.jsonl").write_text('{"question": "哪里"}\n', encoding="utf-8")
    with pytest.raises(SystemExit):
        _predict_cli(str(runs["cmrc2018"]["run"]), "--input", str(tmp_path / "qa.jsonl"))
    assert "qa.jsonl:1: field 'context' is missing" in capsys.readouterr().err
    # a pretraining (not fine-tuned) run
    tokenizer = runs["cluener"]["root"] / "tokenizer"
    lm = build_model("bert", task="mlm", preset="tiny", vocab_size=load_tokenizer(tokenizer).vocab_size)
    save_checkpoint(tmp_path / "mlm", 1, weights=lm.state_dict(), tokenizer_dir=tokenizer,
                    model_info={"model": "bert", "task": "mlm", "config": config_to_dict(lm.config)})  # fmt: skip
    (tmp_path / "in.jsonl").write_text('{"text": "春"}\n', encoding="utf-8")
    with pytest.raises(SystemExit):
        _predict_cli(str(tmp_path / "mlm"), "--input", str(tmp_path / "in.jsonl"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a fine-tuned checkpoint" in err[0], err
