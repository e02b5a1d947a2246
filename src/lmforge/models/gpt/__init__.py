"""GPT-2 and its modern variants (RoPE, RMSNorm, SwiGLU, no bias, untied head, GQA, MoE), registered as ``"gpt"``.

``lmforge.build_model("gpt", task="clm", preset="small")`` is GPT-2 124M; ``preset="tiny-modern"`` switches every
modern option on. Tasks: ``backbone``, ``clm``. Generation: ``lmforge.generation``. See ``docs/architectures/gpt.md``.
"""

from lmforge.models.gpt.config import PRESETS, GPTConfig
from lmforge.models.gpt.model import GPTBlock, GPTModel, build_clm, init_weights
from lmforge.models.registry import register

_GPT_DESCRIPTION = "GPT-2 (pre-LN, learned positions, tied head) with RoPE/RMSNorm/SwiGLU/GQA/MoE switches; causal LM."
register("gpt", GPTConfig, {"backbone": GPTModel, "clm": build_clm}, presets=PRESETS, description=_GPT_DESCRIPTION)

__all__ = ["PRESETS", "GPTBlock", "GPTConfig", "GPTModel", "build_clm", "init_weights"]
