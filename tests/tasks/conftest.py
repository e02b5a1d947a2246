"""Fixtures of the fine-tuning tests: a char tokenizer and the synthetic task of ``task_data``."""

from __future__ import annotations

from pathlib import Path

import pytest
from task_data import NEGATIVE, OTHER, POSITIVE, synthetic_rows, write_rows

from lmforge.data.tokenizer import build_char_tokenizer


@pytest.fixture(scope="session")
def char_tokenizer_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer")
    build_char_tokenizer([POSITIVE + NEGATIVE + OTHER], vocab_size=600, min_frequency=1).save(path)
    return path


@pytest.fixture()
def synthetic_task(tmp_path) -> Path:
    """train (160, 45%/55%), dev (60) and test (10, no labels) in TNEWS-like JSON lines."""
    data = tmp_path / "synthetic"
    write_rows(data / "train.json", synthetic_rows(160, seed=1))
    write_rows(data / "dev.json", synthetic_rows(60, seed=2))
    write_rows(data / "test.json", [{"id": r["id"], "sentence": r["sentence"]} for r in synthetic_rows(10, seed=3)])
    return data
