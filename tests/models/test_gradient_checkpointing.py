"""Gradient checkpointing (``--gradient_checkpointing``) changes memory, not maths: for every architecture and LM
objective, the loss and every gradient equal those without it (<= 1e-6), dropout on (the RNG state is replayed in
the recomputation), and it saves activation memory."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lmforge.bench.flops import sample_ids
from lmforge.bench.speed import saved_bytes
from lmforge.models.common import set_gradient_checkpointing
from lmforge.models.registry import build_model, get_config, list_models

# (architecture, objective, config overrides): every registered LM builder, plus the variants that take another
# code path (Reformer without reversible layers: the only one where checkpointing recomputes; GPT with experts)
CASES = [(name, task, {}) for name, entry in list_models().items() for task in ("mlm", "clm") if task in entry.builders]
CASES += [("reformer", "clm", {"use_reversible": False}), ("gpt", "clm", {"num_experts": 4, "num_experts_per_tok": 2})]


def _dropout_on(name: str, overrides: dict) -> dict:
    fields = {f.name for f in dataclasses.fields(get_config(name, preset="tiny"))}
    dropouts = [f for f in fields if "dropout" in f or f.endswith("pdrop")]
    return {**{f: 0.1 for f in dropouts}, **overrides}


def _loss_and_grads(name: str, task: str, overrides: dict, *, checkpointing: bool):
    torch.manual_seed(0)
    model = build_model(name, task=task, preset="tiny", **_dropout_on(name, overrides)).train()
    if checkpointing:
        assert set_gradient_checkpointing(model) >= 1
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(2)  # the dropout masks (and LSH rotations) of the forward
    ids = sample_ids(model.config, (2, 32))
    labels = ids.clone()
    if task == "mlm":
        labels[torch.rand(ids.shape, generator=generator) > 0.3] = -100
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("name", "task", "overrides"), CASES, ids=lambda v: str(v) if not isinstance(v, dict) else "")
def test_same_loss_and_gradients_as_without(name: str, task: str, overrides: dict) -> None:
    loss, grads = _loss_and_grads(name, task, overrides, checkpointing=False)
    loss_ckpt, grads_ckpt = _loss_and_grads(name, task, overrides, checkpointing=True)
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=1e-6)
    assert grads_ckpt.keys() == grads.keys() and grads
    for key in grads:
        torch.testing.assert_close(grads_ckpt[key], grads[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", ["bert", "gpt", "gau-alpha", "flash", "canine"])
def test_it_saves_activation_memory(name: str) -> None:
    torch.manual_seed(0)
    backbone = build_model(name, preset="tiny", num_hidden_layers=4).train()
    ids = sample_ids(backbone.config, (2, 64))

    def step() -> None:
        backbone(ids).square().mean().backward()

    off = saved_bytes(step)
    set_gradient_checkpointing(backbone)
    on = saved_bytes(step)
    assert on < 0.6 * off, (on, off)


def test_a_model_without_a_backbone_is_an_error() -> None:
    with pytest.raises(ValueError, match="no gradient checkpointing"):
        set_gradient_checkpointing(torch.nn.Linear(2, 2))
