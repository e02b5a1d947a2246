"""Shared test configuration: seeds, the tolerance table and markers (style.md §5).

Markers (declared in pyproject.toml): ``slow`` (``make chaos``), ``gpu`` (needs CUDA; run on a lent device),
``hf`` (compares against the ``transformers`` reference; installed by ``.[dev]``, so these run by default).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from tolerances import TOL  # noqa: F401  (re-exported for fixtures)


@pytest.fixture(autouse=True)
def seed() -> int:
    """Every test starts from the same global RNG state (tests that need randomness still pass generators)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return 0


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    # CI has 2 cores; more threads than cores only adds contention.
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test (training tests: deterministic and no oversubscription), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
