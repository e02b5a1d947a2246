"""FLASH-Quad (``"flash-quad"``) and FLASH (``"flash"``), Hua et al. 2022; one shared ``FLASHConfig``.

Tasks: ``backbone``, ``mlm``, ``clm``. JunnYu/FLASHQuad_pytorch checkpoints load with
``convert.load_junnyu_checkpoint``.
See ``docs/architectures/flash.md``.
"""

from lmforge.models.flash.config import FLASH_PRESETS, FLASH_QUAD_PRESETS, FLASHConfig
from lmforge.models.flash.model import (
    FLASHModel,
    FLASHQuadModel,
    build_flash_clm,
    build_flash_mlm,
    build_quad_clm,
    build_quad_mlm,
    init_weights,
)
from lmforge.models.registry import register

register(
    "flash-quad",
    FLASHConfig,
    {"backbone": FLASHQuadModel, "mlm": build_quad_mlm, "clm": build_quad_clm},
    presets=FLASH_QUAD_PRESETS,
    description="FLASH-Quad: pre-norm GAU stack, relu^2 kernel with fixed n, Toeplitz bias, RoPE; MLM/CLM.",
)
register(
    "flash",
    FLASHConfig,
    {"backbone": FLASHModel, "mlm": build_flash_mlm, "clm": build_flash_clm},
    presets=FLASH_PRESETS,
    description="FLASH: GAU with mixed-chunk attention (quadratic in chunks, linear across), linear in length.",
)

__all__ = [
    "FLASH_PRESETS",
    "FLASH_QUAD_PRESETS",
    "FLASHConfig",
    "FLASHModel",
    "FLASHQuadModel",
    "build_flash_clm",
    "build_flash_mlm",
    "build_quad_clm",
    "build_quad_mlm",
    "init_weights",
]
