"""Optimizers and schedules: parameter groups, LAMB against its equations, schedules as pure functions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lmforge
from lmforge.train.optim import Lamb, build_optimizer, lr_multiplier, make_schedule, param_groups, warmup_steps_for


def test_no_decay_on_biases_norms_and_vectors() -> None:
    model = lmforge.build_model("bert", task="mlm", preset="tiny")
    decay, exempt = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempted = {names[id(p)] for p in exempt["params"]}
    assert decay["weight_decay"] == 0.01 and exempt["weight_decay"] == 0.0
    assert decayed | exempted == set(names.values()) and not decayed & exempted
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all(not n.endswith("bias") and "norm" not in n for n in decayed)
    assert "backbone.embeddings.word_embeddings.weight" in decayed
    assert any("norm" in n and n.endswith("weight") for n in exempted)


def _lamb_reference(w, grads, *, lr, betas, eps, wd, bias_correction):
    """LAMB written out for one tensor (You et al. 2019, Algorithm 2)."""
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = (m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)) if bias_correction else (m, v)
        r = m_hat / (v_hat.sqrt() + eps) + wd * w
        w = w - lr * (w.norm() / r.norm()) * r
    return w


@pytest.mark.parametrize("bias_correction", [True, False])
def test_lamb_matches_its_equations(bias_correction: bool) -> None:
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    grads = [torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(4)]
    param = nn.Parameter(w0.clone())
    optimizer = Lamb([param], lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.01, bias_correction=bias_correction)
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
    expected = _lamb_reference(
        w0, grads, lr=0.01, betas=(0.9, 0.99), eps=1e-6, wd=0.01, bias_correction=bias_correction
    )
    torch.testing.assert_close(param.detach(), expected.float().double(), rtol=1e-5, atol=1e-6)


def test_lamb_without_layer_adaptation_is_adamw_like() -> None:
    param = nn.Parameter(torch.ones(4))
    optimizer = Lamb([{"params": [param], "layer_adaptation": False}], lr=0.1, bias_correction=True)
    param.grad = torch.full((4,), 2.0)
    optimizer.step()
    # first bias-corrected Adam step moves every coordinate by lr * sign(g)
    torch.testing.assert_close(param.detach(), torch.full((4,), 0.9), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["adamw_torch", "lamb", "adafactor"])
def test_every_optimizer_reduces_a_loss(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    optimizer = build_optimizer(model, name=name, lr=1e-2, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-6)
    first = None
    for _ in range(30):
        loss = nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < first


def test_unknown_optimizer_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(nn.Linear(2, 2), name="sgd", lr=1.0, weight_decay=0.0, betas=(0.9, 0.9), eps=1e-8)


def test_schedules_warm_up_then_decay() -> None:
    kw = dict(total_steps=110, warmup_steps=10)
    assert lr_multiplier(0, kind="linear", **kw) == 0.0
    assert lr_multiplier(5, kind="cosine", **kw) == 0.5
    assert lr_multiplier(10, kind="linear", **kw) == 1.0
    assert lr_multiplier(60, kind="linear", **kw) == pytest.approx(0.5)
    assert lr_multiplier(110, kind="linear", **kw) == 0.0
    assert lr_multiplier(60, kind="cosine", **kw) == pytest.approx(0.5)
    assert lr_multiplier(110, kind="cosine", min_lr_ratio=0.1, **kw) == pytest.approx(0.1)
    assert lr_multiplier(60, kind="cosine", min_lr_ratio=0.1, **kw) == pytest.approx(0.55)
    assert lr_multiplier(500, kind="constant", **kw) == 1.0


def test_piecewise_is_gau_alpha_interpolation() -> None:
    milestones = {0: 1.0, 160_000: 0.5, 640_000: 0.1, 1_280_000: 0.01}
    schedule = make_schedule("piecewise", total_steps=2_000_000, milestones=milestones)
    assert schedule(0) == 1.0
    assert schedule(80_000) == pytest.approx(0.75)
    assert schedule(160_000) == pytest.approx(0.5)
    assert schedule(400_000) == pytest.approx(0.3)
    assert schedule(2_000_000) == pytest.approx(0.01)


def test_schedules_are_pure_functions_of_step() -> None:
    schedule = make_schedule("cosine", total_steps=100, warmup_steps=7, min_lr_ratio=0.2)
    forward = [schedule(s) for s in range(100)]
    backward = [schedule(s) for s in reversed(range(100))][::-1]
    assert forward == backward and all(0.0 <= m <= 1.0 for m in forward)
    assert not math.isnan(sum(forward))


def test_warmup_ratio() -> None:
    assert warmup_steps_for(1000, warmup_steps=0, warmup_ratio=0.06) == 60
    assert warmup_steps_for(1000, warmup_steps=5, warmup_ratio=0.06) == 5


def test_unknown_schedule_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="lr_scheduler_type"):
        make_schedule("polynomial", total_steps=10)
