"""Reversible residual layers: gradients equal stored activations (dropout replayed, state reused), gradcheck,
inference path, autocast; chunked application equals unchunked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lmforge.nn.dropout import FastDropout, fast_dropout
from lmforge.nn.ffn import apply_chunked
from lmforge.nn.reversible import reversible_layers, sequential_layers
from tolerances import TOL


class _F(nn.Module):
    """An ``f`` with dropout and a random draw kept in ``state`` (the role of LSH buckets)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.linear, self.dropout = nn.Linear(dim, dim), nn.Dropout(dropout)
        self.calls, self.fresh = 0, True

    def forward(self, x, *, state, scale=1.0):
        self.calls += 1
        if "noise" not in state:
            seed = self.calls if self.fresh else 0  # fresh: a new draw per call unless state is reused
            state["noise"] = torch.randn(x.shape[-1], generator=torch.Generator().manual_seed(seed))
        return self.dropout(torch.tanh(self.linear(x)) * scale + state["noise"])


class _G(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.linear, self.dropout = nn.Linear(dim, dim), nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(torch.relu(self.linear(x)))


def _layers(dim=8, depth=3, dropout=0.2, dtype=torch.float32):
    torch.manual_seed(0)
    modules = nn.ModuleList(nn.ModuleList([_F(dim, dropout), _G(dim, dropout)]) for _ in range(depth)).to(dtype)
    return modules, [(f, g) for f, g in modules]


def _grads(run, modules, layers, x):
    modules.zero_grad(set_to_none=True)
    for f, _ in layers:
        f.calls = 0  # the same "noise" draws in every run
    x = x.clone().requires_grad_()
    torch.manual_seed(123)  # the dropout masks
    y1, y2 = run(x, x, layers, scale=0.5)
    ((y1 * torch.arange(8)).sum() + (y2**2).sum()).backward()
    return y1.detach(), y2.detach(), x.grad, [p.grad.clone() for p in modules.parameters()]


def test_reversible_gradients_equal_stored_activations_with_dropout_and_state() -> None:
    modules, layers = _layers()
    x = torch.randn(2, 5, 8)
    stored = _grads(sequential_layers, modules, layers, x)
    reversible = _grads(reversible_layers, modules, layers, x)
    # outputs identical (same dropout masks), gradients equal up to the reconstruction's rounding
    torch.testing.assert_close(reversible[0], stored[0], rtol=0, atol=0)
    torch.testing.assert_close(reversible[1], stored[1], rtol=0, atol=0)
    torch.testing.assert_close(reversible[2], stored[2], **TOL["batched_fp32_reshaped"])
    for got, want in zip(reversible[3], stored[3]):
        torch.testing.assert_close(got, want, **TOL["batched_fp32_reshaped"])
    assert all(f.calls == 2 for f, _ in layers)  # forward + recomputation, "noise" drawn once (reused)


def test_reversible_function_gradcheck_float64() -> None:
    _, layers = _layers(dropout=0.0, dtype=torch.float64)
    for f, _ in layers:
        f.fresh = False  # gradcheck calls forward many times
    x1 = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: reversible_layers(a, b, layers), (x1, x2))


def test_without_grad_nothing_is_recorded_and_outputs_match() -> None:
    _, layers = _layers(dropout=0.0)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        got = reversible_layers(x, x, layers)
    for f, _ in layers:
        f.calls = 0
    want = sequential_layers(x, x, layers)
    assert got[0].grad_fn is None and got[1].grad_fn is None
    torch.testing.assert_close(got[0], want[0].detach(), rtol=0, atol=0)
    torch.testing.assert_close(got[1], want[1].detach(), rtol=0, atol=0)


def test_reversible_backward_under_bf16_autocast_matches_stored() -> None:
    modules, layers = _layers(dropout=0.0)
    x = torch.randn(2, 5, 8)
    results = []
    for run in (sequential_layers, reversible_layers):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(_grads(run, modules, layers, x))
    for got, want in zip(results[1][3], results[0][3]):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=5e-2, atol=5e-2)  # bf16 reconstruction error


@pytest.mark.parametrize("chunk", [0, 2, 3, 7, 100])
def test_apply_chunked_equals_unchunked(chunk: int) -> None:
    layer = nn.Linear(4, 6)
    x = torch.randn(2, 7, 4)
    torch.testing.assert_close(apply_chunked(layer, x, chunk, dim=1), layer(x), **TOL["kernel_fp32"])


def test_fast_dropout_rate_scale_and_modes() -> None:
    x = torch.ones(400_000)
    out = fast_dropout(x, 0.1)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - 6554 / 65536) < 5 * (0.1 * 0.9 / x.numel()) ** 0.5  # binomial bound, quantised rate
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 65536 / (65536 - 6554)))
    assert fast_dropout(x, 0.1, training=False) is x and fast_dropout(x, 0.0) is x
    torch.manual_seed(3)
    a = fast_dropout(torch.ones(7, 5), 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, fast_dropout(torch.ones(7, 5), 0.5)) and a.shape == (7, 5)
    with pytest.raises(ValueError, match="dropout probability"):
        FastDropout(1.0)
