"""``ExportArgs`` of ``lmforge export`` (kept free of torch/transformers imports so ``--help`` is fast)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ExportArgs"]


@dataclass  # not kw_only: the required field is positional on the command line (lmforge export RUN)
class ExportArgs:
    run: str
    """A run directory (its newest complete checkpoint is exported) or a checkpoint-STEP directory."""
    output_dir: str | None = None
    """Where to write the Hugging Face directory (default: RUN/hf, or hf-checkpoint-N next to a checkpoint)."""
    format: Literal["auto", "native", "lmforge"] = "auto"
    """native: the architecture's HF twin (BertForMaskedLM, RoFormerForMaskedLM, ...), loadable without lmforge;
    lmforge: the generic wrapper (needs `import lmforge.hf`); auto: native when the architecture has one."""
    verify: bool = True
    """Reload the export with transformers and check that its logits match ours."""
    overwrite: bool = False
    """Replace an existing non-empty output directory."""
