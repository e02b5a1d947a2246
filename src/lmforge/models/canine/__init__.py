"""CANINE, the tokenizer-free character encoder (Clark et al. 2022), registered as ``"canine"``.

``lmforge.build_model("canine", preset="base")`` is CANINE-S/C's shape; tasks: ``backbone`` (``CanineModel``:
sequence, pooled output via ``encode``) and ``mlm`` (masked character spans through hash-bucket logits,
``pretraining.py``). See ``docs/architectures/canine.md``.
"""

from lmforge.models.canine.config import PRESETS, CanineConfig
from lmforge.models.canine.model import CanineModel, CanineOutput, init_weights
from lmforge.models.canine.pretraining import CanineForMaskedChars, build_mlm
from lmforge.models.registry import register

_CANINE_DESCRIPTION = "CANINE: codepoints, hash embeddings, local attention, 4x downsampling; vocab-free masked chars."
register(
    "canine",
    CanineConfig,
    {"backbone": CanineModel, "mlm": build_mlm},
    presets=PRESETS,
    description=_CANINE_DESCRIPTION,
)

__all__ = [
    "PRESETS",
    "CanineConfig",
    "CanineForMaskedChars",
    "CanineModel",
    "CanineOutput",
    "build_mlm",
    "init_weights",
]
