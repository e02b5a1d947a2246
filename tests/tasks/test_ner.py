"""CLUENER: the reader on the official format, BIO tags per token, oracle decoding, a tiny fine-tune."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from task_data import NER_ROWS as ROWS
from task_data import write_rows

from lmforge.data.tokenizer import load_tokenizer
from lmforge.tasks.finetune import FinetuneArgs, finetune
from lmforge.tasks.ner import build_ner_task, read_cluener


def test_reader_and_errors(tmp_path):
    rows, counts = read_cluener(write_rows(tmp_path / "train.json", ROWS), labelled=True)
    assert rows[0]["entities"] == [("organization", 0, 3), ("name", 5, 6), ("address", 9, 10)]
    assert counts == {"lines": 3, "entities": 5, "overlapping_entities_dropped": 0, "examples": 3}
    test_rows, _ = read_cluener(write_rows(tmp_path / "test.json", [{"id": 5, "text": "上海"}]), labelled=False)
    assert test_rows[0]["id"] == 5 and test_rows[0]["entities"] == []
    for label, message in (
        ({"person": {"小明": [[0, 1]]}}, "unknown entity type 'person'"),
        ({"name": {"小明": [[1, 2]]}}, r"name '小明' is not at characters \[1, 2\]"),
        ({"name": {"小明": [[0, 9]]}}, r"name '小明' is not at characters \[0, 9\]"),
    ):
        write_rows(tmp_path / "bad.json", [{"text": "小明来了", "label": {}}, {"text": "小明来了", "label": label}])
        with pytest.raises(ValueError, match=rf"bad\.json:2: {message}"):
            read_cluener(tmp_path / "bad.json", labelled=True)
    write_rows(tmp_path / "bad.json", [{"label": {}}])
    with pytest.raises(ValueError, match=r"bad\.json:1: missing field 'text'"):
        read_cluener(tmp_path / "bad.json", labelled=True)


def _bundle(tmp_path, tokenizer_dir, max_seq_length=32):
    write_rows(tmp_path / "train.json", ROWS)
    write_rows(tmp_path / "dev.json", ROWS)
    args = SimpleNamespace(
        task="cluener", data_dir=str(tmp_path), max_seq_length=max_seq_length, classifier_dropout=0.0
    )
    return build_ner_task(args, tokenizer=load_tokenizer(tokenizer_dir), hidden_size=8, splits=("train", "dev"))


def test_bio_tags_per_token_and_oracle_decoding(tmp_path, char_tokenizer_dir):
    bundle = _bundle(tmp_path, char_tokenizer_dir)
    tags = bundle.report["labels"]
    first = bundle.features["train"][0]
    named = [tags[i] if i >= 0 else "-" for i in first["labels"]]
    assert named == ["-", "B-organization", *["I-organization"] * 3, "O", "B-name", "I-name", "O", "O",
                     "B-address", "I-address", "-"]  # fmt: skip
    logits = []
    for feature in bundle.features["dev"]:
        row = torch.zeros(len(feature["input_ids"]), len(tags))
        for t, label in enumerate(feature["labels"]):
            row[t, max(label, 0)] = 5.0
        logits.append(row)
    metrics, predictions = bundle.score("dev", logits)
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (1.0, 1.0, 1.0)
    assert predictions[2]["label"] == {"name": {"小红": [[0, 1]], "小明": [[3, 4]]}}
    # truncation: only the first 4 characters fit; the cut is counted and the later entities count as missed
    short = _bundle(tmp_path, char_tokenizer_dir, max_seq_length=6)
    assert short.report["counts"]["dev"]["truncated"] == 2


def test_tiny_cluener_finetune_writes_the_prediction_file(tmp_path, char_tokenizer_dir):
    data = tmp_path / "cluener"
    write_rows(data / "train.json", ROWS)
    write_rows(data / "dev.json", ROWS)
    write_rows(data / "test.json", [{"id": 0, "text": "小明去了北京"}, {"id": 1, "text": "看书"}])
    args = FinetuneArgs("cluener", model="gau-alpha", tokenizer_dir=str(char_tokenizer_dir), data_dir=str(data),
                        output_dir=str(tmp_path / "run"), max_steps=3, disable_tqdm=True)  # fmt: skip
    report = finetune(args)
    assert {"precision", "recall", "f1"} <= set(report["dev"]) and report["metric_for_best_model"] == "f1"
    lines = (tmp_path / "run" / "cluener_predict.json").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [0, 1] and all(isinstance(r["label"], dict) for r in records)
