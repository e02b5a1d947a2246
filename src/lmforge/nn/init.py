"""Weight-initialisation helpers, one place, each with its source. Models call them from their own
``init_weights(model, cfg)`` (R10); blocks never re-initialise themselves.

References:
- ``normal_``: BERT, N(0, initializer_range=0.02) for weights and embeddings (google-research/bert
  ``modeling.py`` ``create_initializer`` uses a truncated normal; HF ``BertPreTrainedModel._init_weights`` uses a
  plain normal, which we follow so HF parity checkpoints start from the same distribution).
- ``trunc_normal_``: truncated at +-2 standard deviations, as Keras ``TruncatedNormal`` / TF
  ``truncated_normal``. Trap avoided: ``torch.nn.init.trunc_normal_`` truncates at the *absolute* values a=-2, b=2,
  which does nothing for std=0.02.
- ``gpt2_residual_std``: GPT-2 (Radford et al. 2019, section 2.3) scales residual-branch output projections by
  1/sqrt(N) with N = 2 residual layers per block; nanoGPT: ``std=0.02/math.sqrt(2 * config.n_layer)`` on
  ``c_proj.weight``.
- ``roformerv2_std``: bojone/bert4keras ``RoFormerV2.initializer``:
  ``1.13684723 / sqrt(fan) * num_layers ** (-1 / order)`` for a 2-sigma truncated normal (order 2 by default,
  GAU-alpha passes order=3). 1.13684723 = 1 / 0.87962566, the std of a standard normal truncated at +-2, so the
  *effective* std is ``1 / sqrt(fan) * L ** (-1/order)`` (DeepNet-style depth scaling). bert4keras takes
  ``fan = shape[0]`` of the Keras kernel (input width) unless ``shape[0] > 10000 or < 10`` (embedding tables,
  tiny inputs), where it takes ``shape[1]``; ``keras_fan`` reproduces that rule.

Deviations: none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "TRUNC_NORMAL_STD_CORRECTION",
    "InitRule",
    "apply_init_",
    "gpt2_residual_std",
    "init_dense_",
    "init_embedding_",
    "init_norm_",
    "keras_fan",
    "normal_",
    "roformerv2_std",
    "trunc_normal_",
    "zeros_",
]

# std of N(0, 1) truncated to [-2, 2] is 0.87962566; bert4keras multiplies by its inverse.
TRUNC_NORMAL_STD_CORRECTION = 1.13684723


@torch.no_grad()
def normal_(tensor: Tensor, *, std: float, mean: float = 0.0) -> Tensor:
    """In-place N(mean, std**2)."""
    return tensor.normal_(mean=mean, std=std)


@torch.no_grad()
def trunc_normal_(tensor: Tensor, *, std: float, num_std: float = 2.0) -> Tensor:
    """In-place N(0, std**2) truncated to ``[-num_std * std, num_std * std]`` (Keras ``TruncatedNormal``)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-num_std * std, b=num_std * std)


@torch.no_grad()
def zeros_(tensor: Tensor) -> Tensor:
    return tensor.zero_()


def gpt2_residual_std(std: float, *, num_layers: int) -> float:
    """GPT-2 / nanoGPT std for residual output projections: ``std / sqrt(2 * num_layers)``."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    return std / math.sqrt(2 * num_layers)


def keras_fan(keras_shape: tuple[int, ...] | torch.Size) -> int:
    """bert4keras' fan for a weight given in *Keras* order: ``(in, out)`` for a dense kernel (a torch
    ``nn.Linear.weight.T``), ``(vocab, dim)`` for an embedding table (same as torch)."""
    first, second = keras_shape[0], keras_shape[1]
    return second if first > 10_000 or first < 10 else first


def roformerv2_std(fan: int, *, num_layers: int, order: int = 2) -> float:
    """bert4keras RoFormerV2 truncated-normal std: ``1.13684723 / sqrt(fan) * num_layers ** (-1 / order)``.

    Use with ``trunc_normal_(w, std=roformerv2_std(...))``; GAU-alpha uses ``order=3``.
    """
    if fan < 1 or num_layers < 1:
        raise ValueError(f"fan and num_layers must be >= 1, got fan={fan}, num_layers={num_layers}")
    return TRUNC_NORMAL_STD_CORRECTION / math.sqrt(fan) * num_layers ** (-1.0 / order)


# Rules for ``apply_init_``: (module types, function called on each module of those types).
InitRule = tuple[type | tuple[type, ...], Callable[[nn.Module], object]]


@torch.no_grad()
def init_dense_(module: nn.Module, *, std: float) -> None:
    """A dense map (``nn.Linear``, an untied LM decoder): weight N(0, std**2) when it has one, bias 0."""
    if getattr(module, "weight", None) is not None:
        normal_(module.weight, std=std)
    if getattr(module, "bias", None) is not None:
        zeros_(module.bias)


@torch.no_grad()
def init_embedding_(module: nn.Embedding, *, std: float) -> None:
    """An embedding table N(0, std**2) with its padding row zeroed (HF ``_init_weights``)."""
    normal_(module.weight, std=std)
    if module.padding_idx is not None:
        zeros_(module.weight[module.padding_idx])


@torch.no_grad()
def init_norm_(module: nn.Module) -> None:
    """A norm's gain 1 and bias 0, whichever of the two it has."""
    if getattr(module, "weight", None) is not None:
        nn.init.ones_(module.weight)
    if getattr(module, "bias", None) is not None:
        zeros_(module.bias)


def apply_init_(model: nn.Module, rules: Sequence[InitRule]) -> None:
    """Initialise every module under ``model`` with the first rule whose types match it (others are left as built)."""
    for module in model.modules():
        for kinds, init in rules:
            if isinstance(module, kinds):
                init(module)
                break
