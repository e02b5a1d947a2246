"""GAU-alpha (ZhuiyiTechnology/GAU-alpha), registered as ``"gau-alpha"``. Tasks: ``backbone``, ``mlm``, ``clm``.

``lmforge.build_model("gau-alpha", task="mlm", preset="small")``; JunnYu/GAU-alpha-pytorch checkpoints load with
``convert.load_junnyu_checkpoint(DIR)``. See ``docs/architectures/gau-alpha.md``.
"""

from lmforge.models.gau_alpha.config import PRESETS, GAUAlphaConfig
from lmforge.models.gau_alpha.model import GAUAlphaModel, build_clm, build_mlm, init_weights
from lmforge.models.registry import register

_GAU_ALPHA_DESCRIPTION = "GAU-alpha: post-norm encoder of gated attention units (softmax_plus, RoPE), no FFN; MLM/CLM."
_GAU_ALPHA_TASKS = {"backbone": GAUAlphaModel, "mlm": build_mlm, "clm": build_clm}
register("gau-alpha", GAUAlphaConfig, _GAU_ALPHA_TASKS, presets=PRESETS, description=_GAU_ALPHA_DESCRIPTION)

__all__ = ["PRESETS", "GAUAlphaConfig", "GAUAlphaModel", "build_clm", "build_mlm", "init_weights"]
