"""Stages announced in the CLI whose implementation has not landed yet.

Each keeps its final argument names so ``--help`` documents the interface, and running it says which issue
delivers it instead of failing obscurely. An entry moves out of this file when its stage lands.
"""

from __future__ import annotations


def _pending(stage: str, issue: int) -> None:
    raise ValueError(f"'lmforge {stage}' is not implemented in this version yet (tracked in issue #{issue})")
