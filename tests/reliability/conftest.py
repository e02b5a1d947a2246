"""Fixtures of the reliability suite: the tiny prepared data of the training tests, one torch thread per test.

``tests/train/tiny_data.py`` is shared by putting its folder on ``sys.path`` (the test folders are not packages).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

from tiny_data import make_data


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """One torch thread: tiny models, a shared 2-core machine, and bitwise comparisons between runs."""


@pytest.fixture(scope="session")
def mlm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("reliability-mlm-data"), objective="mlm")
