"""The one tolerance table of the suite (style.md §5 "Tolerances"); import it as ``from tolerances import TOL``."""

from __future__ import annotations

# One place for every tolerance the suite uses (style.md §5 "Tolerances").
TOL: dict[str, dict[str, float]] = {
    "reference_fp32": {"rtol": 1.3e-6, "atol": 1e-5},  # ours vs reference, same maths (assert_close defaults)
    "kernel_fp32": {"rtol": 0.0, "atol": 1e-5},  # fast kernel vs eager
    "kernel_half": {"rtol": 1e-2, "atol": 1e-2},  # fast kernel vs eager in bf16/fp16 on GPU
    "batched_fp32": {"rtol": 0.0, "atol": 1e-5},  # batched vs single, cache vs parallel
    "batched_fp32_reshaped": {"rtol": 0.0, "atol": 1e-4},  # same, when matmul shapes differ
    "golden_stats": {"rtol": 1e-3, "atol": 0.0},  # golden values from other frameworks
}
