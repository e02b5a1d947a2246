"""``lmforge finetune tydi`` / ``lmforge evaluate tydi`` end to end on official-format fixtures mixing scripts,
``tydi_eval.py``'s scores (per language, threshold sweep, macro without English) on hand-computed predictions, bad
lines reported with file and line, and the seed-002 recipe."""

import json

import pytest
from tydi_data import QUESTIONS, byte_span, record, tydi_dir, write_tydi

from lmforge.cli import run
from lmforge.data.tokenizer_build import build_codepoint_tokenizer
from lmforge.tasks.tydi import read_tydi

TINY = ["--max_seq_length", "64", "--doc_stride", "16", "--max_query_length", "16", "--max_answer_length", "30",
        "--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def tydi_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tydi")
    build_codepoint_tokenizer().save(root / "tok")
    data = tydi_dir(root / "data")
    run(["finetune", "tydi", "--model", "canine", "--tokenizer_dir", str(root / "tok"), "--data_dir", str(data),
         "--output_dir", str(root / "run"), "--max_steps", "3", *TINY])  # fmt: skip
    return root


def test_finetune_then_evaluate_writes_official_predictions(tydi_run):
    run_dir = tydi_run / "run"
    dev_metrics = (run_dir / "dev_metrics.json").read_text()
    assert {"chinese", "arabic", "korean", "english"} == set(json.loads(dev_metrics)["languages"])
    run(["evaluate", "tydi", "--model", str(run_dir), "--use_cpu", "true"])
    assert (run_dir / "dev_metrics.json").read_text() == dev_metrics  # evaluation writes its own file
    lines = (run_dir / "tydi_dev_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(QUESTIONS)
    for line in lines:
        p = json.loads(line)
        assert isinstance(p["example_id"], int) and p["yes_no_answer"] in ("YES", "NO", "NONE")
        assert set(p["minimal_answer"]) == {"start_byte_offset", "end_byte_offset"}
        assert isinstance(p["passage_answer_score"], float) and isinstance(p["minimal_answer_score"], float)
    metrics = json.loads((run_dir / "eval_dev_metrics.json").read_text())
    for key in ("passage_f1", "minimal_f1", "korean/minimal_threshold", "english/passage_recall"):
        assert metrics[key] >= 0.0 or key.endswith("threshold")


def _prediction(example_id, passage, score, minimal=None, yes_no="NONE"):
    start, end = minimal if minimal is not None else (-1, -1)
    return {"example_id": example_id, "passage_answer_index": passage, "passage_answer_score": score,
            "minimal_answer": {"start_byte_offset": start, "end_byte_offset": end}, "minimal_answer_score": score,
            "yes_no_answer": yes_no}  # fmt: skip


def test_scores_as_tydi_eval_on_hand_computed_predictions(tmp_path, capsys):
    gold = write_tydi(tmp_path / "dev.jsonl", [record(*q, annotators=3) for q in QUESTIONS])
    documents = {str(e.example_id): e.context for e in read_tydi(gold)}
    span = lambda i, text: byte_span(documents[str(i)], text)  # noqa: E731
    predictions = [
        _prediction(101, 0, 5.0, span(101, "北京")),  # passage right, minimal exact
        _prediction(102, 1, 4.0, yes_no="YES"),  # passage right, YES right
        _prediction(103, 0, 1.0, span(103, "北京")),  # both wrong
        _prediction(201, 0, 2.0, span(201, "القاهرة")),  # exact
        _prediction(202, 1, 3.0, span(202, "النيل")),  # passage right; gold minimal is null: a false positive
        _prediction(301, 0, 2.0, span(301, "서울은")),  # 9 bytes for 6 gold: p 2/3, r 1, F1 0.8
        _prediction(302, -1, 0.0),  # null for a null gold
        _prediction(401, 0, 1.0, span(401, "Paris")),  # English: reported, not in the macro average
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions), encoding="utf-8")
    run(["evaluate", "tydi", "--predictions", str(path), "--gold_file", str(gold)])
    m = json.loads((tmp_path / "eval_dev_metrics.json").read_text())
    # chinese, sorted by score 5, 4, 1 with 3 golds: F1 .5, .8, .667 -> threshold 4, P 1, R 2/3
    assert m["chinese/passage_f1"] == pytest.approx(0.8) and m["chinese/passage_threshold"] == 4.0
    assert m["chinese/passage_precision"] == 1.0 and m["chinese/passage_recall"] == pytest.approx(2 / 3)
    assert m["chinese/minimal_f1"] == pytest.approx(0.8)
    # arabic minimal: 202 (score 3, no gold) then 201 (score 2, exact): threshold 2 -> P 1/2, R 1
    assert m["arabic/passage_f1"] == 1.0
    assert m["arabic/minimal_f1"] == pytest.approx(2 / 3) and m["arabic/minimal_threshold"] == 2.0
    assert m["korean/minimal_f1"] == pytest.approx(0.8) and m["korean/passage_f1"] == 1.0
    assert m["english/minimal_f1"] == 1.0
    assert m["passage_f1"] == pytest.approx((0.8 + 1 + 1) / 3)  # macro over languages without English
    assert m["minimal_f1"] == pytest.approx((0.8 + 2 / 3 + 0.8) / 3)
    assert "macro" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("annotations"), "no 'annotations'"),
        (
            lambda r: r["annotations"][0]["minimal_answer"].update(plaintext_start_byte=0, plaintext_end_byte=10_000),
            "outside the text",
        ),
        (lambda r: r["annotations"][0]["passage_answer"].update(candidate_index=9), "candidate_index 9"),
        (lambda r: r.pop("question_text"), "question_text"),
    ],
)
def test_malformed_lines_name_file_and_line(mutate, message, tmp_path):
    records = [record(*q) for q in QUESTIONS[:3]]
    mutate(records[1])
    path = write_tydi(tmp_path / "bad.jsonl", records)
    with pytest.raises(ValueError, match=rf"bad\.jsonl:2: .*{message}"):
        list(read_tydi(path))


