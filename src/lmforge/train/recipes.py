"""Named training recipes: ``PretrainArgs`` field values that runs and benchmarks share (torch-free).

``OPTIMIZER_RECIPE``: the AdamW recipe of the demo-scale runs (``lmforge demo``, ``lmforge compare``,
``benchmarks/quality.py``, ``benchmarks/length_generalisation.py``): warm-up over 10% of the steps, then cosine
decay to 10% of the peak; beta2 0.98 and eps 1e-6 as RoBERTa (Liu et al. 2019) for short noisy runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPTIMIZER_RECIPE"]

OPTIMIZER_RECIPE: dict[str, Any] = dict(
    weight_decay=0.01,
    adam_beta2=0.98,
    adam_epsilon=1e-6,
    lr_scheduler_type="cosine",
    warmup_ratio=0.1,
    min_lr_ratio=0.1,
)
