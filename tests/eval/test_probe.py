"""The cloze probe (``lmforge.eval.probe``): the bundled set is well-formed, counts add up, an oracle scores 1."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lmforge.data.tokenizer import build_char_tokenizer
from lmforge.eval.fill_mask import MASK
from lmforge.eval.probe import ClozeItem, is_punctuation, load_probe, score_probe
from lmforge.models.registry import build_model


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Tiny models: one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def items() -> list[ClozeItem]:
    return load_probe()


@pytest.fixture(scope="module")
def tokenizer(items: list[ClozeItem]):
    # the texts and every answer except those of the classics items: those whose answer appears nowhere else skip
    known = [i.text.replace(MASK, "") for i in items] + ["".join(i.answers) for i in items if i.domain != "classics"]
    return build_char_tokenizer(known, vocab_size=2000, min_frequency=1)


def test_bundled_probe_is_well_formed(items: list[ClozeItem]) -> None:
    assert 40 <= len(items) <= 80 and len({i.id for i in items}) == len(items)
    for item in items:
        assert item.text.count(MASK) == len(item.answers) >= 1
        assert all(len(a) == 1 and not a.isspace() for a in item.answers)
    assert {i.domain for i in items} == {"general", "libreoffice", "classics"}
    seed = next(i for i in items if i.text == "天气预报说今天的天[MASK]很好，那么我[MASK]一起去公园玩吧！")
    assert seed.answers == ("气", "们")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"text": "no mask", "answers": []}, "at least one"),
        ({"text": "a[MASK]b[MASK]", "answers": ["x"]}, "one answer per"),
        ({"text": "a[MASK]", "answers": ["xy"]}, "one character"),
    ],
)
def test_malformed_probe_files_are_one_line_errors(tmp_path: Path, record: dict, message: str) -> None:
    path = tmp_path / "probe.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_probe(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_probe(tmp_path / "missing.jsonl")


def test_counts_add_up_and_skips_are_reported(items: list[ClozeItem], tokenizer) -> None:
    torch.manual_seed(0)
    model = build_model("bert", task="mlm", preset="tiny", vocab_size=len(tokenizer)).eval()
    result = score_probe(model, tokenizer, items)
    assert result["probe_items"] == len(items) == result["probe_scored"] + result["probe_skipped"]
    assert 0 < result["probe_skipped"] == len(result["skipped"]) and result["probe_scored"] > 0
    assert all("not one token of the vocabulary" in reason for reason in result["skipped"].values())
    scored = [i for i in items if i.id not in result["skipped"]]
    assert result["probe_masks"] == sum(len(i.answers) for i in scored)
    assert 0.0 <= result["probe_top1"] <= result["probe_top5"] <= 1.0 and 0.0 <= result["probe_punctuation"] <= 1.0
    # padding must not change the predictions: one item per batch == all items in one batch
    one_by_one = score_probe(model, tokenizer, items, batch_size=1)
    assert one_by_one["predictions"] == result["predictions"] and one_by_one["probe_top5"] == result["probe_top5"]


class _Oracle(nn.Module):
    """Logits that put the right answer first at every [MASK] (items scored in order, masks left to right)."""

    def __init__(self, answer_ids: list[int], mask_id: int, vocab_size: int) -> None:
        super().__init__()
        self.config = SimpleNamespace()
        self.weight = nn.Parameter(torch.zeros(1))
        self.answers, self.mask_id, self.vocab_size = list(answer_ids), mask_id, vocab_size

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        for row, col in (input_ids == self.mask_id).nonzero().tolist():
            logits[row, col, self.answers.pop(0)] = 1.0
        return SimpleNamespace(logits=logits)


def test_an_oracle_scores_one(items: list[ClozeItem], tokenizer) -> None:
    known = lambda a: len(ids := tokenizer.encode(a)) == 1 and ids[0] != tokenizer.unk_token_id  # noqa: E731
    scorable = [i for i in items if all(known(a) for a in i.answers)]
    answers = [tokenizer.encode(a)[0] for i in scorable for a in i.answers]
    model = _Oracle(answers, tokenizer.mask_token_id, len(tokenizer))
    result = score_probe(model, tokenizer, items, batch_size=7)
    assert result["probe_top1"] == result["probe_top5"] == 1.0 and result["probe_punctuation"] == 0.0
    assert not model.answers  # every mask was asked for exactly once


def test_punctuation() -> None:
    assert is_punctuation("，") and is_punctuation("。") and is_punctuation("!") and is_punctuation("##、")
    assert not is_punctuation("气") and not is_punctuation("") and not is_punctuation("[UNK]")
