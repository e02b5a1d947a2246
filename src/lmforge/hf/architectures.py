"""How ``lmforge.hf.modeling`` builds an lmforge model: through the registry.

In an exported directory's remote code (``lmforge.hf.remote``) this module is replaced by a table of the one
bundled architecture with the same ``build_lmforge_model`` signature, so the wrappers are the same source either
way and need no registry (which imports every architecture package).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lmforge.models.registry import build_model, config_from_dict

__all__ = ["build_lmforge_model"]


def build_lmforge_model(name: str, task: str, config: dict[str, Any]) -> nn.Module:
    """``task`` ("backbone", "mlm", "clm", ...) model of architecture ``name`` from a config dict (config.json)."""
    return build_model(name, task=task, config=config_from_dict(name, config))
