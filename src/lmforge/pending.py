"""Stages announced in the CLI whose implementation has not landed yet.

Each keeps its final argument names so ``--help`` documents the interface, and running it says which issue
delivers it instead of failing obscurely. An entry moves out of this file when its stage lands.
"""

from __future__ import annotations

from dataclasses import dataclass


def _pending(stage: str, issue: int) -> None:
    raise ValueError(f"'lmforge {stage}' is not implemented in this version yet (tracked in issue #{issue})")


@dataclass(kw_only=True)
class EvaluateArgs:
    """``lmforge evaluate clue``; ``evaluate lm`` and ``evaluate length`` have landed (``lmforge.eval``)."""

    model: str | None = None
    """A fine-tuned run directory or checkpoint."""
    task: str = "tnews"
    """tnews, iflytek, afqmc, ocnli, cmnli, cluewsc2020, csl, cmrc2018 or cluener."""
    data_dir: str | None = None
    """Directory with the task's dev/test JSON-lines files."""


def evaluate(args: EvaluateArgs) -> None:
    _pending("evaluate clue", 9)
