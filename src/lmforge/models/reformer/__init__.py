"""Reformer (LSH + local attention, axial positions, chunked FFN, reversible layers), registered as ``"reformer"``.

``lmforge.build_model("reformer", task="clm", preset="crime-and-punishment")`` is the shape of HF's
``google/reformer-crime-and-punishment``. Tasks: ``backbone``, ``clm``, ``mlm``. See ``docs/architectures/reformer.md``.
"""

from lmforge.models.reformer.config import PRESETS, ReformerConfig
from lmforge.models.reformer.model import ReformerModel, build_clm, build_mlm, init_weights
from lmforge.models.registry import register

_DESCRIPTION = "Reformer: LSH/local chunked attention, axial positions, chunked FFN, reversible layers; CLM and MLM."
register(
    "reformer",
    ReformerConfig,
    {"backbone": ReformerModel, "clm": build_clm, "mlm": build_mlm},
    presets=PRESETS,
    description=_DESCRIPTION,
)

__all__ = ["PRESETS", "ReformerConfig", "ReformerModel", "build_clm", "build_mlm", "init_weights"]
