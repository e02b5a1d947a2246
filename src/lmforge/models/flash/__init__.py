"""FLASH-Quad (``"flash-quad"``) and FLASH (``"flash"``), Hua et al. 2022; one shared ``FLASHConfig``.

Tasks: ``backbone``, ``mlm``, ``clm``. JunnYu/FLASHQuad_pytorch checkpoints load with
``convert.load_junnyu_checkpoint``.
See ``docs/architectures/flash.md``.
"""

from lmforge.models.flash import model
from lmforge.models.flash.config import FLASH_PRESETS, FLASH_QUAD_PRESETS, FLASHConfig
from lmforge.models.flash.model import FLASHModel, FLASHQuadModel, init_weights
from lmforge.models.registry import register

_FLASH_QUAD_DESCRIPTION = "FLASH-Quad: pre-norm GAU stack, relu^2 kernel with fixed n, Toeplitz bias, RoPE; MLM/CLM."
_FLASH_QUAD_TASKS = {"backbone": FLASHQuadModel, "mlm": model.build_quad_mlm, "clm": model.build_quad_clm}
register("flash-quad", FLASHConfig, _FLASH_QUAD_TASKS, presets=FLASH_QUAD_PRESETS, description=_FLASH_QUAD_DESCRIPTION)
_FLASH_DESCRIPTION = "FLASH: GAU with mixed-chunk attention (quadratic in chunks, linear across), linear in length."
_FLASH_TASKS = {"backbone": FLASHModel, "mlm": model.build_flash_mlm, "clm": model.build_flash_clm}
register("flash", FLASHConfig, _FLASH_TASKS, presets=FLASH_PRESETS, description=_FLASH_DESCRIPTION)

__all__ = ["FLASH_PRESETS", "FLASH_QUAD_PRESETS", "FLASHConfig", "FLASHModel", "FLASHQuadModel", "init_weights"]
