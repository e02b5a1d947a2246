"""Feed-forward blocks: MLP and GLU formulas, shapes, activation names."""

import pytest
import torch
import torch.nn.functional as F

from lmforge.nn.ffn import ACTIVATIONS, GLU, MLP, GeGLU, SwiGLU, get_activation


def test_activation_names():
    x = torch.linspace(-3, 3, 11)
    torch.testing.assert_close(ACTIVATIONS["gelu"](x), F.gelu(x))
    torch.testing.assert_close(ACTIVATIONS["gelu_new"](x), F.gelu(x, approximate="tanh"))
    assert ACTIVATIONS["gelu_tanh"](x).sub(F.gelu(x)).abs().max() > 0  # the approximation is a different function
    torch.testing.assert_close(ACTIVATIONS["swish"](x), x * torch.sigmoid(x))
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("gelu2")


def test_mlp_formula():
    mlp = MLP(8, 20, activation="relu")
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(mlp(x), mlp.down(torch.relu(mlp.up(x))))
    assert mlp(x).shape == (2, 3, 8)


@pytest.mark.parametrize(("factory", "act"), [(SwiGLU, F.silu), (GeGLU, F.gelu)])
@pytest.mark.parametrize("bias", [False, True])
def test_glu_formula_and_shapes(factory, act, bias):
    glu = factory(8, 12, bias=bias)
    assert isinstance(glu, GLU)
    assert glu.gate.weight.shape == (12, 8) and glu.up.weight.shape == (12, 8) and glu.down.weight.shape == (8, 12)
    assert sum(p.numel() for p in glu.parameters()) == 3 * 8 * 12 + (12 + 12 + 8 if bias else 0)
    x = torch.randn(2, 5, 8)
    out = glu(x)
    assert out.shape == (2, 5, 8)
    torch.testing.assert_close(out, glu.down(act(glu.gate(x)) * glu.up(x)))
