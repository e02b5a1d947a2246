"""Fixtures of the training tests: tiny prepared data (``tiny_data.make_data``) and one torch thread per test.

One thread: the models here are tiny, and with two OpenMP threads on a 2-core machine shared with other jobs a
step can take 100x longer while the threads spin-wait for each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tiny_data import make_data


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mlm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("mlm-data"), objective="mlm")


@pytest.fixture(scope="session")
def clm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("clm-data"), objective="clm", sequence_length=24)
