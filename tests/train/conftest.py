"""Fixtures of the training tests: tiny prepared data (``tiny_data.make_data``) and one torch thread per test.

One thread: the models here are tiny, and with two OpenMP threads on a 2-core machine shared with other jobs a
step can take 100x longer while the threads spin-wait for each other.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_data import make_data


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this folder runs on one torch thread (see ``one_thread`` in tests/conftest.py)."""


@pytest.fixture(scope="session")
def mlm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("mlm-data"), objective="mlm")


@pytest.fixture(scope="session")
def clm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("clm-data"), objective="clm", sequence_length=24)
