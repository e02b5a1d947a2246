"""Init helpers: truncation bounds, effective std, the cited formulas."""

import math

import pytest
import torch

from lmforge.nn.init import gpt2_residual_std, keras_fan, normal_, roformerv2_std, trunc_normal_


def test_trunc_normal_truncates_relative_to_std():
    w = trunc_normal_(torch.empty(300, 300), std=0.02)
    assert w.abs().max() <= 0.04
    assert w.std().item() == pytest.approx(0.02 * 0.87962566, rel=0.03)  # std of N(0,1) cut at +-2


def test_normal():
    assert normal_(torch.empty(300, 300), std=0.02).std().item() == pytest.approx(0.02, rel=0.03)


def test_gpt2_residual_std():
    assert gpt2_residual_std(0.02, num_layers=12) == pytest.approx(0.02 / math.sqrt(24))
    with pytest.raises(ValueError):
        gpt2_residual_std(0.02, num_layers=0)


def test_roformerv2_std_gives_unit_fan_in_std_after_truncation():
    std = roformerv2_std(768, num_layers=24, order=3)
    assert std == pytest.approx(1.13684723 / math.sqrt(768) * 24 ** (-1 / 3))
    w = trunc_normal_(torch.empty(768, 768), std=std)
    assert w.std().item() == pytest.approx(24 ** (-1 / 3) / math.sqrt(768), rel=0.02)
    assert roformerv2_std(64, num_layers=8) == pytest.approx(1.13684723 / 8 / math.sqrt(8))  # order 2 default


def test_keras_fan_rule():
    assert keras_fan((768, 3072)) == 768  # dense kernel (in, out): fan-in
    assert keras_fan((12000, 768)) == 768  # embedding table: its width
    assert keras_fan((2, 768)) == 768  # segment table (shape[0] < 10)
