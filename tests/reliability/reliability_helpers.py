"""The tiny pretraining run that the reliability tests damage, interrupt and resume (imported by the tests)."""

from __future__ import annotations

from pathlib import Path

from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain

TINY = dict(
    model="bert",
    model_preset="tiny",
    max_seq_length=32,
    per_device_train_batch_size=4,
    learning_rate=1e-3,
    warmup_steps=2,
    max_steps=8,
    logging_steps=1,
    save_steps=4,
    do_eval=False,
    disable_tqdm=True,
    report_to="none",
    seed=0,
)


def run_tiny(data: Path, out: Path, **kw) -> dict:
    """``pretrain`` of the tiny BERT on ``data`` into ``out``; ``kw`` overrides ``TINY``."""
    return pretrain(PretrainArgs(train_dir=str(data), output_dir=str(out), **(TINY | kw)))
