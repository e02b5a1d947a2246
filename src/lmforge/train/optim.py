"""Optimizers and learning-rate schedules.

- ``param_groups``: weight decay only on >= 2-D weights; biases, norm parameters and every 1-D tensor are exempt
  (nanoGPT ``configure_optimizers``; HF ``Trainer.get_decay_parameter_names``). The exempt group is also exempt
  from LAMB's layer adaptation, as GAU-alpha's ``train.py`` does with ``exclude_from_layer_adaptation``.
- ``Lamb``: You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes"
  (arXiv 1904.00962, Algorithm 2), written here. ``bias_correction=False`` reproduces bert4keras' LAMB as used by
  GAU-alpha (lr 1.76e-3, weight decay 0.01). Trust ratio ``||w|| / ||update||`` with 1 when either norm is 0;
  no clamp of ``||w||`` (bert4keras has none; NVIDIA's apex clamps to [0, 10] -- a deliberate difference).
- AdamW and Adafactor are torch's (``torch.optim.AdamW``, ``torch.optim.Adafactor``; the latter has no
  ``scale_parameter``/``relative_step`` of HF's Adafactor: the learning rate is ours, as with any optimizer).
- Layer-wise learning-rate decay for fine-tuning (``layerwise_lr_groups``): every group carries an ``lr_scale``
  that ``set_learning_rate`` multiplies in.
- Schedules are pure functions ``step -> multiplier`` of the peak learning rate (nothing to checkpoint but the
  step). Convention as HF's ``LambdaLR`` schedules: the update with 0-based index ``step`` uses
  ``lr * multiplier(step)``, so the first warm-up update has lr 0. Piecewise is bert4keras ``piecewise_linear``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable
from functools import partial

import torch
from torch import nn

__all__ = [
    "Lamb",
    "build_optimizer",
    "layerwise_lr_groups",
    "lr_multiplier",
    "make_schedule",
    "param_groups",
    "set_learning_rate",
    "warmup_steps_for",
]


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed >= 2-D weights, and biases/norm parameters/1-D tensors (no decay, no LAMB adaptation)."""
    decay: list[nn.Parameter] = []
    exempt: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            no_decay = param.ndim < 2 or name == "bias" or _is_norm(module)
            (exempt if no_decay else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "layer_adaptation": True},
        {"params": exempt, "weight_decay": 0.0, "layer_adaptation": False},
    ]


