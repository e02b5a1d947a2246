"""Attention kernels and the MultiHeadAttention module.

Fast kernel == eager reference over masks, causal, T != S, GQA and fully-masked rows; lower-right causal alignment
against a hand-built mask; zeros (not NaN) for rows with no key; float64 gradcheck; KV cache == parallel forward.
"""

import pytest
import torch

from lmforge.nn.attention import (
    ATTENTION_KERNELS,
    KeyValueBuffer,
    MultiHeadAttention,
    attend,
    causal_keep,
    eager_attention,
    keep_from_padding_mask,
    sdpa_attention,
)
from lmforge.nn.positions import RotaryEmbedding
from tolerances import TOL

B, H, K = 2, 4, 8


def _qkv(query_len, key_len, num_kv_heads, dtype=torch.float32):
    q = torch.randn(B, H, query_len, K, dtype=dtype)
    k = torch.randn(B, num_kv_heads, key_len, K, dtype=dtype)
    v = torch.randn(B, num_kv_heads, key_len, K, dtype=dtype)
    return q, k, v


def _keep(kind, query_len, key_len):
    if kind == "none":
        return None
    if kind == "padding":  # second example has its last two keys padded
        mask = torch.ones(B, key_len, dtype=torch.long)
        mask[1, -2:] = 0
        return keep_from_padding_mask(mask)
    keep = torch.rand(B, H, query_len, key_len) > 0.4  # arbitrary 4-D mask with one fully masked row
    keep[0, 1, 0] = False
    return keep


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "padding", "full"])
@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
@pytest.mark.parametrize(("query_len", "key_len"), [(5, 5), (3, 7), (7, 3)])
def test_sdpa_matches_eager(query_len, key_len, num_kv_heads, mask_kind, causal):
    q, k, v = _qkv(query_len, key_len, num_kv_heads)
    keep = _keep(mask_kind, query_len, key_len)
    expected = eager_attention(q, k, v, keep, causal=causal)
    actual = sdpa_attention(q, k, v, keep, causal=causal)
    assert torch.isfinite(expected).all() and torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, **TOL["kernel_fp32"])


def test_eager_matches_textbook_formula_per_head():
    q, k, v = _qkv(5, 6, num_kv_heads=2)
    out = eager_attention(q, k, v, scale=0.3)
    for h in range(H):
        kv_head = h // (H // 2)  # GQA: query head h reads kv head h // group_size
        probs = torch.softmax(q[:, h] @ k[:, kv_head].transpose(-1, -2) * 0.3, dim=-1)
        torch.testing.assert_close(out[:, h], probs @ v[:, kv_head])


