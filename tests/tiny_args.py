"""The tiny pretraining recipe the training tests share (``lmforge pretrain`` in seconds on a CPU).

``tiny_pretrain(**overrides)``: the registry's ``tiny`` preset on 32-token sequences, 4 per batch, lr 1e-3, seed 0,
no progress bar and no TensorBoard. Each test adds the architecture (``model=...``) and what it exercises (steps,
logging, checkpoints, evaluation) as overrides, so a recipe change happens here once.
"""

from __future__ import annotations

from typing import Any

TINY_PRETRAIN: dict[str, Any] = dict(
    model_preset="tiny",
    max_seq_length=32,
    per_device_train_batch_size=4,
    learning_rate=1e-3,
    disable_tqdm=True,
    report_to="none",
    seed=0,
)


def tiny_pretrain(**overrides: Any) -> dict[str, Any]:
    """``PretrainArgs`` keyword arguments: ``TINY_PRETRAIN`` with ``overrides`` on top."""
    return TINY_PRETRAIN | overrides
