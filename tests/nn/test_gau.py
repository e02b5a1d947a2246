"""GAU block: normalisers against the formulas, padding invariance (the 1/n trap), causality, the Toeplitz bias,
token shift, gradients, and parity with lucidrains/FLASH-pytorch ``GAU`` where the conventions agree."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch import nn

from lmforge.nn.gau import (
    GatedAttentionUnit,
    ReLUSquaredKernel,
    ScaleOffset,
    SoftmaxPlus,
    SquaredReLU,
    ToeplitzRelativeBias,
    relu_squared_kernel,
    softmax_plus,
    squared_relu,
    token_shift,
)
from lmforge.nn.positions import RotaryEmbedding, T5RelativePositionBias
from tolerances import TOL

D, E, K = 16, 24, 8


def _gau(normalizer: nn.Module, *, causal: bool = False, bias: bool = True, relative: bool = True) -> nn.Module:
    gau = GatedAttentionUnit(
        D,
        expansion=E,
        key_size=K,
        normalizer=normalizer,
        bias=bias,
        rope=RotaryEmbedding(K, pairing="interleaved"),
        relative_bias=ToeplitzRelativeBias(16) if relative else None,
        causal=causal,
    )
    with torch.no_grad():
        for p in gau.parameters():
            p.normal_(0.0, 0.5)  # large enough that masking mistakes would show
    return gau.eval()


NORMALIZERS = {
    "softmax_plus": lambda: SoftmaxPlus(K),
    "softmax_plus_clamp16": lambda: SoftmaxPlus(K, min_length=16),
    "squared_relu": lambda: SquaredReLU(K),
    "kernel_valid_n": lambda: ReLUSquaredKernel(K, length=None),
    "kernel_fixed_n": lambda: ReLUSquaredKernel(K, length=512),
}


def test_normalizers_match_the_formulas_per_example() -> None:
    scores = torch.randn(2, 5, 7, dtype=torch.float64)
    keep = torch.ones(2, 1, 7, dtype=torch.bool)
    keep[1, :, 4:] = False  # example 1 has 4 valid keys
    bias = torch.randn(5, 7, dtype=torch.float64)
    for b, n in ((0, 7), (1, 4)):
        a = scores[b, :, :n]
        expected = torch.softmax(a * math.log(n) / math.log(512), dim=-1)
        torch.testing.assert_close(softmax_plus(scores, keep)[b, :, :n], expected)
        torch.testing.assert_close(squared_relu(scores, keep)[b, :, :n], torch.relu(a) ** 2 / n)
        torch.testing.assert_close(
            relu_squared_kernel(scores, keep, length=None, bias_TS=bias)[b, :, :n], torch.relu(a / n + bias[:, :n]) ** 2
        )
        torch.testing.assert_close(
            relu_squared_kernel(scores, keep, length=512, bias_TS=bias)[b, :, :n],
            torch.relu(a / 512 + bias[:, :n]) ** 2,
        )
    # masked keys get exactly zero weight, even when relu(bias) > 0 (mask after the activation)
    assert relu_squared_kernel(scores, keep, length=None, bias_TS=bias.abs() + 1)[1, :, 4:].abs().max() == 0
    assert softmax_plus(scores, keep)[1, :, 4:].abs().max() == 0


def test_softmax_plus_clamp_only_changes_short_rows() -> None:
    scores = torch.randn(1, 3, 20, dtype=torch.float64)
    short = torch.zeros(1, 1, 20, dtype=torch.bool)
    short[..., :5] = True
    long_ = torch.ones(1, 1, 20, dtype=torch.bool)
    torch.testing.assert_close(softmax_plus(scores, long_, min_length=16), softmax_plus(scores, long_))
    clamped = softmax_plus(scores, short, min_length=16)[..., :5]
    torch.testing.assert_close(clamped, torch.softmax(scores[..., :5] * math.log(16) / math.log(512), -1))
    assert not torch.allclose(clamped, softmax_plus(scores, short)[..., :5])


@pytest.mark.parametrize("name", sorted(NORMALIZERS))
def test_padded_equals_unpadded(name: str) -> None:
    gau = _gau(NORMALIZERS[name]())
    x = torch.randn(1, 6, D)
    padded = torch.cat([x, torch.randn(1, 5, D)], dim=1)
    keep = torch.tensor([[True] * 6 + [False] * 5])
    # 11 vs 6 keys: the score and value matmuls have different shapes, so the reshaped tolerance applies
    torch.testing.assert_close(gau(padded, keep)[:, :6], gau(x), **TOL["batched_fp32_reshaped"])


@pytest.mark.parametrize("name", ["softmax_plus", "squared_relu", "kernel_valid_n", "kernel_fixed_n"])
def test_causal_gau_does_not_leak(name: str) -> None:
    gau = _gau(NORMALIZERS[name](), causal=True)
    x = torch.randn(2, 9, D)
    changed = x.clone()
    changed[:, 5:] = torch.randn(2, 4, D)
    torch.testing.assert_close(gau(changed)[:, :5], gau(x)[:, :5], **TOL["batched_fp32"])
    assert not torch.allclose(gau(changed)[:, 5:], gau(x)[:, 5:])


def test_toeplitz_bias_matches_junnyu_construction() -> None:
    # JunnYu flash/gau.py rel_pos_bias: pad/repeat/reshape trick, written out here independently of ours.
    bias = ToeplitzRelativeBias(6)
    nn.init.normal_(bias.weight)
    n, w = 6, bias.weight.detach()
    t = torch.nn.functional.pad(w[: 2 * n - 1], [0, n]).repeat(n)
    t = t[..., :-n].reshape(-1, n, 3 * n - 2)[..., n - 1 : -(n - 1)]
    torch.testing.assert_close(bias(n).detach(), t[0])
    torch.testing.assert_close(bias(4, 4).detach(), t[0, :4, :4])
    far = bias(9).detach()  # beyond max_length: clamped to the last learned offsets
    assert far[0, 8] == w[-1] and far[8, 0] == w[0]


@pytest.mark.parametrize(("query_len", "key_len"), [(6, 6), (4, 4), (3, 6), (6, 2), (1, 1), (5, 9), (9, 9)])
def test_toeplitz_strided_view_equals_the_gather(query_len: int, key_len: int) -> None:
    """The unfold fast path (T, S <= L) and the clamped gather give the same values and the same gradients."""
    bias = ToeplitzRelativeBias(6)
    nn.init.normal_(bias.weight)
    limit = bias.max_length - 1
    offsets = torch.arange(key_len)[None, :] - torch.arange(query_len)[:, None]
    upstream = torch.randn(query_len, key_len)
    expected = bias.weight[offsets.clamp(-limit, limit) + limit]
    (expected_grad,) = torch.autograd.grad((expected * upstream).sum(), bias.weight)
    actual = bias(query_len, key_len)
    (actual_grad,) = torch.autograd.grad((actual * upstream).sum(), bias.weight)
    assert torch.equal(actual, expected)
    torch.testing.assert_close(actual_grad, expected_grad, **TOL["kernel_fp32"])


def test_token_shift_and_scale_offset() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    y = token_shift(x)
    torch.testing.assert_close(y[:, 1:, :2], x[:, :-1, :2])
    assert y[:, 0, :2].abs().max() == 0
    torch.testing.assert_close(y[..., 2:], x[..., 2:])
    heads = ScaleOffset(4, num_heads=3)
    nn.init.normal_(heads.weight)
    nn.init.normal_(heads.bias)
    for h, out in enumerate(heads(x)):
        torch.testing.assert_close(out, x * heads.weight[h] + heads.bias[h])
    assert ScaleOffset(4, num_heads=2, offset=False).bias is None


def test_gradcheck_float64() -> None:
    gau = _gau(SoftmaxPlus(K), causal=True).double()
    x = torch.randn(1, 4, D, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([[True, True, True, False]])
    assert torch.autograd.gradcheck(lambda t: gau(t, keep), (x,))
    kernel = _gau(ReLUSquaredKernel(K, length=None)).double()
    assert torch.autograd.gradcheck(lambda t: kernel(t, keep), (x,))


@pytest.mark.parametrize("causal", [False, True])
def test_matches_lucidrains_gau(causal: bool) -> None:
    """lucidrains ``GAU`` = pre-LayerNorm + GAU(relu((q k^T + b) / T)^2) + residual, no RoPE.

    Where we deliberately differ (so the test sets those parts equal): it adds its T5 bias *before* dividing by T
    and always builds it (its ``rel_pos_bias`` flag is unused), we add a bias after dividing (the paper), so its
    bias is zeroed; it divides by the padded length T, so we compare on unpadded input with n = T (valid keys when
    bidirectional, the fixed length T when causal, where our valid-n would count only visible keys).
    """
    flash_pytorch = importlib.import_module("flash_pytorch")
    from lmforge.models.flash.convert import fuse_lucidrains_projection

    T = 10
    theirs = flash_pytorch.GAU(dim=D, query_key_dim=K, expansion_factor=E / D, causal=causal).eval()
    nn.init.zeros_(theirs.rel_pos_bias.relative_attention_bias.weight)
    nn.init.normal_(theirs.offsetscale.gamma)
    ours = GatedAttentionUnit(
        D,
        expansion=E,
        key_size=K,
        normalizer=ReLUSquaredKernel(K, length=T if causal else None),
        bias=True,
        causal=causal,
    ).eval()
    norm = nn.LayerNorm(D)
    with torch.no_grad():
        ours.proj.weight.copy_(fuse_lucidrains_projection(theirs.to_hidden[0].weight, theirs.to_qk[0].weight))
        ours.proj.bias.copy_(fuse_lucidrains_projection(theirs.to_hidden[0].bias, theirs.to_qk[0].bias))
        ours.scale_offset.weight.copy_(theirs.offsetscale.gamma)
        ours.scale_offset.bias.copy_(theirs.offsetscale.beta)
        ours.out.load_state_dict(theirs.to_out[0].state_dict())
        norm.load_state_dict(theirs.norm.state_dict())
    x = torch.randn(2, T, D)
    torch.testing.assert_close(x + ours(norm(x)), theirs(x), **TOL["reference_fp32"])


def test_t5_bias_reaches_the_kernel() -> None:
    # The bias module is called with (T, S) and broadcast over the batch: (1, T, S) from T5, (T, S) from Toeplitz.
    gau = GatedAttentionUnit(D, expansion=E, key_size=K, normalizer=ReLUSquaredKernel(K, length=None))
    gau.relative_bias = T5RelativePositionBias(1, bidirectional=True, scale=K**0.5)
    x = torch.randn(2, 7, D)
    before = gau(x)
    nn.init.constant_(gau.relative_bias.relative_attention_bias.weight, 1.0)
    assert not torch.allclose(gau(x), before)
