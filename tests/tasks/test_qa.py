"""Extractive QA: readers (CMRC2018/SQuAD JSON, JSON lines), doc-stride windows by hand, decoding back to the
original context text, and a tiny fine-tune writing the CMRC2018 prediction file."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from task_data import CONTEXTS, cmrc_document, write_rows

from lmforge.data.tokenizer import load_tokenizer
from lmforge.tasks.finetune import FinetuneArgs, finetune
from lmforge.tasks.qa import build_qa_task, make_windows, read_qa


def test_read_cmrc2018_and_jsonl(tmp_path):
    (tmp_path / "dev.json").write_text(json.dumps(cmrc_document(), ensure_ascii=False), encoding="utf-8")
    examples = read_qa(tmp_path / "dev.json")
    assert [(e.id, e.answers) for e in examples][:1] == [("TRAIN_0_QUERY_0", [("北京", 0)])]
    rows = [
        {"id": "q1", "context": "上海很大", "question": "哪里大", "answers": {"text": ["上海"], "answer_start": [0]}}
    ]
    example = read_qa(write_rows(tmp_path / "squad.jsonl", rows))[0]
    assert (example.id, example.question, example.answers) == ("q1", "哪里大", [("上海", 0)])
    write_rows(tmp_path / "bad.jsonl", [{"id": "q1", "context": "x"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: missing field 'question'"):
        read_qa(tmp_path / "bad.jsonl")
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(ValueError, match=r"empty\.json: the file is empty"):
        read_qa(tmp_path / "empty.json")
    (tmp_path / "train.json").write_text(json.dumps(cmrc_document(), ensure_ascii=False), encoding="utf-8")
    (tmp_path / "dev.json").write_text(json.dumps(cmrc_document(False), ensure_ascii=False), encoding="utf-8")
    args = SimpleNamespace(task="cmrc2018", data_dir=str(tmp_path), max_seq_length=20, max_query_length=8,
                           doc_stride=4, n_best_size=5, max_answer_length=10)  # fmt: skip
    with pytest.raises(ValueError, match=r"question 'TRAIN_0_QUERY_0': a dev question without answers \(3 in all\)"):
        build_qa_task(args, tokenizer=None, hidden_size=8, splits=("dev",))
    broken = cmrc_document()
    del broken["data"][0]["paragraphs"][1]["qas"][0]["question"]
    (tmp_path / "broken.json").write_text(json.dumps(broken, ensure_ascii=False))
    with pytest.raises(ValueError, match="question 'TRAIN_1_QUERY_0': missing field 'question'"):
        read_qa(tmp_path / "broken.json")


def test_windows_by_hand():
    # question 2 tokens, context 10 tokens (one char each); max length 9 -> 4 context tokens per window, stride 2
    offsets = [(i, i + 1) for i in range(10)]
    windows = make_windows([7, 8], list(range(10, 20)), offsets, cls_id=1, sep_id=2, max_seq_length=9,
                           doc_stride=2, answer=(5, 7))  # fmt: skip
    assert len(windows) == 4  # context starts 0, 2, 4, 6
    assert windows[2]["input_ids"] == [1, 7, 8, 2, 14, 15, 16, 17, 2]
    assert windows[2]["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert windows[2]["offsets"][:5] == [None, None, None, None, (4, 5)] and windows[2]["offsets"][-1] is None
    # the answer (tokens 5..6) lies wholly in window 2 only: positions 4 + (5 - 4) and 4 + (6 - 4)
    assert [(w["start_positions"], w["end_positions"]) for w in windows] == [(0, 0), (0, 0), (5, 6), (0, 0)]
    # token 5 is in windows 1 (as its last token) and 2 (second): window 2 gives it the most context
    assert windows[1]["max_context"][4 + 3] is False and windows[2]["max_context"][4 + 1] is True
    with pytest.raises(ValueError, match="no room for the context"):
        make_windows([7] * 6, [10], [(0, 1)], cls_id=1, sep_id=2, max_seq_length=9, doc_stride=2)


def test_perfect_logits_decode_to_the_gold_answers(tmp_path, char_tokenizer_dir):
    """Offsets map tokens back to the original context: oracle logits score EM = F1 = 100 over several windows."""
    document = cmrc_document()
    (tmp_path / "train.json").write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "dev.json").write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    args = SimpleNamespace(task="cmrc2018", data_dir=str(tmp_path), max_seq_length=20, max_query_length=8,
                           doc_stride=4, n_best_size=5, max_answer_length=10)  # fmt: skip
    bundle = build_qa_task(args, tokenizer=load_tokenizer(char_tokenizer_dir), hidden_size=8, splits=("train", "dev"))
    assert bundle.report["counts"]["dev"]["windows"] > 3  # long contexts were split
    gold = {qa["id"]: qa["answers"][0] for p in document["data"][0]["paragraphs"] for qa in p["qas"]}
    ids = [qa["id"] for p in document["data"][0]["paragraphs"] for qa in p["qas"]]
    logits = []
    for feature in bundle.features["dev"]:
        answer = gold[ids[feature["example"]]]
        start, end = answer["answer_start"], answer["answer_start"] + len(answer["text"])
        row = torch.zeros(len(feature["input_ids"]), 2)
        for t, offset in enumerate(feature["offsets"]):
            row[t, 0] = 10.0 if offset is not None and offset[0] == start else 0.0
            row[t, 1] = 10.0 if offset is not None and offset[1] == end else 0.0
        logits.append(row)
    metrics, predictions = bundle.score("dev", logits)
    assert predictions == {qid: a["text"] for qid, a in gold.items()}
    assert metrics["em"] == 100.0 and metrics["f1"] == 100.0 and metrics["total"] == 3


def test_tiny_cmrc2018_finetune_writes_the_prediction_file(tmp_path, char_tokenizer_dir):
    data = tmp_path / "cmrc"
    data.mkdir()
    train = cmrc_document()
    train["data"][0]["paragraphs"][2]["qas"][0]["answers"][0]["answer_start"] = 0  # wrong offset: repaired
    (data / "cmrc2018_train.json").write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    (data / "cmrc2018_dev.json").write_text(json.dumps(cmrc_document(), ensure_ascii=False), encoding="utf-8")
    (data / "cmrc2018_test.json").write_text(json.dumps(cmrc_document(False), ensure_ascii=False), encoding="utf-8")
    args = FinetuneArgs("cmrc2018", model="bert", tokenizer_dir=str(char_tokenizer_dir), data_dir=str(data),
                        output_dir=str(tmp_path / "run"), max_steps=3, max_seq_length=24, doc_stride=8,
                        max_query_length=8, disable_tqdm=True)  # fmt: skip
    report = finetune(args)
    assert set(report["dev"]) >= {"em", "f1", "average"} and report["metric_for_best_model"] == "em"
    assert report["counts"]["train"]["answer_start_repaired"] == 1
    predictions = json.loads((tmp_path / "run" / "cmrc2018_predict.json").read_text(encoding="utf-8"))
    assert set(predictions) == {"TRAIN_0_QUERY_0", "TRAIN_1_QUERY_0", "TRAIN_2_QUERY_0"}
    assert all(isinstance(v, str) for v in predictions.values())
    context_of = dict(zip(sorted(predictions), CONTEXTS, strict=True))
    assert all(text in context_of[qid] for qid, text in predictions.items())
