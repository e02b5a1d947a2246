"""Norms: formulas, parameter counts, and fp32 statistics under bf16 autocast."""

import math

import pytest
import torch

from lmforge.nn.norms import LayerNorm, RMSNorm, ScaleNorm


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_matches_torch(bias):
    ours, theirs = LayerNorm(16, eps=1e-5, bias=bias), torch.nn.LayerNorm(16, eps=1e-5, bias=bias)
    with torch.no_grad():
        ours.weight.normal_()
        theirs.weight.copy_(ours.weight)
        if bias:
            ours.bias.normal_()
            theirs.bias.copy_(ours.bias)
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(ours(x), theirs(x))
    assert sum(p.numel() for p in ours.parameters()) == (32 if bias else 16)


def test_rmsnorm_formula_and_parameter_free_variant():
    x = torch.randn(4, 8)
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
    expected = x / torch.sqrt(x.square().mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    plain = RMSNorm(8, eps=1e-6, elementwise_affine=False)
    assert list(plain.parameters()) == [] and plain.state_dict() == {}
    torch.testing.assert_close(plain(x), expected / norm.weight)


def test_scalenorm_formula():
    x = torch.randn(4, 9)
    norm = ScaleNorm(9)
    torch.testing.assert_close(norm.scale, torch.tensor([3.0]))  # init sqrt(d)
    torch.testing.assert_close(norm(x), 3.0 * x / x.norm(dim=-1, keepdim=True))
    assert ScaleNorm(9, init_scale=0.5).scale.item() == 0.5
    assert [p.numel() for p in norm.parameters()] == [1]
    torch.testing.assert_close(norm(torch.zeros(2, 9)), torch.zeros(2, 9))  # eps clamp: no NaN at x = 0


def _fp32_reference(norm, x):
    """The same formula evaluated in fp32 on the (already bf16-rounded) input, without autocast."""
    x32 = x.float()
    if isinstance(norm, LayerNorm):
        return torch.nn.functional.layer_norm(x32, (x.shape[-1],), norm.weight, norm.bias, norm.eps)
    if isinstance(norm, RMSNorm):
        return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight
    return norm.scale * x32 / torch.linalg.vector_norm(x32, dim=-1, keepdim=True)


@pytest.mark.parametrize("make", [lambda: LayerNorm(64), lambda: RMSNorm(64), lambda: ScaleNorm(64)])
def test_statistics_in_fp32_under_bf16_autocast(make):
    norm = make()
    # A large common offset makes bf16 statistics visibly wrong (mean/variance lose the small spread).
    x = (100.0 + torch.randn(4, 64)).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    assert out.dtype == torch.bfloat16
    expected = _fp32_reference(norm, x)
    # Same fp32 arithmetic, one final rounding: bit-identical. (bf16 arithmetic is off by up to 0.3 for LayerNorm.)
    assert torch.equal(out, expected.to(torch.bfloat16))


def test_fp32_input_stays_fp32_under_autocast():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert LayerNorm(8)(torch.randn(2, 8)).dtype == torch.float32


def test_norm_gradients_finite():
    for norm in (LayerNorm(8), LayerNorm(8, bias=False), RMSNorm(8), ScaleNorm(8)):
        x = torch.randn(3, 8, requires_grad=True)
        (norm(x) * torch.randn(3, 8)).sum().backward()
        assert torch.isfinite(x.grad).all()
        for p in norm.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
    assert math.isclose(ScaleNorm(4, eps=1e-5).eps, 1e-5)
