"""Position encodings: RoPE relative property, pairing permutation, any length, offsets; sinusoids; T5 buckets."""

import importlib
import math

import pytest
import torch

from lmforge.nn.positions import (
    LearnedPositions,
    RotaryEmbedding,
    ScaledSinusoid,
    SinusoidalPositions,
    T5RelativePositionBias,
    apply_rotary,
    relative_position_bucket,
    rotary_cos_sin,
)

PAIRINGS = ["interleaved", "half"]


def _rotate_at(rope, x_K, position):
    return rope.rotate(x_K[None], offset=position)[0]  # one vector at one position


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_rope_score_depends_only_on_relative_position(pairing):
    rope = RotaryEmbedding(16, pairing=pairing)
    q, k = torch.randn(16), torch.randn(16)
    for m, n in [(0, 0), (3, 1), (1, 3), (9, 2)]:
        reference = _rotate_at(rope, q, m) @ _rotate_at(rope, k, n)
        for shift in (1, 7, 40, 300):
            shifted = _rotate_at(rope, q, m + shift) @ _rotate_at(rope, k, n + shift)
            torch.testing.assert_close(shifted, reference, atol=1e-4, rtol=1e-4)
    # and it does depend on the distance
    assert not torch.allclose(_rotate_at(rope, q, 0) @ _rotate_at(rope, k, 0), _rotate_at(rope, q, 5) @ k)


def test_rope_position_zero_is_identity_and_rotation_preserves_norm():
    x = torch.randn(3, 5, 16)
    for pairing in PAIRINGS:
        rope = RotaryEmbedding(16, pairing=pairing)
        torch.testing.assert_close(rope.rotate(x[:, :1]), x[:, :1])
        torch.testing.assert_close(rope.rotate(x).norm(dim=-1), x.norm(dim=-1))


def test_interleaved_and_half_differ_by_a_fixed_feature_permutation():
    # Feature permutation "evens then odds" turns interleaved pairs (2i, 2i+1) into half pairs (i, i + K/2).
    dim = 12
    perm = torch.cat([torch.arange(0, dim, 2), torch.arange(1, dim, 2)])
    x = torch.randn(2, 3, 9, dim)
    interleaved = RotaryEmbedding(dim, pairing="interleaved").rotate(x, offset=4)
    half = RotaryEmbedding(dim, pairing="half").rotate(x[..., perm], offset=4)
    torch.testing.assert_close(half, interleaved[..., perm])
    assert not torch.allclose(RotaryEmbedding(dim, pairing="half").rotate(x), interleaved)  # not the same maps


def test_rope_any_length_and_offset_equals_slicing():
    rope = RotaryEmbedding(8, pairing="interleaved")
    cos, sin = rope(5000)
    assert cos.shape == (5000, 8) and cos.dtype == torch.float32
    torch.testing.assert_close(cos.square() + sin.square(), torch.ones_like(cos))
    tail_cos, tail_sin = rope(10, offset=4990)
    torch.testing.assert_close(tail_cos, cos[4990:])
    torch.testing.assert_close(tail_sin, sin[4990:])
    x = torch.randn(1, 2, 5000, 8)
    torch.testing.assert_close(rope.rotate(x[:, :, 4990:], offset=4990), rope.rotate(x)[:, :, 4990:])


def test_rope_angles_are_fp32_and_output_keeps_dtype():
    rope = RotaryEmbedding(8, pairing="half")
    x = torch.randn(2, 7, 8).to(torch.bfloat16)
    out = rope.rotate(x, offset=1000)
    assert out.dtype == torch.bfloat16
    cos, sin = rope(7, offset=1000)
    expected = apply_rotary(x.float(), cos, sin, "half").to(torch.bfloat16)
    assert torch.equal(out, expected)


def test_rope_matches_hand_computed_rotation():
    cos, sin = rotary_cos_sin(3, dim=4, base=100.0, pairing="interleaved")
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]] * 3)
    out = apply_rotary(x, cos, sin, "interleaved")
    for pos in range(3):
        a0, a1 = pos * 1.0, pos / 10.0  # angles pos * 100 ** (-2i / 4)
        expected = torch.tensor([math.cos(a0), math.sin(a0), -math.sin(a1), math.cos(a1)])
        torch.testing.assert_close(out[pos], expected)


def test_rope_gradcheck_float64():
    cos, sin = rotary_cos_sin(4, dim=6, base=10_000.0, pairing="interleaved")
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    for pairing in PAIRINGS:
        assert torch.autograd.gradcheck(lambda x, p=pairing: apply_rotary(x, cos.double(), sin.double(), p), (x,))


def test_rope_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pairing"):
        RotaryEmbedding(8, pairing="neox")
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7, pairing="half")


def test_sinusoids():
    table = SinusoidalPositions(6)(4, offset=2)
    angles = torch.arange(2, 6.0)[:, None] * torch.tensor([1.0, 10_000 ** (-2 / 6), 10_000 ** (-4 / 6)])
    torch.testing.assert_close(table, torch.cat([angles.sin(), angles.cos()], dim=-1))
    scaled = ScaledSinusoid(6, init_scale=0.5)
    out = scaled(4, offset=2)
    torch.testing.assert_close(out, 0.5 * table)
    out.sum().backward()
    assert scaled.scale.grad is not None and torch.isfinite(scaled.scale.grad).all()


# Hand-computed from the T5 formula: bucket = max_exact + floor(log(d / max_exact) / log(max_distance / max_exact)
# * (num_buckets - max_exact)), e.g. bidirectional d=20: 8 + floor(log(2.5) / log(16) * 8) = 8 + floor(2.64) = 10.
BIDIRECTIONAL = {0: 0, -1: 1, 1: 17, -7: 7, 7: 23, -8: 8, -20: 10, 20: 26, -50: 13, -100: 15, -1000: 15, 1000: 31}
CAUSAL = {5: 0, 0: 0, -1: 1, -15: 15, -16: 16, -20: 17, -100: 30, -1000: 31}


@pytest.mark.parametrize(("bidirectional", "table"), [(True, BIDIRECTIONAL), (False, CAUSAL)])
def test_t5_buckets_against_hand_computed_values(bidirectional, table):
    relative = torch.tensor(list(table))
    buckets = relative_position_bucket(relative, bidirectional=bidirectional, num_buckets=32, max_distance=128)
    assert buckets.tolist() == list(table.values())


@pytest.mark.hf
def test_t5_buckets_match_transformers():
    t5 = importlib.import_module("transformers.models.t5.modeling_t5")
    relative = torch.arange(-300, 300)
    for bidirectional in (True, False):
        expected = t5.T5Attention._relative_position_bucket(relative, bidirectional, 32, 128)
        assert torch.equal(relative_position_bucket(relative, bidirectional=bidirectional), expected)


def test_t5_bias_shape_and_lower_right_alignment():
    bias = T5RelativePositionBias(3, bidirectional=False, num_buckets=8, max_distance=16, scale=2.0)
    full = bias(5)
    assert full.shape == (3, 5, 5)
    torch.testing.assert_close(bias(2, 5), full[:, 3:])  # the last 2 queries of a 5-token sequence
    torch.testing.assert_close(full[:, 0, 0], 2.0 * bias.relative_attention_bias.weight[0])


def test_learned_positions_offset_and_bound():
    table = LearnedPositions(6, 4)
    torch.testing.assert_close(table(2, offset=3), table.weight[3:5])
    with pytest.raises(ValueError, match="exceed"):
        table(4, offset=3)