class Lamb(torch.optim.Optimizer):
    """LAMB: Adam moments, decoupled weight decay, and a per-tensor trust ratio.

    ``update = m_hat / (sqrt(v_hat) + eps) + weight_decay * w``;
    ``w -= lr * (||w|| / ||update||) * update`` (trust ratio 1 for groups with ``layer_adaptation=False``).
    """

    def __init__(
        self,
        params: Iterable,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        bias_correction: bool = True,
    ):
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid LAMB hyper-parameters lr={lr}, betas={betas}, eps={eps}, wd={weight_decay}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            layer_adaptation=True,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad.float()
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(param, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(param, dtype=torch.float32)
                state["step"] += 1
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m_hat, v_hat = exp_avg, exp_avg_sq
                if group["bias_correction"]:
                    t = state["step"].item()
                    m_hat = exp_avg / (1 - beta1**t)
                    v_hat = exp_avg_sq / (1 - beta2**t)
                weight = param.float()
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update.add(weight, alpha=group["weight_decay"])
                if group["layer_adaptation"]:  # a tensor, not .item(): no host sync on GPU
                    weight_norm, update_norm = weight.norm(), update.norm()
                    usable = (weight_norm > 0) & (update_norm > 0)
                    update = update * torch.where(usable, weight_norm / update_norm, torch.ones_like(weight_norm))
                param.add_(update.to(param.dtype), alpha=-group["lr"])
        return loss


def build_optimizer(
    model: nn.Module,
    *,
    name: str,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float,
    lamb_bias_correction: bool = True,
    layerwise_lr_decay: float = 1.0,
) -> torch.optim.Optimizer:
    """The optimizer called ``name`` (HF ``--optim`` names) over ``param_groups(model, weight_decay)``, split by
    depth with ``lr_scale`` when ``layerwise_lr_decay < 1`` (``layerwise_lr_groups``)."""
    groups = param_groups(model, weight_decay)
    if layerwise_lr_decay != 1.0:
        groups = layerwise_lr_groups(model, groups, decay=layerwise_lr_decay)
    if name in ("adamw_torch", "adamw", "adamw_torch_fused"):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=name == "adamw_torch_fused" or None)
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=eps, bias_correction=lamb_bias_correction)
    if name == "adafactor":
        return torch.optim.Adafactor(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose from adamw_torch, adamw_torch_fused, lamb, adafactor")


def warmup_steps_for(total_steps: int, *, warmup_steps: int, warmup_ratio: float) -> int:
    """``warmup_steps`` if > 0, else ``ceil(warmup_ratio * total_steps)`` (HF ``get_warmup_steps``)."""
    return warmup_steps if warmup_steps > 0 else math.ceil(warmup_ratio * total_steps)


def _piecewise_linear(step: int, milestones: dict[int, float]) -> float:
    points = sorted(milestones.items())
    if step <= points[0][0]:
        return points[0][1]
    for (s0, m0), (s1, m1) in itertools.pairwise(points):
        if step < s1:
            return m0 + (m1 - m0) * (step - s0) / (s1 - s0)
    return points[-1][1]


def lr_multiplier(
    step: int,
    *,
    kind: str,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
    milestones: dict[int, float] | None = None,
) -> float:
    """Multiplier of the peak learning rate for the update with 0-based index ``step``.

    Warm-up (all kinds): linear ``step / warmup_steps``. After it: ``constant`` 1; ``linear`` and ``cosine`` decay
    from 1 at the end of warm-up to ``min_lr_ratio`` at ``total_steps``; ``piecewise`` interpolates ``milestones``
    (multiplied by the warm-up factor while warming up, since GAU-alpha's milestones start at step 0).
    """
    warm = step / warmup_steps if step < warmup_steps else 1.0
    if kind in ("constant", "constant_with_warmup"):
        return warm
    if kind == "piecewise":
        if not milestones:
            raise ValueError("the piecewise schedule needs milestones {step: multiplier}")
        return warm * _piecewise_linear(step, milestones)
    if step < warmup_steps:
        return warm
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "linear":
        return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress)
    if kind == "cosine":
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr_scheduler_type {kind!r}; choose from constant, linear, cosine, piecewise")


def make_schedule(
    kind: str,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
    milestones: dict[int, float] | None = None,
) -> Callable[[int], float]:
    """``lr_multiplier`` with everything but the step bound; validates the kind once, up front."""
    schedule = partial(
        lr_multiplier,
        kind=kind,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        min_lr_ratio=min_lr_ratio,
        milestones={int(k): float(v) for k, v in (milestones or {}).items()},
    )
    schedule(0)
    return schedule


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set every group to ``lr`` times its ``lr_scale`` (1 unless layer-wise decay made the groups)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr


_LAYER_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layerwise_lr_groups(model: nn.Module, groups: list[dict], *, decay: float) -> list[dict]:
    """Layer-wise learning-rate decay (ELECTRA, Clark et al. 2020; BEiT): ``lr_scale = decay ** (L + 1 - depth)``
    with depth 0 for embeddings (names containing ``embed``), ``i + 1`` for ``layers.i``, ``L`` for the rest of the
    backbone (final norm) and ``L + 1`` (scale 1) for everything outside ``backbone.`` (the task head). Each group
    of ``groups`` is split by depth and keeps its other settings."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layerwise_lr_decay must be in (0, 1], got {decay}")
    names = {id(p): n for n, p in model.named_parameters()}
    indices = [int(m.group(1)) for n in names.values() if (m := _LAYER_INDEX.search(n))]
    num_layers = max(indices) + 1 if indices else 0
    has_backbone = any(n.startswith("backbone.") for n in names.values())

    def depth(name: str) -> int:
        if has_backbone and not name.startswith("backbone."):
            return num_layers + 1
        if match := _LAYER_INDEX.search(name):
            return int(match.group(1)) + 1
        return 0 if "embed" in name else num_layers

    out = []
    for group in groups:
        by_depth: dict[int, list[nn.Parameter]] = {}
        for param in group["params"]:
            by_depth.setdefault(depth(names[id(param)]), []).append(param)
        for d, params in sorted(by_depth.items()):
            out.append({**group, "params": params, "lr_scale": decay ** (num_layers + 1 - d)})
    return out
