"""The bundled corpus and CLUE-format splits under ``data/`` (built by ``scripts/build_corpus.py``) are usable.

Fast checks (pure Python + json) that the files the demo and the fine-tuning examples rely on exist, parse,
follow their schema, are big enough to learn from, hold Simplified Chinese, keep dev labels inside train and
``labels.json``, never share a sentence between train and dev, and stay under the repository's 5 MB budget.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
CORPUS_FILES = ("poetry.jsonl", "libreoffice_help.jsonl")
TASKS = ("lo_topic", "poem_genre")
CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# Common characters that exist only in Traditional script; t2s output must not contain them.
TRADITIONAL_ONLY = frozenset("們說這為國時來東長門見風雲無與書學開間後爲過還對會從歲紅綠")


@cache
def read_jsonl(rel: str) -> list[dict[str, Any]]:
    path = DATA / rel
    with path.open(encoding="utf-8") as f:  # strict UTF-8: a bad byte raises
        return [json.loads(line) for line in f if line.strip()]


def cjk_share(texts: list[str]) -> float:
    chars = sum(len(re.sub(r"\s", "", t)) for t in texts)
    return sum(len(CJK_RE.findall(t)) for t in texts) / max(chars, 1)


def test_expected_files_exist() -> None:
    expected = [f"corpus/{name}" for name in CORPUS_FILES]
    expected += [f"clue/{task}/{name}" for task in TASKS for name in ("train.jsonl", "dev.jsonl", "labels.json")]
    expected += ["README.md"]
    missing = [rel for rel in expected if not (DATA / rel).is_file()]
    assert not missing, f"missing under data/: {missing}"
    licences = sorted(p.name for p in (DATA / "LICENSES").iterdir())
    assert any("MIT" in n for n in licences) and any("MPL-2.0" in n for n in licences), licences
    assert "Mozilla Public License Version 2.0" in (DATA / "LICENSES/libreoffice-help.MPL-2.0.txt").read_text("utf-8")


def test_total_size_under_budget() -> None:
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 5_000_000, f"data/ holds {total / 1e6:.2f} MB"


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_schema_and_content(name: str) -> None:
    docs = read_jsonl(f"corpus/{name}")
    assert len(docs) >= 500
    for d in docs:
        assert set(d) == {"id", "text", "source"}, d
        assert all(isinstance(v, str) and v for v in d.values()), d
        assert d["text"] == d["text"].strip()
    assert len({d["id"] for d in docs}) == len(docs), "duplicate ids"
    texts = [d["text"] for d in docs]
    assert len(set(texts)) == len(texts), "duplicate documents"
    assert sum(len(t) for t in texts) >= 300_000, "corpus file is too small to learn from"
    assert cjk_share(texts) >= 0.6, "corpus is not mostly Chinese"
    assert not TRADITIONAL_ONLY & set("".join(texts)), "traditional characters left after t2s"


def test_corpus_total_size() -> None:
    total = sum((DATA / "corpus" / name).stat().st_size for name in CORPUS_FILES)
    assert total >= 2_000_000, f"corpus is only {total / 1e6:.2f} MB"


@pytest.mark.parametrize("task", TASKS)
def test_clue_split_schema_and_labels(task: str) -> None:
    labels = json.loads((DATA / f"clue/{task}/labels.json").read_text(encoding="utf-8"))
    assert [set(x) for x in labels] == [{"label", "label_desc"}] * len(labels)
    ids = [x["label"] for x in labels]
    assert ids == sorted(ids, key=int) and len(set(ids)) == len(ids) >= 2, ids
    desc = {x["label"]: x["label_desc"] for x in labels}
    splits = {split: read_jsonl(f"clue/{task}/{split}.jsonl") for split in ("train", "dev")}
    assert len(splits["train"]) >= 2000 and len(splits["dev"]) >= 300
    for rows in splits.values():
        for r in rows:
            assert set(r) == {"sentence", "label", "label_desc"}, r
            assert isinstance(r["label"], str) and desc.get(r["label"]) == r["label_desc"], r
            assert r["sentence"].strip() and CJK_RE.search(r["sentence"]), r
            assert len(r["sentence"]) <= 128
    train_labels = {r["label"] for r in splits["train"]}
    dev_labels = {r["label"] for r in splits["dev"]}
    assert dev_labels <= train_labels <= set(desc)
    assert train_labels == set(desc), "a label of labels.json has no train example"


@pytest.mark.parametrize("task", TASKS)
def test_clue_train_dev_disjoint(task: str) -> None:
    train = [r["sentence"] for r in read_jsonl(f"clue/{task}/train.jsonl")]
    dev = [r["sentence"] for r in read_jsonl(f"clue/{task}/dev.jsonl")]
    assert len(set(train)) == len(train) and len(set(dev)) == len(dev), "duplicate sentences within a split"
    assert not set(train) & set(dev), "a sentence is in both train and dev"


@pytest.mark.parametrize("task", TASKS)
def test_clue_splits_are_not_degenerate(task: str) -> None:
    """No label dominates: the majority-class rate stays well below what a trivial classifier would exploit."""
    for split in ("train", "dev"):
        rows = read_jsonl(f"clue/{task}/{split}.jsonl")
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["label"]] = counts.get(r["label"], 0) + 1
        assert max(counts.values()) / len(rows) < 0.4, (split, counts)


def test_dev_sentences_held_out_of_corpus() -> None:
    """Pretraining on data/corpus never sees a dev sentence of either task."""
    help_text = "\n".join(d["text"] for d in read_jsonl("corpus/libreoffice_help.jsonl"))
    poetry_text = "\n".join(d["text"].replace("\n", "") for d in read_jsonl("corpus/poetry.jsonl"))
    for task, text in (("lo_topic", help_text), ("poem_genre", poetry_text)):
        leaked = [r["sentence"] for r in read_jsonl(f"clue/{task}/dev.jsonl") if r["sentence"] in text]
        assert not leaked, (task, leaked[:3])
