"""CHID idiom cloze: the reader (one example per blank, bad input named by file and line), the window around a blank,
and ``finetune chid`` end to end with ``evaluate clue`` and the leaderboard's one-object prediction file."""

from __future__ import annotations

import json
import zipfile

import pytest
from task_data import NEGATIVE, OTHER, POSITIVE

from lmforge.cli import run
from lmforge.tasks.chid import NUM_CANDIDATES, _window, read_chid
from lmforge.tasks.finetune import FinetuneArgs, finetune

IDIOMS = [POSITIVE[i : i + 4] for i in range(5)] + [NEGATIVE[i : i + 4] for i in range(5)]


def _line(first_tag: int, answers: dict, *, blanks: int = 2) -> dict:
    """One passage with ``blanks`` blanks; the answer of each is an idiom of its neighbouring text's characters."""
    content, tags = OTHER[first_tag % 20 : first_tag % 20 + 6], []
    for b in range(blanks):
        tag = f"#idiom{first_tag + b:06d}#"
        answer = (first_tag + b) % NUM_CANDIDATES
        pool = POSITIVE if answer < 5 else NEGATIVE
        content += pool[:3] + tag + pool[3:6]
        answers[tag], tags = answer, [*tags, tag]
    return {"candidates": IDIOMS, "content": [content]}


def _write(data, split: str, n: int, start: int, *, labelled: bool = True) -> None:
    answers: dict = {}
    rows = [_line(start + 2 * i, answers) for i in range(n)]
    data.mkdir(parents=True, exist_ok=True)
    (data / f"{split}.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    if labelled:
        (data / f"{split}_answer.json").write_text(json.dumps(answers), encoding="utf-8")


@pytest.fixture()
def chid_data(tmp_path):
    data = tmp_path / "chid_public"
    _write(data, "train", 8, 0)
    _write(data, "dev", 3, 100)
    _write(data, "test", 2, 200, labelled=False)
    return data


def test_reader_window_and_bad_input(chid_data, tmp_path):
    data, files, lines = read_chid(chid_data, splits=("train", "dev", "test"))
    assert lines == {"train": 8, "dev": 3, "test": 2}
    assert [len(data[s]) for s in ("train", "dev", "test")] == [16, 6, 4]  # one example per blank
    first = data["train"][0]
    assert first.id == "#idiom000000#" and first.blank == 0 and first.tags == ["#idiom000000#", "#idiom000001#"]
    assert data["train"][1].label == 1 and data["test"][0].label is None
    assert files["dev"][1].endswith("dev_answer.json")
    assert _window([1, 2, 3, 4], [5, 6, 7, 8], 4) == ([3, 4], [5, 6])
    assert _window([1], [5, 6, 7, 8], 4) == ([1], [5, 6, 7])  # a short side leaves its room to the other
    assert _window([1, 2], [5], 0) == ([], [])

    bad = tmp_path / "bad"
    _write(bad, "train", 3, 0)
    rows = (bad / "train.json").read_text("utf-8").splitlines()
    answers = json.loads((bad / "train_answer.json").read_text())

    def fails(match: str, rows=rows, answers=answers) -> None:
        (bad / "train.json").write_text("\n".join(rows) + "\n", "utf-8")
        (bad / "train_answer.json").write_text(json.dumps(answers), "utf-8")
        with pytest.raises(ValueError, match=match):
            read_chid(bad, splits=("train",))

    short = json.loads(rows[1]) | {"candidates": IDIOMS[:9]}
    fails(r"train.json:2: 9 candidates; CHID has 10", rows=[rows[0], json.dumps(short), rows[2]])
    fails(r"train.json:3: blank #idiom000004# has no answer in .*train_answer.json",
          answers={k: v for k, v in answers.items() if k != "#idiom000004#"})  # fmt: skip
    fails(r"train.json:1: blank #idiom000001#: answer 10 in .*train_answer.json is not a candidate index",
          answers=answers | {"#idiom000001#": 10})  # fmt: skip
    fails(r"train.json:2: not valid JSON", rows=[rows[0], "{", rows[2]])
    fails(r"train.json:3: blank #idiom000000# already at .*train.json:1", rows=[rows[0], rows[1], rows[0]])


def test_features_mask_the_blank_and_keep_the_other_tags(chid_data, char_tokenizer_dir):
    from lmforge.data.tokenizer import load_tokenizer
    from lmforge.tasks.chid import build_chid_task

    tokenizer = load_tokenizer(char_tokenizer_dir)
    bundle = build_chid_task(chid_data, tokenizer=tokenizer, hidden_size=8, pooling="cls", dropout=0.0,
                             max_seq_length=40, splits=("train",))  # fmt: skip
    first, second = bundle.features["train"][:2]
    assert len(first["input_ids"]) == NUM_CANDIDATES and (first["labels"], second["labels"]) == (0, 1)
    assert tokenizer.decode(first["input_ids"][0]) == (
        "[CLS]春夏秋冬[SEP]北京上海中国春夏秋[MASK][MASK][MASK][MASK]冬山水春夏秋#idiom000001#冬[SEP]"
    )  # the window: 29 tokens around the blank, cut on the right where the left side is short
    assert tokenizer.decode(second["input_ids"][9]).startswith("[CLS]风雨雷电[SEP]上海中国春夏秋#idiom000000#冬")
    assert all(len(ids) <= 40 for row in bundle.features["train"] for ids in row["input_ids"])


def test_finetune_and_evaluate_chid(chid_data, char_tokenizer_dir, tmp_path):
    args = FinetuneArgs("chid", model="bert", tokenizer_dir=str(char_tokenizer_dir), data_dir=str(chid_data),
                        output_dir=str(tmp_path / "run"), max_steps=2, max_seq_length=20,
                        per_device_train_batch_size=4, disable_tqdm=True)  # fmt: skip
    report = finetune(args)
    assert 0.0 <= report["dev"]["accuracy"] <= 1.0 and report["dev"]["total"] == 6
    assert report["counts"]["train"]["examples"] == 16 and report["counts"]["train"]["lines"] == 8
    predictions = json.loads((tmp_path / "run" / "chid_predict.json").read_text())  # one object, as CLUE reads it
    assert list(predictions) == [f"#idiom{200 + i:06d}#" for i in range(4)]
    assert all(isinstance(p, int) and 0 <= p < NUM_CANDIDATES for p in predictions.values())
    result = run(["evaluate", "clue", "--model", str(tmp_path / "run")])
    assert result["accuracy"] == report["dev"]["accuracy"] and result["task"] == "chid"
    run(["evaluate", "clue", "--model", str(tmp_path / "run"), "--split", "test", "--package", "true",
         "--output_dir", str(tmp_path / "submit")])  # fmt: skip
    with zipfile.ZipFile(tmp_path / "submit" / "clue_submit.zip") as archive:
        assert archive.namelist() == ["chid11_predict.json"]
        assert json.loads(archive.read("chid11_predict.json")) == predictions
