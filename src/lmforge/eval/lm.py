"""Held-out evaluation of language models: masked-LM accuracy, loss and perplexity.

- ``evaluate_lm``: token-weighted over the whole split (``sum(loss_b * n_b) / sum(n_b)`` with ``n_b`` the
  number of predicted positions of batch b: masked positions for MLM, shifted non-ignored targets for CLM), so
  the result does not depend on the batch size. Accuracy = argmax equals the label on those positions only
  (GAU-alpha's ``train.py`` metric). Under DDP/FSDP every rank evaluates its share and the sums are all-reduced.
Sampled continuations during CLM training come from ``lmforge.generation`` (KV cache, own ``torch.Generator``
so the global RNG, and with it exact resume, is untouched).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from lmforge.heads.lm import IGNORE_INDEX
from lmforge.train.distributed import all_reduce_sum

__all__ = ["count_output_predictions", "count_predictions", "evaluate_lm", "lm_metrics"]


def lm_metrics(loss_sum: float, correct: float, predicted: float, *, prefix: str = "") -> dict[str, float]:
    """Token-weighted loss, accuracy, perplexity and count from the sums over the predicted positions."""
    loss = loss_sum / max(predicted, 1.0)
    return {
        f"{prefix}loss": loss,
        f"{prefix}accuracy": correct / max(predicted, 1.0),
        f"{prefix}perplexity": math.exp(min(loss, 700.0)),
        f"{prefix}predictions": int(predicted),
    }


@torch.no_grad()
def count_predictions(logits_BTV: Tensor, labels_BT: Tensor, *, objective: str) -> tuple[Tensor, Tensor]:
    """``(correct, predicted)`` counts over the positions the loss is computed on (int64 scalars). ``logits``
    may also be ``(N, V)``: the labelled positions only (``LanguageModel(..., logits_at_labels_only=True)``)."""
    if logits_BTV.ndim == 2:
        labels_N = labels_BT[labels_BT != IGNORE_INDEX]
        return (logits_BTV.argmax(dim=-1) == labels_N).sum(), torch.tensor(labels_N.numel(), device=labels_N.device)
    if objective == "clm":
        logits_BTV, labels_BT = logits_BTV[:, :-1], labels_BT[:, 1:]
    counted = labels_BT != IGNORE_INDEX
    correct = (logits_BTV.argmax(dim=-1) == labels_BT) & counted
    return correct.sum(), counted.sum()


@torch.no_grad()
def count_output_predictions(out: Any, labels_BT: Tensor, *, objective: str) -> tuple[Tensor, Tensor]:
    """``count_predictions`` of a model output, or its own ``num_correct`` when its logits are not over the label
    space (CANINE predicts codepoints through hash buckets: an argmax over buckets is not a codepoint)."""
    if getattr(out, "num_correct", None) is not None:
        return out.num_correct.detach(), (labels_BT != IGNORE_INDEX).sum()
    return count_predictions(out.logits.detach(), labels_BT, objective=objective)


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    batches: Iterable[dict[str, Tensor]],
    *,
    objective: str,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, float]:
    """``eval_loss``, ``eval_accuracy``, ``eval_perplexity`` and ``eval_predictions`` over ``batches``."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast():
            out = model(**batch, logits_at_labels_only=objective == "mlm")
        correct, predicted = count_output_predictions(out, batch["labels"], objective=objective)
        sums += torch.stack([out.loss.double() * predicted, correct.double(), predicted.double()])
    model.train(was_training)
    return lm_metrics(*all_reduce_sum(sums).tolist(), prefix="eval_")
