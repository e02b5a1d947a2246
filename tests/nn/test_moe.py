"""MoE feed-forward: dense equivalence, exact dispatch/combine, router losses, padding, shared experts, plugging
into an encoder, and loss collection."""

import math

import pytest
import torch
from torch import nn

import lmforge
from lmforge.nn.ffn import GLU, MLP
from lmforge.nn.moe import MoEFeedForward, pop_router_losses, route_top_k


class _Scale(nn.Module):
    """An 'expert' that is exact row by row (no matmul): dispatch/combine can then be checked bit for bit."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _naive_moe(moe: MoEFeedForward, x_ND: torch.Tensor) -> torch.Tensor:
    """Token-by-token reference: sum_k w_k * expert_{e_k}(x_n) in top-k order (+ shared)."""
    logits = x_ND.float() @ moe.router.weight.float().T
    weights, experts, _ = route_top_k(logits, top_k=moe.top_k, normalize_top_k=moe.normalize_top_k)
    rows = []
    for n in range(x_ND.shape[0]):
        y = torch.zeros_like(x_ND[n : n + 1])
        for k in range(moe.top_k):
            y = y + moe.experts[int(experts[n, k])](x_ND[n : n + 1]) * weights[n, k]
        rows.append(y)
    out = torch.cat(rows)
    return out if moe.shared is None else out + moe.shared(x_ND)


@pytest.mark.parametrize("glu", [True, False], ids=["swiglu", "mlp"])
def test_one_expert_top1_equals_the_dense_ffn(glu):
    moe = MoEFeedForward(16, 24, num_experts=1, top_k=1, glu=glu, activation="silu" if glu else "gelu_tanh")
    dense = GLU(16, 24, activation="silu") if glu else MLP(16, 24, activation="gelu_tanh", bias=False)
    dense.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(3, 5, 16)
    assert torch.equal(moe(x), dense(x))


@pytest.mark.parametrize("top_k", [1, 2])
def test_dispatch_and_combine_are_exact(top_k):
    moe = MoEFeedForward(8, 4, num_experts=4, top_k=top_k)
    moe.experts = nn.ModuleList(_Scale(float(e + 1)) for e in range(4))
    x = torch.randn(2, 9, 8)
    assert torch.equal(moe(x).reshape(-1, 8), _naive_moe(moe, x.reshape(-1, 8)))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("num_shared", [0, 2])
def test_matches_token_by_token_reference_with_real_experts(normalize, num_shared):
    moe = MoEFeedForward(16, 8, num_experts=5, top_k=3, num_shared_experts=num_shared, normalize_top_k=normalize)
    x = torch.randn(17, 16)
    torch.testing.assert_close(moe(x), _naive_moe(moe, x))
    if num_shared:
        assert moe.shared.up.out_features == num_shared * 8  # DeepSeek-MoE: shared experts fused into one FFN


def test_router_weights_and_selection():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 3.0, 0.0]])
    probs = torch.softmax(logits, -1)
    weights, experts, _ = route_top_k(logits, top_k=2, normalize_top_k=False)
    assert experts[0].tolist() == [0, 1] and experts[1, 0] == 2
    torch.testing.assert_close(weights[0], probs[0, :2])
    normalized, _, _ = route_top_k(logits, top_k=2, normalize_top_k=True)
    torch.testing.assert_close(normalized.sum(-1), torch.ones(2))


def test_balance_and_z_loss_against_hand_computed_values():
    # Uniform router: every P_e = 1/E and loads are equal -> balance loss exactly 1; z = log(E)^2.
    logits = torch.zeros(8, 4)
    logits[torch.arange(8), torch.arange(8) % 4] = 1e-3  # tie-break so each expert gets 2 tokens at k=1
    _, _, stats = route_top_k(logits, top_k=1, normalize_top_k=True)
    assert stats.balance_loss.item() == pytest.approx(1.0, abs=1e-3)
    assert stats.z_loss.item() == pytest.approx(math.log(4) ** 2, abs=1e-2)
    torch.testing.assert_close(stats.load_E, torch.full((4,), 0.25))
    # Collapsed router: every token sends all its probability to expert 0 -> balance loss E.
    collapsed = torch.tensor([[30.0, 0.0, 0.0, 0.0]]).repeat(6, 1)
    _, _, stats = route_top_k(collapsed, top_k=1, normalize_top_k=True)
    assert stats.balance_loss.item() == pytest.approx(4.0, rel=1e-4)
    assert stats.z_loss.item() == pytest.approx(30.0**2, rel=1e-4)


def test_padding_is_excluded_from_router_statistics():
    moe = MoEFeedForward(8, 4, num_experts=4, top_k=2)
    x = torch.randn(1, 10, 8)
    keep = torch.tensor([[True] * 6 + [False] * 4])
    out = moe(x, keep)
    padded_stats = moe.last_stats
    moe(x[:, :6])
    for a, b in zip(
        (padded_stats.balance_loss, padded_stats.z_loss, padded_stats.load_E),
        (moe.last_stats.balance_loss, moe.last_stats.z_loss, moe.last_stats.load_E),
    ):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(out[:, :6], moe(x[:, :6]))  # routing is per token: padding changes nothing else


def test_gradients_reach_router_and_every_used_expert():
    moe = MoEFeedForward(8, 4, num_experts=3, top_k=2, num_shared_experts=1)
    x = torch.randn(64, 8, requires_grad=True)
    out = moe(x)
    aux, _ = pop_router_losses(moe)
    (out.square().mean() + aux).backward()
    for name, p in moe.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_router_runs_in_fp32_under_bf16_autocast():
    moe = MoEFeedForward(8, 4, num_experts=4, top_k=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = moe(torch.randn(5, 8))
    assert out.dtype == torch.float32  # experts run in bf16; their weighted sum accumulates in the input dtype
    assert moe.last_stats.balance_loss.dtype == torch.float32 and moe.last_stats.z_loss.dtype == torch.float32


def test_pop_router_losses_averages_over_layers_and_clears():
    layers = nn.ModuleList(
        MoEFeedForward(8, 4, num_experts=4, top_k=2, balance_loss_weight=0.5, z_loss_weight=0.25) for _ in range(2)
    )
    x = torch.randn(12, 8)
    for layer in layers:
        layer(x)
    stats = [layer.last_stats for layer in layers]
    aux, metrics = pop_router_losses(layers)
    expected = sum(0.5 * s.balance_loss + 0.25 * s.z_loss for s in stats) / 2
    torch.testing.assert_close(aux, expected)
    assert set(metrics) == {"moe_balance_loss", "moe_z_loss", "moe_max_load"} and metrics["moe_max_load"] >= 1.0
    assert pop_router_losses(layers) == (None, {})  # cleared: a layer that did not run is not counted twice


def test_moe_ffn_drops_into_an_encoder_and_reaches_lmoutput():
    model = lmforge.build_model("bert", task="mlm", preset="tiny")
    layer = model.backbone.layers[0]
    layer.ffn = MoEFeedForward(32, 64, num_experts=4, top_k=2, glu=False, activation="gelu", bias=True)
    ids = torch.randint(5, 128, (2, 8))
    out = model(ids, labels=ids)
    assert out.aux_loss is not None and out.aux_loss.requires_grad and "moe_balance_loss" in out.metrics
    (out.loss + out.aux_loss).backward()
    assert layer.ffn.router.weight.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(num_experts=0), "num_experts"), (dict(top_k=5), "top_k"), (dict(num_shared_experts=-1), "num_shared")],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MoEFeedForward(8, 4, **({"num_experts": 4} | kwargs))
