"""``transformers`` wrappers around lmforge models, one per task.

``Lmforge<Arch>For{MaskedLM,CausalLM,SequenceClassification,TokenClassification,QuestionAnswering}`` and
``Lmforge<Arch>Model`` (the backbone) hold ``self.model``: our ``LanguageModel``, our ``TaskModel`` (backbone + the
head described by ``config.lmforge_head``) or the bare backbone, and return HF output classes, so any registered
architecture works with the ``Auto*`` classes and pipelines. Weights are saved under ``model.<our key>``; the
backbone is ``model.backbone.*`` in every class, so ``AutoModel`` loads the backbone of any of these exports.

Two ways in: after ``import lmforge.hf`` (``lmforge.hf.auto.register``), or without lmforge through the remote
code of an exported directory, which ``lmforge.hf.remote`` bundles from this very file and the lmforge modules it
needs (so this file imports only torch, transformers, ``lmforge.heads.*`` and ``lmforge.hf.*`` helpers that the
bundler knows).

Deviations: ``_init_weights`` is a no-op (our builders initialise, R10; HF re-initialising would overwrite them);
no KV cache, so ``generate`` re-runs the whole prefix every token; a span head gives padding -inf start/end logits.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutput,
    CausalLMOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from lmforge.heads.classification import SequenceClassificationHead, TaskModel, backbone_output_size
from lmforge.heads.qa import SpanHead
from lmforge.heads.token_classification import TokenClassificationHead
from lmforge.hf.architectures import build_lmforge_model
from lmforge.hf.configuration import LmforgeConfig, config_class_for

__all__ = [
    "HEAD_KINDS",
    "MODEL_CLASS_SUFFIXES",
    "LmforgeForCausalLM",
    "LmforgeForMaskedLM",
    "LmforgeForQuestionAnswering",
    "LmforgeForSequenceClassification",
    "LmforgeForTokenClassification",
    "LmforgeModel",
    "LmforgePreTrainedModel",
    "build_task_head",
    "model_classes_for",
]

HEAD_KINDS = ("sequence_classification", "token_classification", "span")
# task -> class name suffix (also the HF Auto class: Auto + "Model" + suffix, "Model" for the backbone)
MODEL_CLASS_SUFFIXES = {
    "backbone": "Model",
    "mlm": "ForMaskedLM",
    "clm": "ForCausalLM",
    "sequence_classification": "ForSequenceClassification",
    "token_classification": "ForTokenClassification",
    "span": "ForQuestionAnswering",
}


def build_task_head(head: dict[str, Any], hidden_size: int) -> nn.Module:
    """The head of a fine-tuned checkpoint's ``"head"`` entry (kind, labels, pooling, dropout; the export adds
    ``use_pooler`` and ``hidden_size``, the width of the backbone output it reads)."""
    kind = head["kind"]
    if kind == "sequence_classification":
        return SequenceClassificationHead(
            hidden_size,
            len(head["labels"]),
            pooling=head["pooling"],
            use_pooler=head.get("use_pooler", False),
            dropout=head["dropout"],
        )
    if kind == "token_classification":
        return TokenClassificationHead(hidden_size, len(head["labels"]), dropout=head["dropout"])
    if kind == "span":
        return SpanHead(hidden_size, dropout=head.get("dropout", 0.0))
    raise ValueError(f"unknown head kind {kind!r}; choose from {list(HEAD_KINDS)}")


class _Backbone(nn.Module):
    """The bare backbone under the name ``backbone``, so its keys match the other wrappers' ``model.backbone.*``."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def forward(self, input_ids: Tensor, **kwargs: Any) -> Any:
        return self.backbone(input_ids, **kwargs)


def _build(config: LmforgeConfig, task: str) -> nn.Module:
    if config.lmforge_model is None:
        raise ValueError("this config names no lmforge architecture (lmforge_model is None)")
    arch, fields = config.lmforge_model, config.lmforge_config
    if task in ("mlm", "clm"):
        return build_lmforge_model(arch, task, fields)
    backbone = build_lmforge_model(arch, "backbone", fields)
    if task == "backbone":
        return _Backbone(backbone)
    head = config.lmforge_head
    if head is None or head["kind"] != task:
        raise ValueError(f"this config has no {task} head (lmforge_head is {head!r})")
    # the width is stored at export: measuring it runs the backbone, which transformers' meta-device init cannot
    width = head.get("hidden_size") or backbone_output_size(backbone)
    return TaskModel(backbone, build_task_head(head, width))