def test_non_utf8_line_is_reported(tmp_path):
    path = write_tydi(tmp_path / "bad.jsonl", [record(*QUESTIONS[0])])
    path.write_bytes(path.read_bytes() + b'{"example_id": "\xff"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not UTF-8"):
        list(read_tydi(path))


def test_any_backbone_with_a_subword_tokenizer(tmp_path, char_tokenizer_dir):
    """BERT over the char tokenizer of the other tests: windows of tokens with character offsets, no markers."""
    data = tydi_dir(tmp_path / "data")
    run(["finetune", "tydi", "--model", "bert", "--tokenizer_dir", str(char_tokenizer_dir), "--data_dir", str(data),
         "--output_dir", str(tmp_path / "run"), "--max_steps", "2", *TINY])  # fmt: skip
    metrics = json.loads((tmp_path / "run" / "dev_metrics.json").read_text())
    assert metrics["examples"] == len(QUESTIONS) and metrics["missing_predictions"] == 0


def test_seed_002_recipe():
    from pathlib import Path

    import yaml

    config = yaml.safe_load((Path(__file__).parents[2] / "configs/finetune/tydi-canine.yaml").read_text())
    assert config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] == 512
    expected = {"task": "tydi", "num_train_epochs": 10, "learning_rate": 5e-5, "weight_decay": 0.01,
                "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-6, "max_seq_length": 2048,
                "doc_stride": 512, "max_answer_length": 100}  # fmt: skip
    assert {k: config[k] for k in expected} == expected


def test_the_one_task_loader_reads_a_tydi_run(tydi_run):
    """``load_task_model`` (predict, export, inspect) builds the TyDi head from the run's config like any other."""
    import torch

    from lmforge.tasks.finetune import load_task_model
    from lmforge.tasks.tydi import TydiHead

    model, info, _ = load_task_model(tydi_run / "run")
    assert info["head"]["kind"] == "tydi" and isinstance(model.head, TydiHead)
    ids = torch.randint(5, 200, (1, 16))
    assert model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape[:2] == (1, 16)
