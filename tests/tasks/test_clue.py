"""CLUE classification readers on small files in the official formats (written here), and their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.tasks.clue import read_classification, read_labels_file
from lmforge.tasks.common import collate, encode_pair, truncate_pair


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_tnews_reads_ids_labels_and_descriptions(tmp_path):
    # tnews_public: {"label", "label_desc", "sentence", "keywords"}; test has "id"; labels.json is JSON lines
    write_jsonl(tmp_path / "train.json", [
        {"label": "102", "label_desc": "news_entertainment", "sentence": "江疏影甜甜圈自拍", "keywords": "江疏影"},
        {"label": "116", "label_desc": "news_game", "sentence": "如何评价第五人格", "keywords": ""},
    ])  # fmt: skip
    write_jsonl(tmp_path / "dev.json", [{"label": "100", "label_desc": "news_story", "sentence": "故事"}])
    write_jsonl(tmp_path / "test.json", [{"id": 7, "sentence": "一条新闻", "keywords": ""}])
    write_jsonl(tmp_path / "labels.json", [{"label": "100", "label_desc": "news_story"}])
    data = read_classification("tnews", tmp_path)
    assert len(data.labels) == 15 and "105" not in data.labels and "111" not in data.labels
    train = [(e.text_a, e.label) for e in data.splits["train"]]
    assert train == [("江疏影甜甜圈自拍", "102"), ("如何评价第五人格", "116")]
    assert data.splits["test"][0].id == 7 and data.splits["test"][0].label is None
    assert data.label_descriptions == {"100": "news_story"}
    assert data.counts["train"].labels == {"102": 1, "116": 1}


def test_pair_tasks_and_nli_dash_labels_are_dropped_and_counted(tmp_path):
    write_jsonl(tmp_path / "train.json", [
        {"sentence1": "他在看书", "sentence2": "他在读书", "label": "entailment", "genre": "lit", "id": 0},
        {"sentence1": "下雨了", "sentence2": "天晴", "label": "-", "id": 1},
        {"sentence1": "下雨了", "sentence2": "天晴", "label": "contradiction", "id": 2},
    ])  # fmt: skip
    data = read_classification("ocnli", tmp_path)
    assert [(e.text_a, e.text_b, e.label) for e in data.splits["train"]] == [
        ("他在看书", "他在读书", "entailment"),
        ("下雨了", "天晴", "contradiction"),
    ]
    assert data.counts["train"].lines == 3 and data.counts["train"].examples == 2
    assert data.counts["train"].dropped == {"label '-'": 1}
    write_jsonl(tmp_path / "afqmc" / "train.json", [{"sentence1": "花呗", "sentence2": "借呗", "label": "0"}])
    write_jsonl(tmp_path / "afqmc" / "test.json", [{"sentence1": "a", "sentence2": "b"}] * 2)  # no ids: line index
    afqmc = read_classification("afqmc", tmp_path / "afqmc")
    assert afqmc.labels == ["0", "1"] and [e.id for e in afqmc.splits["test"]] == [0, 1]


def test_wsc_marks_both_spans_in_either_order(tmp_path):
    text = "小明把球给了小红，因为他很慷慨"
    rows = [
        {"target": {"span1_index": 0, "span1_text": "小明", "span2_index": 11, "span2_text": "他"}, "idx": 0,
         "label": "true", "text": text},
        {"target": {"span1_index": 11, "span1_text": "他", "span2_index": 6, "span2_text": "小红"}, "idx": 1,
         "label": "false", "text": text},
    ]  # fmt: skip
    write_jsonl(tmp_path / "train.json", rows)
    examples = read_classification("cluewsc2020", tmp_path).splits["train"]
    assert examples[0].text_a == "_小明_把球给了小红，因为[他]很慷慨"
    assert examples[1].text_a == "小明把球给了[小红]，因为_他_很慷慨"
    assert examples[1].id == 1
    rows[0]["target"]["span2_index"] = 3
    write_jsonl(tmp_path / "train.json", rows)
    with pytest.raises(ValueError, match=r"train\.json:1: target span2_text '他' is not at span2_index 3"):
        read_classification("cluewsc2020", tmp_path)


def test_csl_joins_keywords_and_reads_the_abstract(tmp_path):
    row = {"id": 1, "abst": "本文研究了深度学习", "keyword": ["深度", "学习"], "label": "1"}
    write_jsonl(tmp_path / "train.jsonl", [row])
    example = read_classification("csl", tmp_path).splits["train"][0]
    assert (example.text_a, example.text_b, example.label) == ("深度 学习", "本文研究了深度学习", "1")


def test_generic_classification_takes_the_label_set_from_train_or_labels_file(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"sentence": "甲", "label": "b"}, {"sentence": "乙", "label": "a"}])
    write_jsonl(tmp_path / "dev.jsonl", [{"sentence": "丙", "label": "c"}])
    with pytest.raises(ValueError, match=r"dev\.jsonl:1: label 'c' is not in the labels of .*train\.jsonl"):
        read_classification("classification", tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps([{"label": "c"}, {"label": "a"}, {"label": "b"}]))
    data = read_classification("classification", tmp_path)
    assert data.labels == ["c", "a", "b"]
    assert read_labels_file(tmp_path / "labels.json") == (["c", "a", "b"], {})


@pytest.mark.parametrize(
    ("task", "content", "message"),
    [
        ("tnews", "", r"train\.json: the file is empty"),
        ("tnews", '{"sentence": "x", "label": "100"}\n{"sentence": "y",\n', r"train\.json:2: not valid JSON"),
        ("tnews", '{"sentence": "x"}\n', r"train\.json:1: missing field 'label'"),
        ("tnews", '{"label": "100"}\n', r"train\.json:1: missing field 'sentence'"),
        ("tnews", '{"sentence": "x", "label": "105"}\n', r"train\.json:1: label '105' is not in the tnews label set"),
        ("afqmc", '{"sentence1": "x", "label": "1"}\n', r"train\.json:1: missing field 'sentence2'"),
        ("csl", '{"abst": "x", "keyword": "k", "label": "1"}\n', r"train\.json:1: 'keyword' must be a list"),
        ("classification", '{"text": "x", "label": "1"}\n', r"train\.json:1: needs 'sentence'"),
        ("classification", '[1, 2]\n', r"train\.json:1: expected a JSON object"),
    ],
)  # fmt: skip
def test_bad_input_names_file_and_line(tmp_path, task, content, message):
    (tmp_path / "train.json").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_classification(task, tmp_path)


def test_missing_train_file_and_unknown_task(tmp_path):
    with pytest.raises(ValueError, match=r"has no train\.json or train\.jsonl"):
        read_classification("tnews", tmp_path)
    with pytest.raises(ValueError, match="unknown classification task 'mnli'"):
        read_classification("mnli", tmp_path)


def test_pair_encoding_truncates_longest_first():
    assert truncate_pair([1, 2, 3, 4], [5, 6], 4) == ([1, 2], [5, 6])
    assert truncate_pair([1], [5, 6, 7, 8], 3) == ([1], [5, 6])
    row = encode_pair([10, 11, 12], [20, 21], cls_id=2, sep_id=3, max_length=6)
    assert row == {"input_ids": [2, 10, 11, 3, 20, 3], "token_type_ids": [0, 0, 0, 0, 1, 1]}  # a tie pops b
    single = encode_pair([10], None, cls_id=2, sep_id=3, max_length=8)
    assert single == {"input_ids": [2, 10, 3], "token_type_ids": [0] * 3}
    with pytest.raises(ValueError, match="leaves no room"):
        encode_pair([1], [2], cls_id=2, sep_id=3, max_length=3)
    # an imported tokenizer without [CLS]/BOS (sentencepiece with EOS only): that token is left out, never None
    no_cls = encode_pair([10, 11, 12], [20, 21], cls_id=None, sep_id=1, max_length=5)
    assert no_cls == {"input_ids": [10, 11, 1, 20, 1], "token_type_ids": [0, 0, 0, 1, 1]}
    assert encode_pair([10, 11], None, cls_id=None, sep_id=None, max_length=2)["input_ids"] == [10, 11]


def test_tagging_and_qa_need_cls_and_sep_and_say_which():
    from types import SimpleNamespace

    from lmforge.tasks.common import require_cls_sep

    require_cls_sep(SimpleNamespace(cls_token_id=2, sep_token_id=3), "extractive QA")
    eos_only = SimpleNamespace(cls_token_id=None, sep_token_id=1, source="sentencepiece model")
    with pytest.raises(ValueError, match=r"extractive QA needs a \[CLS\]/BOS token, and the tokenizer \(sentencepiece"):
        require_cls_sep(eos_only, "extractive QA")


def test_collate_pads_inputs_and_token_labels():
    batch = collate([{"input_ids": [5, 6, 7], "labels": [1, 2, 0]}, {"input_ids": [5], "labels": [1]}], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[1, 2, 0], [1, -100, -100]]
    assert collate([{"input_ids": [5], "labels": 1}], pad_id=0)["labels"].tolist() == [1]
