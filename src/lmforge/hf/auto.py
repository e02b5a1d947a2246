"""Registration of every lmforge architecture with the ``transformers`` ``Auto*`` classes.

After ``import lmforge.hf`` (which calls ``register``), ``AutoConfig`` knows ``model_type = "lmforge-<arch>"`` and
``AutoModel``, ``AutoModelForMaskedLM``/``CausalLM`` (where the architecture has that objective) and
``AutoModelFor{SequenceClassification,TokenClassification,QuestionAnswering}`` load its exports without
``trust_remote_code``.
"""

from __future__ import annotations

import transformers

from lmforge.hf.configuration import config_class_for
from lmforge.hf.modeling import MODEL_CLASS_SUFFIXES, model_classes_for
from lmforge.models.registry import list_models

__all__ = ["auto_class_name", "register"]

_REGISTERED: set[str] = set()


def auto_class_name(task: str) -> str:
    """The ``transformers`` Auto class of a wrapper task: ``AutoModelForMaskedLM``, ..., ``AutoModel``."""
    suffix = MODEL_CLASS_SUFFIXES[task]
    return "AutoModel" if suffix == "Model" else f"AutoModel{suffix}"


def register() -> None:
    """Register every lmforge architecture with ``AutoConfig`` and the ``AutoModel*`` classes of its tasks."""
    for arch, entry in list_models().items():
        if arch in _REGISTERED:
            continue
        config_class = config_class_for(arch)
        transformers.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for task, model_class in model_classes_for(arch).items():
            if task in ("mlm", "clm") and task not in entry.builders:
                continue
            getattr(transformers, auto_class_name(task)).register(config_class, model_class, exist_ok=True)
        _REGISTERED.add(arch)
