"""Language-model heads over backbone hidden states, their losses, and the ``LanguageModel`` wrapper.

Contract (used by the training loop and every architecture): a backbone has
``forward(input_ids, attention_mask=None, token_type_ids=None) -> hidden (B, T, D)``,
``get_input_embeddings() -> nn.Embedding`` and a ``config`` attribute (its dataclass). A head maps hidden
states to logits; ``LanguageModel`` joins the two and computes the loss of its objective when labels are given.
A causal backbone may also take ``past_key_values``, ``use_cache`` and ``position_ids`` (keyword-only; then it
returns ``(hidden, past_key_values)`` when ``use_cache``), which ``lmforge.generation`` uses for KV-cached decoding.
Every registered backbone also takes ``output_hidden_states`` (keyword-only): it then returns ``(hidden, states)``
(``(hidden, past_key_values, states)`` with ``use_cache``), ``states`` the per-layer tuple (``models/common.py``).
Auxiliary losses of MoE feed-forward blocks anywhere in the backbone reach ``LMOutput.aux_loss``/``metrics``
through ``lmforge.nn.moe.pop_router_losses``.

References: BERT MLM head (google-research/bert ``get_masked_lm_output``; HF ``BertLMPredictionHead``):
dense + activation + LayerNorm, then the decoder tied to the word embeddings plus an output bias. GAU-alpha/
RoFormerV2 (bert4keras ``with_mlm='linear'``): no transform, tied, no bias. CLM: labels are the inputs, shifted
inside the loss (HF ``run_clm.py``/``GPT2LMHeadModel``).

Deviations and choices:
- A tied head keeps a *reference* to the embedding module instead of registering it, so the weight appears once
  in ``state_dict`` (under the backbone) and safetensors never sees shared tensors; the wrapper owns both.
- Losses are computed in fp32 (R6). With no target at all (every label -100) the loss is 0, not NaN (HF's
  ``mean`` reduction gives NaN and poisons a gradient-accumulation step); accuracy is 0 in that case.

Legend: B batch, T tokens, D hidden width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.ffn import get_activation
from lmforge.nn.moe import pop_router_losses
from lmforge.nn.norms import LayerNorm, ScaleNorm, upcast

__all__ = [
    "IGNORE_INDEX",
    "CausalLMHead",
    "LMDecoder",
    "LMOutput",
    "LanguageModel",
    "MaskedLMHead",
    "clm_loss",
    "masked_accuracy",
    "mlm_loss",
]

IGNORE_INDEX = -100
HeadNorm = Literal["layernorm", "scalenorm", "none"]


@dataclass
class LMOutput:
    loss: Tensor | None
    logits: Tensor  # (B, T, V)
    hidden_states: Tensor  # (B, T, D), the backbone output
    aux_loss: Tensor | None = None  # weighted auxiliary losses (MoE routers); the loop adds it to ``loss``
    past_key_values: list | None = None  # per-layer KV cache when ``use_cache=True``
    metrics: dict[str, Tensor] = field(default_factory=dict)  # detached extras to log (MoE load balance)
    # Correct predictions among the labelled positions, for heads whose logits are not over the label space
    # (CANINE's hash buckets): accuracy then comes from here instead of ``logits.argmax() == labels``.
    num_correct: Tensor | None = None
    # Per-layer hidden states with ``output_hidden_states=True`` (HF's ``hidden_states`` tuple: embeddings output,
    # then each layer's; the last equals ``hidden_states`` above), else None.
    all_hidden_states: tuple[Tensor, ...] | None = None


class LMDecoder(nn.Module):
    """``hidden @ W^T + b`` with W either the tied embedding table (not registered here) or an own weight."""

    def __init__(self, hidden_size: int, vocab_size: int, *, bias: bool, tied_embedding: nn.Embedding | None):
        super().__init__()
        if tied_embedding is not None and tuple(tied_embedding.weight.shape) != (vocab_size, hidden_size):
            raise ValueError(
                f"tied embedding is {tuple(tied_embedding.weight.shape)}, expected ({vocab_size}, {hidden_size})"
            )
        self._tied = (tied_embedding,) if tied_embedding is not None else None  # a tuple: not a submodule
        self.weight = None if tied_embedding is not None else nn.Parameter(torch.empty(vocab_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None
        if self.weight is not None:
            nn.init.normal_(self.weight, std=0.02)  # placeholder; models re-initialise in init_weights

    @property
    def is_tied(self) -> bool:
        return self._tied is not None

    @property
    def output_weight(self) -> Tensor:
        """The ``(V, D)`` matrix the decoder multiplies by: the tied embedding table or its own weight."""
        return self._tied[0].weight if self._tied is not None else self.weight

    def extra_repr(self) -> str:
        return f"tied={self.is_tied}, bias={self.bias is not None}"

    def forward(self, x_BTD: Tensor) -> Tensor:
        return F.linear(x_BTD, self.output_weight, self.bias)


class MaskedLMHead(nn.Module):
    """BERT-style prediction head: optional transform (dense, activation, norm), then the (tied) decoder.

    Parameters: ``dense``/``norm`` (transform only), ``decoder.weight`` (untied only), ``decoder.bias``.
    Usable for either objective: HF's ``BertLMHeadModel`` puts this same head on a causal BERT.
    """

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        *,
        transform: bool,
        activation: str = "gelu",
        norm: HeadNorm = "layernorm",
        norm_eps: float = 1e-12,
        bias: bool = True,
        tied_embedding: nn.Embedding | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if norm not in ("layernorm", "scalenorm", "none"):
            raise ValueError(f"norm must be 'layernorm', 'scalenorm' or 'none', got {norm!r}")
        self.transform = transform
        if transform:
            self.activation_name = activation
            self.activation = get_activation(activation)
            self.dense = nn.Linear(hidden_size, hidden_size)
            if norm == "layernorm":
                self.norm = LayerNorm(hidden_size, eps=norm_eps)
            elif norm == "scalenorm":
                self.norm = ScaleNorm(hidden_size, eps=norm_eps)
            else:
                self.norm = None
        self.dropout = nn.Dropout(dropout)
        self.decoder = LMDecoder(hidden_size, vocab_size, bias=bias, tied_embedding=tied_embedding)

    def forward(self, hidden_BTD: Tensor) -> Tensor:
        x_BTD = hidden_BTD
        if self.transform:
            x_BTD = self.activation(self.dense(x_BTD))
            if self.norm is not None:
                x_BTD = self.norm(x_BTD)
        return self.decoder(self.dropout(x_BTD))  # (B, T, V)


class CausalLMHead(nn.Module):
    """``logits = hidden @ W^T (+ b)``; W tied to the input embeddings when ``tied_embedding`` is given."""

    def __init__(
        self, hidden_size: int, vocab_size: int, *, bias: bool = False, tied_embedding: nn.Embedding | None = None
    ):
        super().__init__()
        self.decoder = LMDecoder(hidden_size, vocab_size, bias=bias, tied_embedding=tied_embedding)

    def forward(self, hidden_BTD: Tensor) -> Tensor:
        return self.decoder(hidden_BTD)


def _token_cross_entropy(logits_NV: Tensor, labels_N: Tensor) -> Tensor:
    # Sum / count instead of mean: no targets -> 0 (not NaN).
    total = F.cross_entropy(upcast(logits_NV), labels_N, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels_N != IGNORE_INDEX).sum().clamp(min=1)


def mlm_loss(logits_BTV: Tensor, labels_BT: Tensor) -> Tensor:
    """Mean cross-entropy over positions whose label is not -100."""
    return _token_cross_entropy(logits_BTV.flatten(0, -2), labels_BT.flatten())


def clm_loss(logits_BTV: Tensor, labels_BT: Tensor) -> Tensor:
    """Next-token cross-entropy: logits at t predict ``labels[t + 1]``; labels -100 are ignored.

    The labels are shifted (the last position gets -100), not the logits: slicing ``logits[:, :-1]`` copies the
    whole (B, T, V) tensor and its gradient (~10% of a small model's CPU training step; HF ``ForCausalLMLoss``).
    """
    shifted_BT = F.pad(labels_BT[:, 1:], (0, 1), value=IGNORE_INDEX)
    return _token_cross_entropy(logits_BTV.flatten(0, -2), shifted_BT.flatten())


@torch.no_grad()
def masked_accuracy(logits_BTV: Tensor, labels_BT: Tensor, *, shift: bool = False) -> Tensor:
    """Fraction of non-ignored positions whose argmax equals the label (``shift=True`` for CLM targets)."""
    if shift:
        logits_BTV, labels_BT = logits_BTV[:, :-1], labels_BT[:, 1:]
    counted = labels_BT != IGNORE_INDEX
    correct = (logits_BTV.argmax(dim=-1) == labels_BT) & counted
    return correct.sum().float() / counted.sum().clamp(min=1)


class LanguageModel(nn.Module):
    """Backbone + LM head + objective. ``forward(...) -> LMOutput`` with the loss when ``labels`` is given."""

    def __init__(self, backbone: nn.Module, head: nn.Module, *, objective: Literal["mlm", "clm"]):
        super().__init__()
        if objective not in ("mlm", "clm"):
            raise ValueError(f"objective must be 'mlm' or 'clm', got {objective!r}")
        self.backbone, self.head, self.objective = backbone, head, objective

    @property
    def config(self):
        return self.backbone.config

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.get_input_embeddings()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        past_key_values: list | None = None,
        use_cache: bool = False,
        position_ids: Tensor | None = None,
        logits_at_labels_only: bool = False,
        output_hidden_states: bool = False,
    ) -> LMOutput:
        """The keyword-only cache arguments are passed on only when set, so backbones without a KV cache keep the
        plain contract; with ``use_cache`` the backbone returns ``(hidden, past_key_values)``.

        ``logits_at_labels_only`` (MLM with labels; the training loop's setting): the head runs only on the
        positions that have a label, and ``logits`` is ``(N, V)`` in row-major order of those positions. The loss is
        the same; the decoder over the vocabulary, most of a small model's FLOPs, shrinks to the ~15% masked rows.
        """
        cache_args = {}
        if use_cache or past_key_values is not None or position_ids is not None:
            cache_args = dict(past_key_values=past_key_values, use_cache=use_cache, position_ids=position_ids)
        if output_hidden_states:  # passed only when set: a backbone without the switch keeps the plain contract
            cache_args["output_hidden_states"] = True
        out = self.backbone(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **cache_args)
        if output_hidden_states:
            hidden_BTD, presents, states = out if use_cache else (out[0], None, out[1])
        else:
            (hidden_BTD, presents), states = (out if use_cache else (out, None)), None
        aux_loss, metrics = pop_router_losses(self.backbone)  # (None, {}) without MoE blocks
        loss = None
        if logits_at_labels_only and labels is not None and self.objective == "mlm":
            labelled_BT = labels != IGNORE_INDEX
            logits_BTV = self.head(hidden_BTD[labelled_BT])  # (N, V): the head is position-wise
            loss = _token_cross_entropy(logits_BTV, labels[labelled_BT])
        else:
            logits_BTV = self.head(hidden_BTD)
            if labels is not None:
                loss = mlm_loss(logits_BTV, labels) if self.objective == "mlm" else clm_loss(logits_BTV, labels)
        return LMOutput(
            loss=loss,
            logits=logits_BTV,
            hidden_states=hidden_BTD,
            aux_loss=aux_loss,
            past_key_values=presents,
            metrics=metrics,
            all_hidden_states=states,
        )

    def extra_repr(self) -> str:
        return f"objective={self.objective!r}"
