"""The tiny pretraining run that the reliability tests damage, interrupt and resume (imported by the tests)."""

from __future__ import annotations

from pathlib import Path

from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain
from tiny_args import tiny_pretrain

TINY = tiny_pretrain(model="bert", warmup_steps=2, max_steps=8, logging_steps=1, save_steps=4, do_eval=False)


def run_tiny(data: Path, out: Path, **kw) -> dict:
    """``pretrain`` of the tiny BERT on ``data`` into ``out``; ``kw`` overrides ``TINY``."""
    return pretrain(PretrainArgs(train_dir=str(data), output_dir=str(out), **(TINY | kw)))
