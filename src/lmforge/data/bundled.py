"""The data bundled with the repository: ``data/corpus/*.jsonl`` (the demo and benchmark corpus) and ``data/clue/``.

The root is an explicit ``data_dir``, else ``$LMFORGE_DATA``, else ``<repository>/data`` (an editable install's
checkout). Torch-free: ``lmforge demo --help`` and ``lmforge compare --help`` import it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "find_corpus"]


def data_root(data_dir: str | None = None) -> Path:
    """``data_dir``, else ``$LMFORGE_DATA``, else the repository's ``data/``."""
    import lmforge

    return Path(data_dir or os.environ.get("LMFORGE_DATA") or Path(lmforge.__file__).resolve().parents[2] / "data")


def find_corpus(data_dir: str | None = None) -> list[Path]:
    """The corpus files: ``data_dir`` or ``$LMFORGE_DATA`` or ``<repository>/data``, then ``corpus/*.jsonl``."""
    root = data_root(data_dir)
    files = sorted((root / "corpus").glob("*.jsonl"))
    if not files:
        raise ValueError(f"no corpus found: {root / 'corpus'}/*.jsonl is empty; set LMFORGE_DATA or --data_dir")
    return files
