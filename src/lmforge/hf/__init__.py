"""Hugging Face ``transformers`` integration: the only package that imports ``transformers``.

Importing ``lmforge.hf`` registers every lmforge architecture with ``AutoConfig``, ``AutoModelForMaskedLM`` and
``AutoModelForCausalLM`` (``model_type = "lmforge-<arch>"``). ``lmforge.hf.export`` writes HF directories.
"""

from lmforge.hf.configuration import LmforgeConfig, config_class_for
from lmforge.hf.modeling import LmforgeForCausalLM, LmforgeForMaskedLM, model_classes_for, register

register()

__all__ = [
    "LmforgeConfig",
    "LmforgeForCausalLM",
    "LmforgeForMaskedLM",
    "config_class_for",
    "model_classes_for",
    "register",
]
