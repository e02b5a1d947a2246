"""FLASH-Quad and FLASH: a formula-level reference of JunnYu's FLASH-Quad (its naming, loaded by our converter),
full-model parity with lucidrains ``FLASHTransformer`` through the JunnYu/lucidrains converter, padding invariance
for every encoder, no causal leakage across chunk boundaries for every decoder, converter errors, gradients, the
YAML recipes and the HF export wrapper."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lmforge
from lmforge.models.flash.config import FLASH_PRESETS, FLASH_QUAD_PRESETS, FLASHConfig
from lmforge.models.flash.convert import (
    from_junnyu_flash_config,
    from_junnyu_quad_config,
    from_junnyu_state_dict,
    load_junnyu_checkpoint,
    to_junnyu_state_dict,
)
from lmforge.models.flash.model import build_flash_mlm, build_quad_mlm
from tolerances import TOL

ROOT = Path(__file__).parents[2]
QUAD_JUNNYU = dict(
    vocab_size=40,
    hidden_size=16,
    num_hidden_layers=2,
    expansion_factor=2,
    s=8,
    max_position_embeddings=12,
    layer_norm_eps=1e-12,
    hidden_act="silu",
)


def _junnyu_rope(x: torch.Tensor) -> torch.Tensor:
    """JunnYu flash/gau.py ``rope(x, dim=1)`` for x (B, T, 2, s): half-split pairs, positions along dim 1."""
    t, half = x.shape[1], x.shape[-1] // 2
    inv = 10000 ** (-torch.arange(half, dtype=x.dtype) / half)
    angles = torch.arange(t, dtype=x.dtype)[:, None, None] * inv  # (T, 1, s/2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * angles.cos() - x2 * angles.sin(), x2 * angles.cos() + x1 * angles.sin()], dim=-1)


def _junnyu_scale_norm(x: torch.Tensor, scala: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt((x**2).mean(-1, keepdim=True) + eps) * scala


def _junnyu_quad_logits(sd: dict, ids: torch.Tensor, mask: torch.Tensor, cfg: dict) -> torch.Tensor:
    """JunnYu FLASHQuadForMaskedLM forward, written from flash/flash.py + flash/gau.py (eval, ScaleNorm)."""
    eps, n_max, s = cfg["layer_norm_eps"], cfg["max_position_embeddings"], cfg["s"]
    e, t = cfg["expansion_factor"] * cfg["hidden_size"], ids.shape[1]
    emb = "flash_quad.embeddings."
    x = sd[emb + "word_embeddings.weight"][ids] + sd[emb + "token_type_embeddings.weight"][torch.zeros_like(ids)]
    x = x + sd[emb + "scaledsin_embeddings"][:t] * sd[emb + "scaledsin_scalar"]
    x = _junnyu_scale_norm(x, sd[emb + "LayerNorm.scala"], eps)
    pair_mask = (mask[:, None, :] * mask[:, :, None]).float()
    for i in range(cfg["num_hidden_layers"]):
        pre = f"flash_quad.encoder.layer.{i}."
        h = _junnyu_scale_norm(x, sd[pre + "LayerNorm.scala"], eps)
        u, v, base = F.silu(h @ sd[pre + "uv.weight"].T + sd[pre + "uv.bias"]).split([e, e, s], dim=-1)
        base = _junnyu_rope(torch.einsum("...r,hr->...hr", base, sd[pre + "weight"]) + sd[pre + "bias"])
        q, k = base.unbind(dim=-2)
        w = sd[pre + "w"]  # Toeplitz: bias[i, j] = w[j - i + n_max - 1]
        offsets = torch.arange(t)[None, :] - torch.arange(t)[:, None] + n_max - 1
        kernel = torch.relu(q @ k.transpose(1, 2) / n_max + w[offsets]) ** 2 * pair_mask
        x = x + (u * (kernel @ v)) @ sd[pre + "o.weight"].T + sd[pre + "o.bias"]
    head = "cls.predictions."
    h = F.silu(x @ sd[head + "transform.dense.weight"].T + sd[head + "transform.dense.bias"])
    h = _junnyu_scale_norm(h, sd[head + "transform.LayerNorm.scala"], eps)
    return h @ sd[head + "decoder.weight"].T + sd[head + "bias"]


def _random_junnyu_quad(cfg: FLASHConfig) -> dict:
    sd = to_junnyu_state_dict(build_quad_mlm(cfg).state_dict(), cfg, model="flash-quad")
    gen = torch.Generator().manual_seed(1)
    sd = {k: v + 0.3 * torch.randn(v.shape, generator=gen) for k, v in sd.items()}  # no zero biases / unit scales
    sd["cls.predictions.decoder.weight"] = sd["flash_quad.embeddings.word_embeddings.weight"]
    sd["cls.predictions.decoder.bias"] = sd["cls.predictions.bias"]
    pos = torch.arange(cfg.max_position_embeddings, dtype=torch.float32)[:, None]
    half = cfg.hidden_size // 2
    angles = pos * 10000 ** (-torch.arange(half, dtype=torch.float32) / half)
    sd["flash_quad.embeddings.scaledsin_embeddings"] = torch.cat([angles.sin(), angles.cos()], -1)
    sd["flash_quad.embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings)[None]
    for i in range(cfg.num_hidden_layers):
        sd[f"flash_quad.encoder.layer.{i}.a"] = torch.randn(1, cfg.attention_key_size)
        sd[f"flash_quad.encoder.layer.{i}.b"] = torch.randn(1, cfg.attention_key_size)
    return sd


def test_flash_quad_matches_junnyu_formulas(tmp_path: Path) -> None:
    cfg = from_junnyu_quad_config(QUAD_JUNNYU)
    sd = _random_junnyu_quad(cfg)
    (tmp_path / "config.json").write_text(json.dumps(QUAD_JUNNYU))
    torch.save(sd, tmp_path / "pytorch_model.bin")
    model = load_junnyu_checkpoint(tmp_path, model="flash-quad").eval()
    ids = torch.randint(1, 40, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
        reference = _junnyu_quad_logits(sd, ids, mask, QUAD_JUNNYU)
    real = mask.bool()  # JunnYu also zeroes padded query rows; we only mask keys
    torch.testing.assert_close(ours[real], reference[real], **TOL["batched_fp32_reshaped"])


@pytest.mark.parametrize("causal", [False, True])
def test_flash_matches_lucidrains_flash_transformer(causal: bool) -> None:
    """lucidrains ``FLASHTransformer`` (tied output for the comparison) moved by our JunnYu-FLASH converter."""
    flash_pytorch = importlib.import_module("flash_pytorch")
    theirs = flash_pytorch.FLASHTransformer(
        dim=16, num_tokens=40, depth=2, group_size=4, query_key_dim=8, causal=causal, shift_tokens=True
    ).eval()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "rotary" not in name:  # rotary frequencies are a frozen Parameter
                p.add_(0.3 * torch.randn_like(p))
        theirs.to_logits[1].weight.copy_(theirs.token_emb.weight)  # our head is tied
    renames = {
        "token_emb.weight": "flash.embeddings.word_embeddings.weight",
        "abs_pos_emb.scale": "flash.embeddings.scale",
        "to_logits.0.": "cls.predictions.LayerNorm.",
        "to_logits.1.": "cls.predictions.decoder.",
        "layers.": "flash.encoder.layers.",
        ".gamma": ".weight",
        ".beta": ".bias",
    }
    sd = {}
    for key, value in theirs.state_dict().items():
        if "rotary_pos_emb" in key or key.endswith("inv_freq"):
            continue
        for old, new in renames.items():
            key = key.replace(old, new) if not (old == "layers." and "encoder" in key) else key
        sd[key] = value
    junnyu = {
        "vocab_size": 40,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "group_size": 4,
        "query_key_dim": 8,
        "max_position_embeddings": 64,
    }
    cfg = from_junnyu_flash_config(
        junnyu, shift_tokens=True, is_decoder=causal, linear_normalizer="group" if causal else "valid_length"
    )
    ours = lmforge.build_model("flash", task="clm" if causal else "mlm", config=cfg).eval()
    ours.load_state_dict(from_junnyu_state_dict(sd, cfg, model="flash"), strict=True)
    ids = torch.randint(0, 40, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids), **TOL["batched_fp32_reshaped"])


ENCODERS = [
    ("flash-quad", {}),
    ("flash-quad", {"quad_length": None}),
    ("flash", {}),
    ("flash", {"linear_normalizer": "valid_length"}),
    ("flash", {"reduce_group_non_causal_attn": False, "shift_tokens": True}),
]


@pytest.mark.parametrize(("name", "overrides"), ENCODERS)
def test_padded_equals_unpadded(name: str, overrides: dict) -> None:
    model = lmforge.build_model(name, task="mlm", preset="tiny", **overrides).eval()
    ids = torch.randint(1, 128, (1, 11))  # G = 8: the padding crosses a chunk boundary
    padded = torch.cat([ids, torch.zeros(1, 9, dtype=torch.long)], dim=1)
    with torch.no_grad():
        out = model(padded, attention_mask=(padded != 0).long()).logits[:, :11]
        torch.testing.assert_close(out, model(ids).logits, **TOL["batched_fp32_reshaped"])


@pytest.mark.parametrize(("name", "overrides"), [("flash-quad", {}), ("flash", {}), ("flash", {"shift_tokens": True})])
def test_decoders_do_not_leak(name: str, overrides: dict) -> None:
    model = lmforge.build_model(name, task="clm", preset="tiny", **overrides).eval()
    ids = torch.randint(1, 128, (2, 21))
    for t in (3, 7, 8, 15):  # inside, last and first position of a chunk (G = 8)
        changed = ids.clone()
        changed[:, t + 1 :] = torch.randint(1, 128, (2, 20 - t))
        with torch.no_grad():
            torch.testing.assert_close(
                model(changed).logits[:, : t + 1], model(ids).logits[:, : t + 1], **TOL["batched_fp32"]
            )


@pytest.mark.parametrize("name", ["flash-quad", "flash"])
def test_converter_round_trip_and_errors(name: str) -> None:
    cfg = lmforge.get_config(name, preset="tiny")
    model = lmforge.build_model(name, task="mlm", config=cfg)
    theirs = to_junnyu_state_dict(model.state_dict(), cfg, model=name)
    back = from_junnyu_state_dict(theirs, cfg, model=name)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(back[key], value, rtol=1e-6, atol=0)
    broken = dict(theirs)
    removed = next(k for k in broken if "layer" in k and k.endswith("bias"))
    del broken[removed]
    broken["surprise.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="missing keys") as err:
        from_junnyu_state_dict(broken, cfg, model=name)
    assert removed in str(err.value) and "surprise.weight" in str(err.value)


@pytest.mark.parametrize("name", ["flash-quad", "flash"])
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = lmforge.build_model(name, task="clm", preset="tiny")
    ids = torch.randint(1, 128, (2, 19))
    model(ids, labels=ids).loss.backward()
    for param_name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, param_name


def test_presets_and_config_errors() -> None:
    assert FLASH_QUAD_PRESETS["base"]["num_hidden_layers"] == 24 and FLASH_PRESETS["small"]["group_size"] == 256
    for bad in ({"rotary_dim": 5}, {"is_decoder": True, "linear_normalizer": "valid_length"}, {"norm_type": "rms"}):
        with pytest.raises(ValueError):
            lmforge.get_config("flash", preset="tiny", **bad)
    with pytest.raises(ValueError, match="bidirectional"):
        build_flash_mlm(dataclasses.replace(lmforge.get_config("flash", preset="tiny"), is_decoder=True))
    cfg = lmforge.get_config("flash-quad", preset="tiny")
    assert math.isclose(build_quad_mlm(cfg).backbone.embeddings.positions.scale.item(), 32**-0.5, rel_tol=1e-6)


@pytest.mark.parametrize("recipe", ["gau-alpha-base", "flash-quad-small", "flash-small"])
def test_yaml_recipes_parse(recipe: str) -> None:
    cli = importlib.import_module("lmforge.cli")
    path = ROOT / "configs" / "pretrain" / f"{recipe}.yaml"
    args = cli._stage_parser("pretrain", cli.STAGES["pretrain"]).parse_args(["--config", str(path)])
    lmforge.get_config(args.model, preset=args.model_preset, **dict(args.model_overrides))
