"""Held-out evaluation of language models: masked-LM accuracy, loss and perplexity, and sampled continuations.

- ``evaluate_lm``: token-weighted over the whole split (``sum(loss_b * n_b) / sum(n_b)`` with ``n_b`` the
  number of predicted positions of batch b: masked positions for MLM, shifted non-ignored targets for CLM), so
  the result does not depend on the batch size. Accuracy = argmax equals the label on those positions only
  (GAU-alpha's ``train.py`` metric). Under DDP/FSDP every rank evaluates its share and the sums are all-reduced.
- ``sample``: plain multinomial sampling with temperature and optional top-k, re-running the full forward for
  every new token (no KV cache: a colleague's generation module replaces it). A ``torch.Generator`` makes it
  reproducible and keeps the global RNG untouched, so evaluation never perturbs training (exact resume).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from lmforge.heads.lm import IGNORE_INDEX
from lmforge.train.distributed import all_reduce_sum

__all__ = ["count_predictions", "evaluate_lm", "sample"]


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
        correct, predicted = count_predictions(out.logits, batch["labels"], objective=objective)
        sums += torch.stack([out.loss.double() * predicted, correct.double(), predicted.double()])
    model.train(was_training)
    loss_sum, correct, predicted = all_reduce_sum(sums).tolist()
    loss = loss_sum / max(predicted, 1.0)
    return {
        "eval_loss": loss,
        "eval_accuracy": correct / max(predicted, 1.0),
        "eval_perplexity": math.exp(min(loss, 700.0)),
        "eval_predictions": int(predicted),
    }


@torch.no_grad()
def sample(
    model: nn.Module,
    prompt_ids: list[int],
    *,
    max_new_tokens: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    eos_token_id: int | None = None,
    max_context: int | None = None,
    device: torch.device | None = None,
) -> list[int]:
    """Continue ``prompt_ids`` by multinomial sampling; returns only the new tokens (stops after ``eos_token_id``)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    ids = list(prompt_ids)
    new: list[int] = []
    for _ in range(max_new_tokens):
        context = ids[-max_context:] if max_context else ids
        logits_V = model(torch.tensor([context], device=device)).logits[0, -1].float() / temperature
        if top_k is not None:
            threshold = torch.topk(logits_V, min(top_k, logits_V.numel())).values[-1]
            logits_V = logits_V.masked_fill(logits_V < threshold, float("-inf"))
        probs_V = torch.softmax(logits_V, dim=-1).cpu()
        token = int(torch.multinomial(probs_V, 1, generator=generator))
        ids.append(token)
        new.append(token)
        if token == eos_token_id:
            break
    model.train(was_training)
    return new
