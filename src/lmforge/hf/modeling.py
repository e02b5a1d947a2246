"""``transformers`` wrappers around lmforge models, and their registration with the ``Auto*`` classes.

``LmforgeForMaskedLM`` / ``LmforgeForCausalLM`` hold ``self.model = build_model(arch, task=..., config=...)``
and return HF output classes, so any registered architecture (also those without an HF twin, such as GAU-alpha)
works with ``AutoModelForMaskedLM.from_pretrained`` and ``pipeline("fill-mask")`` after ``import lmforge.hf``.
Weights are saved under ``model.<our key>``. Architectures that do have an HF twin (``bert``) are exported as the
twin instead (``lmforge.hf.export``), so they load without lmforge at all.

Deviations: ``_init_weights`` is a no-op (our builders initialise, R10; HF re-initialising would overwrite them);
no KV cache, so ``generate`` re-runs the whole prefix every token.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput

from lmforge.hf.configuration import LmforgeConfig, config_class_for
from lmforge.models.registry import build_model, config_from_dict, list_models

__all__ = ["LmforgeForCausalLM", "LmforgeForMaskedLM", "model_classes_for", "register"]


class _LmforgePreTrainedModel(PreTrainedModel):
    config_class = LmforgeConfig
    base_model_prefix = "model"
    _task = "mlm"

    def __init__(self, config: LmforgeConfig):
        super().__init__(config)
        if config.lmforge_model is None:
            raise ValueError("this config names no lmforge architecture (lmforge_model is None)")
        ours = config_from_dict(config.lmforge_model, config.lmforge_config)
        self.model = build_model(config.lmforge_model, task=self._task, config=ours)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        pass  # the lmforge builder initialised everything

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput | CausalLMOutput:
        out = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels)
        return self._output_class(loss=out.loss, logits=out.logits)


class LmforgeForMaskedLM(_LmforgePreTrainedModel):
    _task = "mlm"
    _output_class = MaskedLMOutput


class LmforgeForCausalLM(_LmforgePreTrainedModel, GenerationMixin):
    _task = "clm"
    _output_class = CausalLMOutput


_MODEL_CLASSES: dict[tuple[str, str], type[_LmforgePreTrainedModel]] = {}


def model_classes_for(arch: str) -> dict[str, type[_LmforgePreTrainedModel]]:
    """``{"mlm": class, "clm": class}`` bound to the config class of ``arch`` (cached)."""
    config_class = config_class_for(arch)
    prefix = config_class.__name__.removesuffix("Config")
    out = {}
    for task, base in (("mlm", LmforgeForMaskedLM), ("clm", LmforgeForCausalLM)):
        if (arch, task) not in _MODEL_CLASSES:
            name = f"{prefix}For{'MaskedLM' if task == 'mlm' else 'CausalLM'}"
            attrs = {"config_class": config_class, "__module__": __name__}
            _MODEL_CLASSES[(arch, task)] = type(name, (base,), attrs)
        out[task] = _MODEL_CLASSES[(arch, task)]
    return out


_REGISTERED: set[str] = set()


def register() -> None:
    """Register every lmforge architecture with ``AutoConfig``/``AutoModelForMaskedLM``/``AutoModelForCausalLM``."""
    for arch, entry in list_models().items():
        if arch in _REGISTERED:
            continue
        config_class = config_class_for(arch)
        classes = model_classes_for(arch)
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        if "mlm" in entry.builders:
            AutoModelForMaskedLM.register(config_class, classes["mlm"], exist_ok=True)
        if "clm" in entry.builders:
            AutoModelForCausalLM.register(config_class, classes["clm"], exist_ok=True)
        _REGISTERED.add(arch)
