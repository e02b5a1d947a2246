"""Hugging Face ``transformers`` integration: the only package that imports ``transformers``.

Importing ``lmforge.hf`` registers every lmforge architecture with ``AutoConfig``, ``AutoModel`` and the
``AutoModelFor{MaskedLM,CausalLM,SequenceClassification,TokenClassification,QuestionAnswering}`` classes
(``model_type = "lmforge-<arch>"``). ``lmforge.hf.export`` writes HF directories, ``lmforge.hf.remote`` the
self-contained code in them.
"""

from lmforge.hf.auto import register
from lmforge.hf.configuration import LmforgeConfig, config_class_for
from lmforge.hf.modeling import (
    LmforgeForCausalLM,
    LmforgeForMaskedLM,
    LmforgeForQuestionAnswering,
    LmforgeForSequenceClassification,
    LmforgeForTokenClassification,
    LmforgeModel,
    model_classes_for,
)

register()

__all__ = [
    "LmforgeConfig",
    "LmforgeForCausalLM",
    "LmforgeForMaskedLM",
    "LmforgeForQuestionAnswering",
    "LmforgeForSequenceClassification",
    "LmforgeForTokenClassification",
    "LmforgeModel",
    "config_class_for",
    "model_classes_for",
    "register",
]
