"""Our models as ``transformers``' own classes, where one computes exactly what ours does.

``to_native(model, arch, task, head)`` returns the HF model (weights loaded) or ``(None, reason)``. Language
models go to the twin that the architecture's converter names (``BertForMaskedLM``, ``RoFormerForCausalLM``,
``GPT2LMHeadModel``, ``ReformerForMaskedLM``, ...). Fine-tuned task models go to the class of ``NATIVE_HEADS``
for the twin's ``model_type`` and the head kind; the backbone weights go through the production converter
(``to_hf_state_dict`` of the architecture's language model, keeping only the backbone's keys), the head's map
one to one. A sequence classifier is native only where HF computes our head exactly: BERT's pooler is our
``cls`` pooling + tanh pooler; RoFormer's head uses ``hidden_act`` instead of tanh, Reformer's pooler narrows to
``hidden_size``, GPT-2's ``score`` has no bias and finds the last token through ``pad_token_id`` and CANINE's
classifier sits on its backbone's own pooler, so those (and mean pooling, or no pooler) export as remote code.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import transformers
from torch import Tensor, nn
from transformers import AutoConfig, PreTrainedModel

from lmforge.models.registry import build_model, get_entry

__all__ = ["NATIVE_HEADS", "to_native"]

# HF model_type -> (the backbone's key prefix in HF task classes, {head kind: class}); an LM twin exists for the
# model types of _LM_TWINS (CANINE's converter maps the bare backbone: HF has no CANINE LM head).
NATIVE_HEADS: dict[str, tuple[str, dict[str, str]]] = {
    "bert": ("bert", {"sequence_classification": "BertForSequenceClassification",
                      "token_classification": "BertForTokenClassification", "span": "BertForQuestionAnswering"}),
    "roformer": ("roformer", {"token_classification": "RoFormerForTokenClassification",
                              "span": "RoFormerForQuestionAnswering"}),
    "gpt2": ("transformer", {"token_classification": "GPT2ForTokenClassification", "span": "GPT2ForQuestionAnswering"}),
    "canine": ("canine", {"token_classification": "CanineForTokenClassification",
                          "span": "CanineForQuestionAnswering"}),
    "reformer": ("reformer", {"span": "ReformerForQuestionAnswering"}),
}  # fmt: skip
_LM_TWINS = ("bert", "roformer", "gpt2", "reformer")


def _converter(arch: str) -> ModuleType | None:
    try:
        module = importlib.import_module(f"lmforge.models.{arch}.convert")
    except ModuleNotFoundError:
        return None
    return module if hasattr(module, "to_hf_config") and hasattr(module, "to_hf_state_dict") else None


def _head_state(head: nn.Module, kind: str, prefix: str) -> dict[str, Tensor]:
    if kind == "span":
        return {f"qa_outputs.{p}": t for p, t in head.qa_outputs.state_dict().items()}
    state = {f"classifier.{p}": t for p, t in head.classifier.state_dict().items()}
    if kind == "sequence_classification":
        state |= {f"{prefix}.pooler.dense.{p}": t for p, t in head.pooler.state_dict().items()}
    return state


def _backbone_state(arch: str, converter: ModuleType, config: Any, model_type: str, model: nn.Module) -> dict:
    """HF keys of the backbone (``<prefix>.*``) through the production converter."""
    prefix = NATIVE_HEADS[model_type][0]
    ours = model.backbone.state_dict()
    if model_type not in _LM_TWINS:  # the converter maps the bare backbone (CANINE)
        return {f"{prefix}.{k}": v for k, v in converter.to_hf_state_dict(ours, config).items()}
    builders = get_entry(arch).builders
    lm_task = "clm" if "mlm" not in builders or getattr(config, "is_decoder", False) else "mlm"
    lm_state = build_model(arch, task=lm_task, config=config).state_dict()  # its head keys: the converter's contract
    lm_state |= {f"backbone.{k}": v for k, v in ours.items()}
    hf = converter.to_hf_state_dict(lm_state, config)
    return {k: v for k, v in hf.items() if k.startswith(f"{prefix}.")}


def to_native(
    model: nn.Module, arch: str, task: str, head: dict[str, Any] | None
) -> tuple[PreTrainedModel | None, str]:
    """``(HF model with our weights, its class name)``, or ``(None, why not)`` when no HF class is exact."""
    converter = _converter(arch)
    if converter is None:
        return None, f"architecture {arch!r} has no Hugging Face twin"
    try:
        fields = dict(converter.to_hf_config(model.config))
    except ValueError as error:  # the converter refuses options HF lacks (GPT-2 with RoPE, BERT without segments)
        return None, str(error)
    model_type = fields["model_type"]
    if head is None:
        if model_type not in _LM_TWINS:
            return None, f"Hugging Face has no {task} class for {model_type!r}"
        hf_class, state = fields["architectures"][0], converter.to_hf_state_dict(model.state_dict(), model.config)
    else:
        kind = head["kind"]
        prefix, classes = NATIVE_HEADS.get(model_type, ("", {}))
        hf_class = classes.get(kind)
        if hf_class is None:
            return None, f"Hugging Face has no {kind} class for {model_type!r} that computes our head"
        if kind == "sequence_classification" and (head["pooling"] != "cls" or not head.get("use_pooler")):
            return None, f"{hf_class} is [CLS] + tanh pooler; this head pools {head['pooling']!r} " + (
                "with a pooler" if head.get("use_pooler") else "without a pooler"
            )
        state = _backbone_state(arch, converter, model.config, model_type, model) | _head_state(
            model.head, kind, prefix
        )
        labels = [str(label) for label in head.get("labels", ())]
        if labels:
            fields |= {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                       "label2id": {label: i for i, label in enumerate(labels)}}  # fmt: skip
        if kind == "sequence_classification":
            fields["problem_type"] = "regression" if len(labels) == 1 else "single_label_classification"
        fields["classifier_dropout"] = head.get("dropout")
    fields["architectures"] = [hf_class]
    hf_model = getattr(transformers, hf_class)(AutoConfig.for_model(**fields))
    hf_model.load_state_dict(state, strict=True)
    return hf_model.eval(), hf_class