class LmforgePreTrainedModel(PreTrainedModel):
    config_class = LmforgeConfig
    base_model_prefix = "model"
    _task = "backbone"

    def __init__(self, config: LmforgeConfig):
        super().__init__(config)
        self.model = _build(config, self._task)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        pass  # the lmforge builder initialised everything

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def _run(self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None,
             output_hidden_states: bool | None, **targets: Tensor | None) -> Any:  # fmt: skip
        extra = {"output_hidden_states": True} if output_hidden_states else {}
        return self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **targets, **extra)


class LmforgeModel(LmforgePreTrainedModel):
    _task = "backbone"

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                output_hidden_states: bool | None = None, **kwargs: Any) -> BaseModelOutput:  # fmt: skip
        out = self._run(input_ids, attention_mask, token_type_ids, output_hidden_states)
        hidden, states = out if output_hidden_states else (out, None)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=states)


class LmforgeForMaskedLM(LmforgePreTrainedModel):
    _task = "mlm"

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, output_hidden_states: bool | None = None,
                **kwargs: Any) -> MaskedLMOutput:  # fmt: skip
        out = self._run(input_ids, attention_mask, token_type_ids, output_hidden_states, labels=labels)
        return MaskedLMOutput(loss=out.loss, logits=out.logits, hidden_states=out.all_hidden_states)


class LmforgeForCausalLM(LmforgePreTrainedModel, GenerationMixin):
    _task = "clm"

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, output_hidden_states: bool | None = None,
                **kwargs: Any) -> CausalLMOutput:  # fmt: skip
        out = self._run(input_ids, attention_mask, token_type_ids, output_hidden_states, labels=labels)
        return CausalLMOutput(loss=out.loss, logits=out.logits, hidden_states=out.all_hidden_states)


class LmforgeForSequenceClassification(LmforgePreTrainedModel):
    _task = "sequence_classification"

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, output_hidden_states: bool | None = None,
                **kwargs: Any) -> SequenceClassifierOutput:  # fmt: skip
        out = self._run(input_ids, attention_mask, token_type_ids, output_hidden_states, labels=labels)
        return SequenceClassifierOutput(loss=out.loss, logits=out.logits, hidden_states=out.all_hidden_states)


class LmforgeForTokenClassification(LmforgePreTrainedModel):
    _task = "token_classification"

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, output_hidden_states: bool | None = None,
                **kwargs: Any) -> TokenClassifierOutput:  # fmt: skip
        out = self._run(input_ids, attention_mask, token_type_ids, output_hidden_states, labels=labels)
        return TokenClassifierOutput(loss=out.loss, logits=out.logits, hidden_states=out.all_hidden_states)


class LmforgeForQuestionAnswering(LmforgePreTrainedModel):
    _task = "span"

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                start_positions: Tensor | None = None, end_positions: Tensor | None = None,
                output_hidden_states: bool | None = None, **kwargs: Any) -> QuestionAnsweringModelOutput:  # fmt: skip
        out = self._run(input_ids, attention_mask, token_type_ids, output_hidden_states,
                        start_positions=start_positions, end_positions=end_positions)  # fmt: skip
        start_BT, end_BT = out.logits.unbind(dim=-1)
        return QuestionAnsweringModelOutput(loss=out.loss, start_logits=start_BT, end_logits=end_BT,
                                            hidden_states=out.all_hidden_states)  # fmt: skip


_BASES: dict[str, type[LmforgePreTrainedModel]] = {
    "backbone": LmforgeModel,
    "mlm": LmforgeForMaskedLM,
    "clm": LmforgeForCausalLM,
    "sequence_classification": LmforgeForSequenceClassification,
    "token_classification": LmforgeForTokenClassification,
    "span": LmforgeForQuestionAnswering,
}
_MODEL_CLASSES: dict[tuple[str, str], type[LmforgePreTrainedModel]] = {}


def model_classes_for(arch: str) -> dict[str, type[LmforgePreTrainedModel]]:
    """``{task: class}`` for every task of ``MODEL_CLASS_SUFFIXES``, bound to the config class of ``arch``
    (``Lmforge<Arch>ForMaskedLM``, ...; cached)."""
    config_class = config_class_for(arch)
    prefix = config_class.__name__.removesuffix("Config")
    for task, base in _BASES.items():
        if (arch, task) not in _MODEL_CLASSES:
            attrs = {"config_class": config_class, "__module__": __name__}
            _MODEL_CLASSES[(arch, task)] = type(prefix + MODEL_CLASS_SUFFIXES[task], (base,), attrs)
    return {task: _MODEL_CLASSES[(arch, task)] for task in _BASES}
