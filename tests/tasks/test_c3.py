"""C3 multiple choice: the reader (CLUE's d-/m- files, bad input named by file and question), the head (a padded
choice never wins; batched == one question at a time), and ``finetune c3`` end to end with ``evaluate clue``."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from task_data import NEGATIVE, POSITIVE

from lmforge.cli import run
from lmforge.heads.classification import default_pooling
from lmforge.models.registry import build_model, get_config, list_models
from lmforge.tasks.c3 import read_c3
from lmforge.tasks.finetune import FinetuneArgs, finetune


def _document(i: int, *, labelled: bool = True) -> list:
    """A context of "positive" characters; the answer is the choice made of them, among 2 to 4 choices."""
    n = 2 + i % 3
    choices = [NEGATIVE[j : j + 2] for j in range(n - 1)] + [POSITIVE[i % 6 : i % 6 + 2]]
    choices = choices[i % n :] + choices[: i % n]  # the answer at every position
    question = {"question": "哪个", "choice": choices} | ({"answer": POSITIVE[i % 6 : i % 6 + 2]} if labelled else {})
    return [[POSITIVE[i % 4 :], "春天"], [question], f"m{i}"]


def _write(path, documents):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(documents, ensure_ascii=False), encoding="utf-8")


@pytest.fixture()
def c3_data(tmp_path):
    data = tmp_path / "c3_public"
    _write(data / "d-train.json", [_document(i) for i in range(12)])
    _write(data / "m-train.json", [_document(i) for i in range(12, 24)])
    _write(data / "d-dev.json", [_document(i) for i in range(24, 30)])
    _write(data / "test.json", [_document(i, labelled=False) for i in range(30, 35)])
    return data


def test_reader_and_bad_input(c3_data, tmp_path):
    data, files, documents = read_c3(c3_data, splits=("train", "dev", "test"))
    assert len(data["train"]) == 24 and len(files["train"]) == 2 and len(data["test"]) == 5
    assert documents == {"train": 24, "dev": 6, "test": 5}
    assert [q.id for q in data["train"][:3]] == [0, 1, 2] and data["train"][12].id == 12  # m- continues d-
    assert all(q.choices[q.label] == POSITIVE[i % 6 : i % 6 + 2] for i, q in enumerate(data["train"]))
    assert data["test"][0].label is None

    bad = tmp_path / "bad"
    _write(bad / "train.json", [_document(0), [["文"], [{"question": "哪", "choice": ["春"], "answer": "春"}], "x"]])
    with pytest.raises(ValueError, match=r"train.json: document 1 question 0: 1 choices; C3 has 2 to 4"):
        read_c3(bad, splits=("train",))
    _write(bad / "train.json", [[["文"], [{"question": "哪", "choice": ["春", "夏"], "answer": "秋"}], "x"]])
    with pytest.raises(ValueError, match="answer '秋' is not one of the choices"):
        read_c3(bad, splits=("train",))


@pytest.mark.parametrize("name", sorted(list_models()))
def test_head_ignores_padded_choices_and_batches_alike(name):
    """A question with 2 choices batched with one of 4 (its missing choices all padding) scores as it does alone;
    the padded choices get the lowest logit; the loss is a finite cross-entropy over the choices."""
    from lmforge.heads.classification import TaskModel, backbone_output_size
    from lmforge.heads.multiple_choice import MultipleChoiceHead
    from lmforge.tasks.common import collate

    torch.manual_seed(0)
    config = get_config(name, preset="tiny")
    backbone = build_model(name, config=config)
    pooling = default_pooling(config, builders=list_models()[name].builders)
    model = TaskModel(backbone, MultipleChoiceHead(backbone_output_size(backbone), pooling=pooling, dropout=0.0))
    model.eval()
    two = {"input_ids": [[1, 5, 6, 2, 7, 2], [1, 5, 6, 2, 8, 9, 2]], "token_type_ids": [[0] * 6, [0] * 7],
           "labels": 1}  # fmt: skip
    four = {"input_ids": [[1, 9, 2, 7, 2], [1, 9, 2, 8, 2], [1, 9, 2, 5, 2], [1, 9, 2, 6, 6, 6, 6, 6, 2]],
            "token_type_ids": [[0] * 5, [0] * 5, [0] * 5, [0] * 9], "labels": 3}  # fmt: skip
    both = model(**collate([two, four], pad_id=0))
    alone = model(**collate([two], pad_id=0))
    assert both.logits.shape == (2, 4) and alone.logits.shape == (1, 2)
    if name != "canine":  # CANINE's convolutions carry padding into real outputs (as HF's: tests/models)
        torch.testing.assert_close(both.logits[0, :2], alone.logits[0], atol=1e-5, rtol=1e-4)
    assert (both.logits[0, 2:] < both.logits[0, :2].min()).all()
    assert torch.isfinite(both.loss)
    expected = torch.nn.functional.cross_entropy(both.logits.float(), torch.tensor([1, 3]))
    torch.testing.assert_close(both.loss, expected)


def test_finetune_and_evaluate_c3(c3_data, char_tokenizer_dir, tmp_path):
    args = FinetuneArgs("c3", model="bert", tokenizer_dir=str(char_tokenizer_dir), data_dir=str(c3_data),
                        output_dir=str(tmp_path / "run"), max_steps=3, max_seq_length=24,
                        per_device_train_batch_size=4, disable_tqdm=True)  # fmt: skip
    report = finetune(args)
    assert 0.0 <= report["dev"]["accuracy"] <= 1.0 and report["counts"]["train"]["examples"] == 24
    lines = [json.loads(x) for x in (tmp_path / "run" / "c3_predict.json").read_text().splitlines()]
    assert [r["id"] for r in lines] == [0, 1, 2, 3, 4]
    assert all(0 <= r["label"] < 2 + (30 + i) % 3 for i, r in enumerate(lines))
    result = run(["evaluate", "clue", "--model", str(tmp_path / "run")])
    assert result["accuracy"] == report["dev"]["accuracy"] and result["task"] == "c3"
    run(["evaluate", "clue", "--model", str(tmp_path / "run"), "--split", "test", "--package", "true",
         "--output_dir", str(tmp_path / "submit")])  # fmt: skip
    with zipfile.ZipFile(tmp_path / "submit" / "clue_submit.zip") as archive:
        assert archive.namelist() == ["c311_predict.json"]
