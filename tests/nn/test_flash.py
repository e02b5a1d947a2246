"""Mixed-chunk attention: chunked == dense reference, padding invariance, no causal leakage across chunk boundaries,
one chunk == the quadratic GAU, gradients, and parity with lucidrains/FLASH-pytorch ``FLASH``."""

from __future__ import annotations

import importlib

import pytest
import torch

from lmforge.nn.flash import MixedChunkGAU, mixed_chunk_attention, mixed_chunk_attention_dense
from lmforge.nn.gau import GatedAttentionUnit, ReLUSquaredKernel
from lmforge.nn.positions import RotaryEmbedding, T5RelativePositionBias
from tolerances import TOL

D, E, K, G = 16, 24, 8, 4
VARIANTS = [  # (causal, linear_normalizer, reduce_groups)
    (False, "group", True),
    (False, "group", False),
    (False, "valid_length", True),
    (False, "valid_length", False),
    (True, "group", True),
]


def _layer(causal: bool, linear_normalizer: str = "group", reduce_groups: bool = True, shift: bool = True):
    layer = MixedChunkGAU(
        D,
        expansion=E,
        key_size=K,
        group_size=G,
        causal=causal,
        rope=RotaryEmbedding(4, pairing="interleaved"),
        relative_bias=T5RelativePositionBias(1, bidirectional=not causal, scale=K**0.5),
        shift_tokens=shift,
        linear_normalizer=linear_normalizer,
        reduce_groups=reduce_groups,
    )
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    return layer.eval()


@pytest.mark.parametrize(("causal", "linear_normalizer", "reduce_groups"), VARIANTS)
def test_chunked_equals_dense_reference(causal: bool, linear_normalizer: str, reduce_groups: bool) -> None:
    q1, k1, q2, k2 = (torch.randn(2, 11, K, dtype=torch.float64) for _ in range(4))
    v = torch.randn(2, 11, E, dtype=torch.float64)
    keep = torch.ones(2, 11, dtype=torch.bool)
    keep[1, 7:] = False
    kwargs = dict(group_size=G, causal=causal, linear_normalizer=linear_normalizer, reduce_groups=reduce_groups)
    bias = torch.randn(G, G, dtype=torch.float64)
    for mask in (None, keep):
        fast = mixed_chunk_attention(q1, k1, q2, k2, v, mask, bias_CC=bias, **kwargs)
        dense = mixed_chunk_attention_dense(q1, k1, q2, k2, v, mask, bias_CC=bias, **kwargs)
        torch.testing.assert_close(fast, dense)


@pytest.mark.parametrize(("causal", "linear_normalizer", "reduce_groups"), VARIANTS)
def test_padded_equals_unpadded(causal: bool, linear_normalizer: str, reduce_groups: bool) -> None:
    layer = _layer(causal, linear_normalizer, reduce_groups)
    x = torch.randn(1, 6, D)  # 1.5 chunks; padding crosses into a third chunk
    padded = torch.cat([x, torch.randn(1, 5, D)], dim=1)
    keep = torch.tensor([[True] * 6 + [False] * 5])
    torch.testing.assert_close(layer(padded, keep)[:, :6], layer(x), **TOL["batched_fp32_reshaped"])


def test_no_causal_leakage_within_and_across_chunks() -> None:
    layer = _layer(causal=True)
    x = torch.randn(2, 13, D)
    for t in (1, 3, 4, 6, 9):  # inside a chunk, last of a chunk, first of a chunk
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :])
        torch.testing.assert_close(layer(changed)[:, : t + 1], layer(x)[:, : t + 1], **TOL["batched_fp32"])


def test_inclusive_prefix_would_leak() -> None:
    """The test above has teeth: an inclusive cumsum over chunks sees later tokens of the same chunk."""
    q1, k1, q2, k2 = (torch.randn(1, 8, K) for _ in range(4))
    v = torch.randn(1, 8, E)
    kv = (k2.view(1, 2, G, K).transpose(-1, -2) @ v.view(1, 2, G, E)).cumsum(1) / G  # inclusive
    inclusive = (q2.view(1, 2, G, K) @ kv).flatten(1, 2)
    exclusive = mixed_chunk_attention(q1, k1, q2, k2, v, group_size=G, causal=True) - mixed_chunk_attention(
        q1, k1, torch.zeros_like(q2), k2, v, group_size=G, causal=True
    )
    assert exclusive[:, :G].abs().max() == 0  # the first chunk has no earlier chunk
    assert inclusive[:, :G].abs().max() > 0