def test_causal_is_lower_right_aligned_when_fewer_queries_than_keys():
    hand_built = torch.tensor(
        [
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(causal_keep(3, 5), hand_built)
    q, k, v = _qkv(3, 5, num_kv_heads=4)
    expected = eager_attention(q, k, v, hand_built)
    for kernel in ATTENTION_KERNELS.values():
        torch.testing.assert_close(kernel(q, k, v, causal=True), expected)
    # The last query sees every key: identical to unmasked attention for that row (what a KV cache relies on).
    torch.testing.assert_close(sdpa_attention(q, k, v, causal=True)[:, :, -1], sdpa_attention(q, k, v)[:, :, -1])


def test_causal_with_more_queries_than_keys_gives_zero_rows():
    q, k, v = _qkv(5, 3, num_kv_heads=4)
    for kernel in ATTENTION_KERNELS.values():
        out = kernel(q, k, v, causal=True)
        assert torch.equal(out[:, :, :2], torch.zeros_like(out[:, :, :2]))  # queries 0, 1 see no key
        assert out[:, :, 2:].abs().sum() > 0


@pytest.mark.parametrize("kernel", sorted(ATTENTION_KERNELS))
def test_fully_masked_rows_are_zero_with_finite_gradients(kernel):
    q, k, v = (t.requires_grad_() for t in _qkv(4, 6, num_kv_heads=2))
    keep = torch.ones(B, 1, 4, 6, dtype=torch.bool)
    keep[0, 0, 2] = False  # query 2 of example 0 sees nothing
    out = attend(q, k, v, keep, kernel=kernel)
    assert torch.equal(out[0, :, 2], torch.zeros_like(out[0, :, 2]))
    out.square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[0, :, 2], torch.zeros_like(q.grad[0, :, 2]))


def test_padded_keys_do_not_change_outputs():
    q, k, v = _qkv(4, 5, num_kv_heads=4)
    noise = torch.randn(B, H, 3, K)
    keep = keep_from_padding_mask(torch.tensor([[1] * 5 + [0] * 3] * B))
    for kernel in ATTENTION_KERNELS.values():
        padded = kernel(q, torch.cat([k, noise], dim=2), torch.cat([v, noise], dim=2), keep)
        torch.testing.assert_close(padded, kernel(q, k, v), **TOL["batched_fp32_reshaped"])


@pytest.mark.parametrize("kernel", sorted(ATTENTION_KERNELS))
def test_gradcheck_float64(kernel):
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    keep = keep_from_padding_mask(torch.tensor([[1, 1, 1, 1, 0]]))
    fn = ATTENTION_KERNELS[kernel]
    assert torch.autograd.gradcheck(lambda q, k, v: fn(q, k, v, keep, causal=True), (q, k, v))


def test_bad_inputs_raise():
    q, k, v = _qkv(3, 3, num_kv_heads=4)
    with pytest.raises(ValueError, match="unknown attention kernel"):
        attend(q, k, v, kernel="flash9")
    with pytest.raises(ValueError, match="divide the query heads"):
        eager_attention(q, k[:, :3], v[:, :3])
    with pytest.raises(ValueError, match="batch, keys"):
        keep_from_padding_mask(torch.ones(2, 1, 3))


def _mha(**overrides):
    kwargs = dict(num_heads=4, num_key_value_heads=2, causal=True, rope=RotaryEmbedding(8, pairing="half"))
    return MultiHeadAttention(32, **(kwargs | overrides)).eval()


@pytest.mark.parametrize("kernel", sorted(ATTENTION_KERNELS))
@pytest.mark.parametrize("fused_qkv", [False, True])
def test_kv_cache_matches_parallel_forward(kernel, fused_qkv):
    mha = _mha(kernel=kernel, fused_qkv=fused_qkv)
    x = torch.randn(B, 7, 32)
    parallel, _ = mha(x)
    out, cache = mha(x[:, :4], use_cache=True)  # prefill 4 tokens, then 2 + 1
    chunks = [out]
    for start, stop in ((4, 6), (6, 7)):
        out, cache = mha(x[:, start:stop], past_key_value=cache, use_cache=True)
        chunks.append(out)
    assert cache[0].shape == (B, 2, 7, 8)
    torch.testing.assert_close(torch.cat(chunks, dim=1), parallel, **TOL["batched_fp32"])


def test_fused_and_separate_projections_agree():
    separate, fused = _mha(), _mha(fused_qkv=True)
    with torch.no_grad():
        fused.qkv.weight.copy_(torch.cat([separate.q_proj.weight, separate.k_proj.weight, separate.v_proj.weight]))
        fused.qkv.bias.copy_(torch.cat([separate.q_proj.bias, separate.k_proj.bias, separate.v_proj.bias]))
        fused.o_proj.load_state_dict(separate.o_proj.state_dict())
    x = torch.randn(B, 5, 32)
    torch.testing.assert_close(fused(x)[0], separate(x)[0])


def test_mha_validates_arguments():
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        MultiHeadAttention(32, num_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError, match="rope dim"):
        MultiHeadAttention(32, num_heads=4, rope=RotaryEmbedding(16, pairing="half"))
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(30, num_heads=4)


def test_keep_must_be_bool():
    q, k, v = _qkv(3, 3, num_kv_heads=4)
    with pytest.raises(ValueError, match="bool mask"):
        sdpa_attention(q, k, v, torch.ones(3, 3))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sdpa_matches_eager_on_gpu_half_precision(dtype):
    assert torch.cuda.is_available(), "gpu-marked tests need CUDA: select them with -m gpu on a GPU machine only"
    q, k, v = (t.cuda() for t in _qkv(64, 96, num_kv_heads=2, dtype=dtype))
    for keep in (None, _keep("padding", 64, 96).cuda(), _keep("full", 64, 96).cuda()):
        for causal in (False, True):
            expected = eager_attention(q, k, v, keep, causal=causal)
            actual = sdpa_attention(q, k, v, keep, causal=causal)
            assert torch.isfinite(actual).all()
            torch.testing.assert_close(actual, expected, **TOL["kernel_half"])


def test_kv_buffer_decoding_equals_concatenated_cache():
    rope = RotaryEmbedding(4, pairing="half")
    attn = MultiHeadAttention(16, num_heads=4, num_key_value_heads=2, causal=True, rope=rope).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        _, tuple_cache = attn(x[:, :5], use_cache=True)
        buffer = KeyValueBuffer(*tuple_cache, capacity=9)
        for t in range(5, 9):
            expected, tuple_cache = attn(x[:, t : t + 1], past_key_value=tuple_cache, use_cache=True)
            actual, present = attn(x[:, t : t + 1], past_key_value=buffer, use_cache=True)
            assert present is buffer and buffer.length == t + 1
            torch.testing.assert_close(actual, expected, **TOL["batched_fp32"])
    k, v = buffer
    torch.testing.assert_close(k, tuple_cache[0], rtol=0, atol=0)
    torch.testing.assert_close(v, tuple_cache[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="KV buffer full"):
        buffer.append(tuple_cache[0][:, :, :1], tuple_cache[1][:, :, :1])
