"""HF run_mlm.py data options on ``lmforge prepare`` (issue 19 item 3): ``--line_by_line`` reads a text file one
sentence per line, ``--validation_file`` is the held-out split instead of a hashed share, and a dotted
``--text_field`` reaches into nested JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import make_documents

from lmforge.data.corpus import IngestOptions, PrepareError, ingest
from lmforge.data.prepare import PrepareAllArgs, prepare_all
from lmforge.data.readers import field_value
from lmforge.data.shards import open_shards


def test_dotted_text_field_reads_nested_objects_and_lists(tmp_path: Path) -> None:
    records = [
        {"meta": {"body": "嵌套对象里的正文一。"}},
        {"meta": {"body": ["不是字符串"]}},  # not a string: missing_text_field
        {"meta": "没有下一层"},
        {"meta.body": "键名本身带点的正文。"},  # a key with the dots wins (datasets' flattened columns)
        {"paragraphs": [{"text": "列表第零项。"}]},
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    (tmp_path / "b.json").write_text(json.dumps([{"meta": {"body": "数组文件里的嵌套正文。"}}], ensure_ascii=False))
    report = ingest(
        [str(tmp_path / "a.jsonl"), str(tmp_path / "b.json")],
        tmp_path / "out",
        options=IngestOptions(text_field="meta.body", min_doc_length=1),
        progress=False,
        shuffle=False,
    )
    texts = [json.loads(line)["text"] for line in (tmp_path / "out" / "part-00000.jsonl").open("rb")]
    assert texts == ["嵌套对象里的正文一。", "键名本身带点的正文。", "数组文件里的嵌套正文。"]
    assert report["skipped"] == {"missing_text_field": 3}
    assert field_value(records[4], "paragraphs.0.text") == "列表第零项。"
    assert field_value(records[4], "paragraphs.1.text") is None and field_value([1], "a") is None
    for bad in ["", "a..b", ".text", "text."]:
        with pytest.raises(PrepareError, match="text_field must be a name or a dotted path"):
            IngestOptions(text_field=bad)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hf-options")
    docs = make_documents(120, seed=3)
    (root / "train.txt").write_text("\n".join(docs) + "\n", encoding="utf-8")  # one sentence per line, no blanks
    held_out = make_documents(30, seed=4)
    (root / "valid.txt").write_text("\n".join(held_out) + "\n", encoding="utf-8")
    return root


def _prepare(raw: Path, out: Path, **kwargs) -> Path:
    args = dict(input=[str(raw / "train.txt")], output_dir=str(out), segmenter="none", max_seq_length=64)
    return prepare_all(PrepareAllArgs(**{**args, "progress": False, "min_doc_length": 1, **kwargs}))


def test_line_by_line_reads_one_sentence_per_line(raw: Path, tmp_path: Path) -> None:
    lines = len(set((raw / "train.txt").read_text(encoding="utf-8").split("\n")[:-1]))
    by_line = json.loads((_prepare(raw, tmp_path / "l", line_by_line=True) / "prepare.json").read_text())
    assert by_line["corpus"]["documents_out"] == lines  # not 1: a blank-line-free text used to be one document
    packed = json.loads((_prepare(raw, tmp_path / "p") / "prepare.json").read_text())
    assert packed["corpus"]["documents_out"] == 1


def test_validation_file_is_the_held_out_split(raw: Path, tmp_path: Path, capsys) -> None:
    out = _prepare(raw, tmp_path / "v", line_by_line=True, validation_file=str(raw / "valid.txt"))
    train, validation = open_shards(out / "shards" / "train"), open_shards(out / "shards" / "validation")
    summary = json.loads((out / "prepare.json").read_text(encoding="utf-8"))
    assert train.num_documents == summary["corpus"]["documents_out"]  # every --input document trains
    assert (
        validation.num_documents
        == summary["validation_corpus"]["documents_out"]
        == len(set(make_documents(30, seed=4)))
    )
    index = json.loads((out / "shards" / "validation" / "index.json").read_text(encoding="utf-8"))
    assert index["split"] == "validation" and index["build"]["validation_file"] == [str(raw / "valid.txt")]
    assert validation.fingerprint == train.fingerprint
    assert not (out / "shards" / ".validation-file-shards").exists()
    assert f"--validation_file {validation.num_documents} documents -> validation" in capsys.readouterr().out
    # the held-out shards hold exactly the validation file's documents, tokenized as training would
    reference = _prepare(raw, tmp_path / "ref", line_by_line=True, input=[str(raw / "valid.txt")],
                         validation_split_percentage=0.0, tokenizer_name=str(out / "tokenizer"))  # fmt: skip
    alone = open_shards(reference / "shards" / "train")
    assert alone.num_documents == validation.num_documents and alone.fingerprint == validation.fingerprint
    np.testing.assert_array_equal(alone.tokens(0, alone.num_tokens), validation.tokens(0, validation.num_tokens))


def test_validation_file_errors_are_one_line(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match=r"--validation_file '/nonexistent/v\.txt' does not exist"):
        _prepare(raw, tmp_path / "x", validation_file="/nonexistent/v.txt")
    assert not (tmp_path / "x" / "corpus").exists()  # refused before the training input was read
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(PrepareError, match="no documents in --validation_file"):
        _prepare(raw, tmp_path / "y", validation_file=str(tmp_path / "empty.txt"))
