"""Fixtures of the benchmark tests: one torch thread and the tiny prepared data of the training tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this folder runs on one torch thread (see ``one_thread`` in tests/conftest.py)."""


@pytest.fixture(scope="session")
def mlm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests/train/tiny_data.make_data``: a char tokenizer and MLM shards of 32 tokens (seconds to train on)."""
    spec = importlib.util.spec_from_file_location("tiny_data", Path(__file__).parents[1] / "train" / "tiny_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_data(tmp_path_factory.mktemp("bench-mlm-data"), objective="mlm")