@pytest.mark.parametrize("causal", [False, True])
def test_one_chunk_equals_quadratic_gau(causal: bool) -> None:
    """With T <= G and a zero linear part (lin gammas/offsets 0), FLASH is exactly FLASH-Quad with n = G."""
    layer = _layer(causal, shift=False)
    if not causal:
        with torch.no_grad():
            layer.scale_offset.weight[1].zero_()  # lin_q = 0 -> no linear part
            layer.scale_offset.bias[1].zero_()
    quad = GatedAttentionUnit(
        D,
        expansion=E,
        key_size=K,
        normalizer=ReLUSquaredKernel(K, length=G),
        bias=True,
        rope=layer.rope,
        relative_bias=layer.relative_bias,
        causal=causal,
    ).eval()
    with torch.no_grad():
        quad.proj.load_state_dict(layer.proj.state_dict())
        quad.out.load_state_dict(layer.out.state_dict())
        quad.scale_offset.weight.copy_(layer.scale_offset.weight[[0, 2]])  # quad_q, quad_k
        quad.scale_offset.bias.copy_(layer.scale_offset.bias[[0, 2]])
    x = torch.randn(2, G, D)
    torch.testing.assert_close(layer(x), quad(x), **TOL["batched_fp32_reshaped"])
    keep = torch.tensor([[True] * G, [True, True, False, False]])
    torch.testing.assert_close(layer(x[:, :3], keep[:, :3]), quad(x[:, :3], keep[:, :3]), **TOL["batched_fp32"])


def test_gradcheck_float64() -> None:
    inputs = [torch.randn(1, 5, 2, dtype=torch.float64, requires_grad=True) for _ in range(5)]
    keep = torch.tensor([[True] * 4 + [False]])
    for causal in (False, True):

        def fn(*t, causal=causal):
            return mixed_chunk_attention(*t, keep, group_size=2, causal=causal)

        assert torch.autograd.gradcheck(fn, tuple(inputs))


def test_invalid_combinations_are_errors() -> None:
    with pytest.raises(ValueError, match="valid_length"):
        MixedChunkGAU(D, expansion=E, key_size=K, group_size=G, causal=True, linear_normalizer="valid_length")
    with pytest.raises(ValueError, match="linear_normalizer"):
        _layer(False, linear_normalizer="mean")


def _lucidrains_flash(causal: bool, reduce_groups: bool, shift: bool):
    flash_pytorch = importlib.import_module("flash_pytorch")
    from rotary_embedding_torch import RotaryEmbedding as TheirRotary

    theirs = flash_pytorch.FLASH(
        dim=D,
        group_size=G,
        query_key_dim=K,
        expansion_factor=E / D,
        causal=causal,
        rotary_pos_emb=TheirRotary(dim=4),  # partial rotary, as FLASHTransformer's min(32, s)
        norm_klass=flash_pytorch.flash_pytorch.ScaleNorm,
        shift_tokens=shift,
        reduce_group_non_causal_attn=reduce_groups,
    ).eval()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if not name.startswith("rotary_pos_emb"):  # its frequencies are a (frozen) Parameter
                p.normal_(0.0, 0.5)
    return theirs


@pytest.mark.parametrize(("causal", "reduce_groups"), [(False, True), (False, False), (True, True)])
def test_matches_lucidrains_flash(causal: bool, reduce_groups: bool) -> None:
    """Same weights moved by our production converter (``flash_layer_from_lucidrains``).

    Conventions where lucidrains differs and the test makes them agree: its bidirectional linear part divides by
    the batch length, ours by G by default (``linear_normalizer="valid_length"`` reproduces it on unpadded input);
    causal: both divide by G, and padded keys are masked identically, so padded batches are compared too.
    """
    from lmforge.models.flash.config import FLASHConfig
    from lmforge.models.flash.convert import flash_layer_from_lucidrains
    from lmforge.models.flash.model import FLASHLayer

    theirs = _lucidrains_flash(causal, reduce_groups, shift=True)
    cfg = FLASHConfig(
        vocab_size=8,
        hidden_size=D,
        intermediate_size=E,
        attention_key_size=K,
        group_size=G,
        relative_position="t5",
        rope_pairing="interleaved",
        rotary_dim=4,
        quad_length=None,
        shift_tokens=True,
        linear_normalizer="group" if causal else "valid_length",
        reduce_group_non_causal_attn=reduce_groups,
        is_decoder=causal,
    )
    ours = FLASHLayer(cfg, mixed_chunk=True).eval()
    sd = theirs.state_dict()
    rules = flash_layer_from_lucidrains("", "", cfg, offset_scale_names=("gamma", "beta"))
    ours.load_state_dict({o.lstrip("."): fn(*(sd[t.lstrip(".")] for t in ts)) for o, ts, fn, _ in rules})
    x = torch.randn(2, 11, D)  # not a multiple of G: group padding
    torch.testing.assert_close(ours(x, None), theirs(x), **TOL["batched_fp32_reshaped"])
    if causal:
        keep = torch.ones(2, 11, dtype=torch.bool)
        keep[1, 8:] = False
        torch.testing.assert_close(ours(x, keep)[1, :8], theirs(x, mask=keep)[1, :8], **TOL["batched_fp32_reshaped"])
