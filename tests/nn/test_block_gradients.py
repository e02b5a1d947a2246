"""Every block's gradients are finite: parameters and inputs, one backward on a tiny input."""

import pytest
import torch

from lmforge.nn.attention import MultiHeadAttention, keep_from_padding_mask
from lmforge.nn.embeddings import TokenEmbeddings
from lmforge.nn.ffn import MLP, GeGLU, SwiGLU
from lmforge.nn.norms import LayerNorm, RMSNorm, ScaleNorm
from lmforge.nn.positions import RotaryEmbedding, ScaledSinusoid, T5RelativePositionBias

D = 16


def _x():
    return torch.randn(2, 5, D, requires_grad=True)


BLOCKS = {
    "layernorm": lambda: (LayerNorm(D), _x()),
    "rmsnorm": lambda: (RMSNorm(D), _x()),
    "scalenorm": lambda: (ScaleNorm(D), _x()),
    "mlp": lambda: (MLP(D, 32), _x()),
    "swiglu": lambda: (SwiGLU(D, 32, bias=True), _x()),
    "geglu": lambda: (GeGLU(D, 32), _x()),
    "mha_rope_gqa": lambda: (
        MultiHeadAttention(D, num_heads=4, num_key_value_heads=2, rope=RotaryEmbedding(4, pairing="interleaved")),
        _x(),
    ),
    "mha_causal_fused_eager": lambda: (MultiHeadAttention(D, num_heads=2, fused_qkv=True, kernel="eager"), _x()),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_gradients_finite(name):
    block, x = BLOCKS[name]()
    out = block(x)
    if isinstance(out, tuple):  # attention returns (out, cache)
        keep = keep_from_padding_mask(torch.tensor([[1] * 5, [1, 1, 1, 0, 0]]))
        out, _ = block(x, keep)
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for param_name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), param_name


def test_position_and_embedding_gradients_finite():
    emb = TokenEmbeddings(20, D, type_vocab_size=2, max_positions=8, norm=LayerNorm(D))
    scaled = ScaledSinusoid(D)
    bias = T5RelativePositionBias(2, bidirectional=True)
    out = emb(torch.randint(0, 20, (2, 5))) + scaled(5)
    (out.sum() + bias(5).square().sum()).backward()
    for module in (emb, scaled, bias):
        for param_name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), param_name
