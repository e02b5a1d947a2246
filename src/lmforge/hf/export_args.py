"""``ExportArgs`` of ``lmforge export`` (kept free of torch/transformers imports so ``--help`` is fast)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ExportArgs"]


@dataclass  # not kw_only: the required field is positional on the command line (lmforge export RUN)
class ExportArgs:
    run: str
    """A run directory (its newest complete checkpoint is exported), a checkpoint-STEP directory, or any trained model
    the loader reads: an lmforge export, a Hugging Face or JunnYu GAU-alpha/FLASH directory, a lucidrains state dict."""
    output_dir: str | None = None
    """Where to write the Hugging Face directory (default: RUN/hf, or hf-checkpoint-N next to a checkpoint; other
    sources need it)."""
    format: Literal["auto", "native", "lmforge"] = "auto"
    """native: a transformers class that computes exactly our model (BertForMaskedLM, BertForTokenClassification,
    ...); lmforge: our wrapper with its code bundled into the directory (trust_remote_code=True, no lmforge needed);
    auto: native when one is exact, else lmforge."""
    verify: bool = True
    """Reload the export with transformers and check that its logits match ours."""
    overwrite: bool = False
    """Replace an existing non-empty output directory."""
