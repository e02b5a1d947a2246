"""Shared test configuration: seeds, the tolerance table and markers (style.md §5).

Markers (declared in pyproject.toml): ``slow`` (``make chaos``), ``gpu`` (needs CUDA; run on a lent device),
``hf`` (compares against the ``transformers`` reference; installed by ``.[dev]``, so these run by default).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

# One place for every tolerance the suite uses (style.md §5 "Tolerances").
TOL: dict[str, dict[str, float]] = {
    "reference_fp32": {"rtol": 1.3e-6, "atol": 1e-5},  # ours vs reference, same maths (assert_close defaults)
    "kernel_fp32": {"rtol": 0.0, "atol": 1e-5},  # fast kernel vs eager
    "kernel_half": {"rtol": 1e-2, "atol": 1e-2},  # fast kernel vs eager in bf16/fp16 on GPU
    "batched_fp32": {"rtol": 0.0, "atol": 1e-5},  # batched vs single, cache vs parallel
    "batched_fp32_reshaped": {"rtol": 0.0, "atol": 1e-4},  # same, when matmul shapes differ
    "golden_stats": {"rtol": 1e-3, "atol": 0.0},  # golden values from other frameworks
}


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

