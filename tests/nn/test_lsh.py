"""LSH and local chunked attention blocks: bucketing, neighbours, kernels, causality, the permutation backward."""

from __future__ import annotations

import pytest
import torch

from lmforge.nn.lsh import (
    LocalSelfAttention,
    LSHSelfAttention,
    _Permute,
    default_num_buckets,
    look_adjacent,
    lsh_buckets,
)
from tolerances import TOL


def test_look_adjacent_wraps_around_the_chunk_axis() -> None:
    x = torch.arange(4).view(1, 1, 4, 1)  # chunk i holds the value i
    assert look_adjacent(x, 1, 0)[0, 0].tolist() == [[3, 0], [0, 1], [1, 2], [2, 3]]
    assert look_adjacent(x, 0, 1)[0, 0, 3].tolist() == [3, 0]
    assert look_adjacent(x, 0, 0) is x


def test_default_num_buckets_follows_hf_rule() -> None:
    assert default_num_buckets(4096, 64, 4096) == 128  # 2*64 = 128 = the limit 2*max(8, 64)
    assert default_num_buckets(100, 8, 4096) == 16  # 2*12 = 24 -> 16
    assert default_num_buckets(2**19, 64, 2**19) == (128, 128)  # 16384 > 2*max(90, 64): factorised


def test_buckets_are_reproducible_offset_and_put_padding_apart() -> None:
    vectors = torch.randn(2, 3, 20, 8)
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    a = lsh_buckets(vectors, num_buckets=6, num_hashes=2, generator=gen())
    b = lsh_buckets(vectors, num_buckets=6, num_hashes=2, generator=gen())
    assert torch.equal(a, b) and a.shape == (2, 3, 2, 20)
    assert a[:, :, 0].max() < 6 and a[:, :, 1].min() >= 6  # round r lives in [6r, 6r + 6)
    # HF draws with torch.manual_seed(seed); torch.randn: the same rotations as our private generator
    torch.manual_seed(5)
    rotations = torch.randn(3, 8, 2, 3)
    rotated = torch.einsum("bhte,herk->bhrtk", vectors, rotations)
    expected = torch.cat([rotated, -rotated], -1).argmax(-1) + torch.tensor([0, 6]).view(2, 1)
    assert torch.equal(a, expected)
    keep = torch.ones(2, 20, dtype=torch.bool)
    keep[1, 15:] = False
    padded = lsh_buckets(vectors, num_buckets=6, num_hashes=2, keep_BT=keep, generator=gen())
    assert (padded[1, :, 0, 15:] == 6).all() and (padded[1, :, 1, 15:] == 13).all()  # pad bucket, offset 7
    assert torch.equal(padded[0, :, 0], a[0, :, 0])
    factored = lsh_buckets(vectors, num_buckets=(2, 4), num_hashes=1, generator=gen())
    assert factored.max() < 8
    with pytest.raises(ValueError, match="even"):
        lsh_buckets(vectors, num_buckets=5, num_hashes=1)


def test_permutation_backward_gradcheck() -> None:
    order = torch.randperm(12).view(1, 1, 12)
    inverse = torch.argsort(order, dim=-1)
    x = torch.randn(1, 1, 12, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _Permute.apply(t, order, inverse), (x,))


def _lsh(**kw) -> LSHSelfAttention:
    args = dict(num_heads=2, head_dim=8, chunk_length=4, num_hashes=1, num_buckets=4, hash_seed=1, causal=True)
    return LSHSelfAttention(16, **(args | kw)).eval()


def _local(**kw) -> LocalSelfAttention:
    return LocalSelfAttention(16, **(dict(num_heads=2, head_dim=8, chunk_length=4, causal=True) | kw)).eval()


@pytest.mark.parametrize("make", [_lsh, _local], ids=["lsh", "local"])
@pytest.mark.parametrize("causal", [True, False])
def test_sdpa_kernel_matches_eager(make, causal: bool) -> None:
    eager = make(causal=causal, num_chunks_after=0 if causal else 1)
    fused = make(causal=causal, num_chunks_after=0 if causal else 1, kernel="sdpa")
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(2, 16, 16)
    keep = torch.ones(2, 16, dtype=torch.bool)
    keep[1, 13:] = False
    for mask in (None, keep):
        torch.testing.assert_close(fused(x, mask)[0], eager(x, mask)[0], **TOL["kernel_fp32"])


@pytest.mark.parametrize("num_hashes", [1, 2])
def test_lsh_has_no_causal_leakage(num_hashes: int) -> None:
    """The buckets depend on future tokens (they are not differentiable), the attended values never do."""
    attention = _lsh(num_hashes=num_hashes)
    x = torch.randn(1, 16, 16, requires_grad=True)
    out = attention(x)[0]
    for t in (0, 5, 11):
        (grad,) = torch.autograd.grad(out[0, t].sum(), x, retain_graph=True)
        assert grad[0, t + 1 :].abs().max() == 0 and grad[0, : t + 1].abs().max() > 0


def test_local_attention_is_causal_and_short_inputs_use_full_attention() -> None:
    attention = _local()
    x = torch.randn(1, 12, 16)
    changed = x.clone()
    changed[:, 7:] = torch.randn(1, 5, 16)
    torch.testing.assert_close(attention(changed)[0][:, :7], attention(x)[0][:, :7], rtol=0, atol=0)
    short = torch.randn(1, 3, 16)  # shorter than a chunk: plain attention, no multiple needed
    assert attention(short)[0].shape == (1, 3, 16)
    with pytest.raises(ValueError, match="multiple of chunk_length"):
        attention(torch.randn(1, 10, 16))


def test_buckets_passed_back_reproduce_the_output_without_a_seed() -> None:
    attention = _lsh(hash_seed=None, num_hashes=2)
    x = torch.randn(2, 16, 16)
    out, buckets = attention(x)
    again, _ = attention(x, buckets_BHRT=buckets)
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    assert buckets.shape == (2, 2, 2, 16)


def test_the_token_attends_to_itself_only_when_alone() -> None:
    """The first token of a causal sequence sees only itself: its output is its own value vector."""
    attention = _lsh(num_hashes=1)
    x = torch.randn(1, 16, 16)
    out = attention(x)[0]
    value = attention.value(x).view(1, 16, 2, 8)
    torch.testing.assert_close(out[0, 0].view(2, 8), value[0, 0], **TOL["kernel_fp32"])


def test_half_precision_forward_is_finite() -> None:
    attention = _lsh(num_hashes=2).to(torch.bfloat16)
    out, _ = attention(torch.randn(2, 16, 16, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


@pytest.mark.parametrize("make", [_lsh, _local], ids=["lsh", "local"])
def test_sdpa_kernel_with_dropout_matches_eager_with_the_same_masks(make) -> None:
    eager = make(dropout=0.2).train()
    fused = make(dropout=0.2, kernel="sdpa").train()
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(2, 16, 16)
    torch.manual_seed(4)
    want = eager(x)[0]
    torch.manual_seed(4)
    torch.testing.assert_close(fused(x)[0], want, **TOL["kernel_fp32"])
