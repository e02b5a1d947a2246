"""What the architecture packages share: the encoder backbone skeleton and the MLM/CLM builder.

Every encoder-style backbone here is ``embeddings -> layers -> optional final norm``, each layer called as
``layer(x, keep)``; ``EncoderStack`` holds that loop once and the architectures fill in the parts (and, where the
attention wants another mask shape, ``keep_mask``). ``build_language_model`` is the ``mlm``/``clm`` builder
pattern of the registry: an MLM needs a bidirectional config, a CLM forces ``is_decoder`` on.

Hidden states (``output_hidden_states=True``, HF's convention, used by ``lmforge inspect``): the backbone returns
``(hidden, states)`` with ``states = (embeddings output, after layer 1, ..., after layer L)``, L + 1 tensors, the
last one *after* the final norm when there is one, so ``states[-1]`` is always the plain output (HF GPT-2 does the
same with ``ln_f``). A "layer" is one residual block of ``self.layers``: a BERT/GPT block (attention + FFN), one
GAU (GAU-alpha, FLASH-Quad) or one mixed-chunk GAU (FLASH). Reformer and CANINE document theirs in their files.

Gradient checkpointing (``--gradient_checkpointing``; Chen et al. 2016, HF ``gradient_checkpointing_enable``): every
backbone has a ``gradient_checkpointing`` attribute (False) and calls its layers through ``checkpointed``; when it
is on and autograd records, a layer keeps only its input and recomputes its activations in backward
(``torch.utils.checkpoint``, non-reentrant, the RNG state replayed: the same dropout masks and LSH rotations, so
the loss and gradients equal those without it). ``set_gradient_checkpointing`` switches every backbone in a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lmforge.heads.lm import HeadNorm, LanguageModel, MaskedLMHead

__all__ = [
    "EncoderStack",
    "bert_prediction_head",
    "build_language_model",
    "checkpointed",
    "param_pairs",
    "raise_on_mismatch",
    "set_gradient_checkpointing",
]


def checkpointed(function: Callable[..., Any], *args: Any, enabled: bool, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``; with ``enabled`` and autograd recording, its activations are recomputed in
    backward instead of kept (non-reentrant ``torch.utils.checkpoint``, RNG state preserved)."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(function, *args, use_reentrant=False, **kwargs)
    return function(*args, **kwargs)


def set_gradient_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Switch gradient checkpointing on every module of ``model`` that has it (the backbones); returns how many.
    ``ValueError`` if none has it (a model built outside the registry)."""
    found = [module for module in model.modules() if hasattr(module, "gradient_checkpointing")]
    if not found:
        raise ValueError(f"{type(model).__name__} has no gradient checkpointing (no backbone of the registry in it)")
    for module in found:
        module.gradient_checkpointing = enabled
    return len(found)


class EncoderStack(nn.Module):
    """``forward(input_ids, attention_mask, token_type_ids) -> hidden (B, T, D)``.

    Subclasses set ``self.embeddings`` (called as ``embeddings(input_ids, token_type_ids)``, exposing
    ``word_embeddings``), ``self.layers`` and optionally ``self.final_norm``.
    """

    def __init__(self):
        super().__init__()
        self.final_norm: nn.Module | None = None  # an instance attribute: a class default would hide the module
        self.gradient_checkpointing = False

    def keep_mask(self, attention_mask: Tensor) -> Tensor:
        """The mask handed to every layer: (B, T) booleans, True = a real token."""
        return attention_mask.bool()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        """``hidden (B, T, D)``, or ``(hidden, states)`` with ``output_hidden_states`` (L + 1 tensors (B, T, D))."""
        keep = None if attention_mask is None else self.keep_mask(attention_mask)
        x_BTD = self.embeddings(input_ids, token_type_ids)
        states = [x_BTD] if output_hidden_states else None
        for layer in self.layers:
            x_BTD = checkpointed(layer, x_BTD, keep, enabled=self.gradient_checkpointing)
            if states is not None:
                states.append(x_BTD)
        if self.final_norm is not None:
            x_BTD = self.final_norm(x_BTD)
        if states is None:
            return x_BTD
        states[-1] = x_BTD  # after the final norm: the last state is the output
        return x_BTD, tuple(states)


def build_language_model(
    cfg: Any,
    backbone_class: Callable[[Any], nn.Module],
    make_head: Callable[[Any, nn.Module], nn.Module],
    objective: Literal["mlm", "clm"],
) -> LanguageModel:
    """Backbone + head for ``objective``; a CLM gets ``is_decoder=True``, an MLM refuses a causal config."""
    if objective == "clm":
        cfg = dataclasses.replace(cfg, is_decoder=True)
    elif cfg.is_decoder:
        raise ValueError(
            f"the {objective} builder needs a bidirectional encoder (is_decoder=False); use build_clm (task 'clm')"
        )
    backbone = backbone_class(cfg)
    return LanguageModel(backbone, make_head(cfg, backbone), objective=objective)


def param_pairs(
    ours: str, theirs: str, names: Mapping[str, str], params: Iterable[str] = ("weight", "bias")
) -> list[tuple[str, str]]:
    """``(our key, their key)`` for each module pair of ``names`` (our suffix -> theirs) and each parameter."""
    return [(f"{ours}.{mine}.{p}", f"{theirs}.{other}.{p}") for p in params for mine, other in names.items()]


def raise_on_mismatch(missing: Iterable[str], unknown: Iterable[str], what: str) -> None:
    """One ``ValueError`` listing every missing and unknown key of a conversion, or nothing."""
    missing, unknown = sorted(missing), sorted(unknown)
    if missing or unknown:
        raise ValueError(f"cannot convert {what}: missing keys {missing}; unknown keys {unknown}")


def bert_prediction_head(
    cfg: Any, backbone: nn.Module, *, norm: HeadNorm = "layernorm", tied: bool = True
) -> MaskedLMHead:
    """BERT's MLM head (dense, ``cfg.hidden_act``, norm with ``cfg.layer_norm_eps``, decoder with bias), its decoder
    tied to the backbone's word embeddings unless ``tied=False``; the caller initialises it."""
    return MaskedLMHead(
        cfg.hidden_size,
        cfg.vocab_size,
        transform=True,
        activation=cfg.hidden_act,
        norm=norm,
        norm_eps=cfg.layer_norm_eps,
        bias=True,
        tied_embedding=backbone.get_input_embeddings() if tied else None,
    )
