"""Analytic FLOPs per token (``lmforge.bench.flops``) against ``torch.utils.flop_counter.FlopCounterMode``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lmforge.bench.flops import (
    FORMULAS,
    FlopsArgs,
    bench_flops,
    counted_flops_per_token,
    flops_per_token,
    sample_ids,
    train_flops_per_token,
)
from lmforge.models.registry import build_model, get_config, get_entry, list_models

TOLERANCE = 0.05  # the bound; the formulas here are exact for the tiny configs (ratio 1.0000)


def _tiny(name: str, preset: str = "tiny", **overrides):
    cfg = get_config(name, preset=preset, **overrides)
    if hasattr(cfg, "attn_implementation"):  # FlopCounterMode has no formula for the CPU SDPA kernel
        cfg = dataclasses.replace(cfg, attn_implementation="eager")
    return cfg


def _check(name: str, cfg, task: str, length: int, *, backward: bool) -> float:
    torch.manual_seed(0)
    model = build_model(name, task=task, config=cfg)
    ids = sample_ids(cfg, (2, length))
    counted = counted_flops_per_token(model, ids, backward=backward)
    analytic = (train_flops_per_token if backward else flops_per_token)(name, model.config, length, task=task)
    assert analytic is not None
    assert abs(counted / analytic - 1) <= TOLERANCE, (name, task, length, counted, analytic)
    return counted / analytic


@pytest.mark.parametrize("name", sorted(list_models()))
def test_every_registered_architecture_has_a_formula_within_5_percent(name: str) -> None:
    assert name in FORMULAS, f"{name} is registered but lmforge.bench.flops.FORMULAS has no formula for it"
    entry = get_entry(name)
    for task in [t for t in ("mlm", "clm", "backbone") if t in entry.builders]:
        _check(name, _tiny(name), task, 24, backward=True)


@pytest.mark.parametrize(
    ("name", "preset", "task", "length"),
    [
        ("gpt", "tiny-modern", "clm", 20),  # GQA, SwiGLU, untied head
        ("gpt", "tiny-moe", "clm", 20),  # router + top-k routed + shared experts
        ("bert", "roformer-tiny", "mlm", 17),
        ("flash", "tiny", "clm", 21),  # causal, length not a multiple of G = 8: padded chunks are computed
        ("flash", "tiny", "mlm", 5),  # shorter than one chunk
        ("gau-alpha", "tiny", "clm", 33),
        ("flash-quad", "tiny", "backbone", 12),
        ("reformer", "tiny", "clm", 16),  # one chunk: full attention, no hashing
        ("reformer", "tiny", "mlm", 64),  # 4 chunks, hashing
        ("canine", "tiny", "backbone", 30),  # local chunks of 8 padded, 7 molecules
    ],
)
def test_variants_forward_only(name: str, preset: str, task: str, length: int) -> None:
    _check(name, _tiny(name, preset), task, length, backward=False)


@pytest.mark.parametrize(
    ("overrides", "length"),
    [
        ({"use_reversible": False}, 48),  # stored activations: 3 x forward (hashing has no backward)
        ({"num_hashes": 2}, 64),  # two rounds
        ({"num_buckets": [2, 4]}, 64),  # factorised buckets
    ],
)
def test_reformer_training_count(overrides: dict, length: int) -> None:
    _check("reformer", _tiny("reformer", **overrides), "clm", length, backward=True)


def test_scaling_in_length_matches_the_attention_kind() -> None:
    gau, flash = get_config("gau-alpha", preset="tiny"), get_config("flash", preset="tiny")
    # quadratic attention: the per-token cost grows linearly in T, by exactly 2 (K + E) per layer per token
    step = flops_per_token("gau-alpha", gau, 65) - flops_per_token("gau-alpha", gau, 64)
    assert step == pytest.approx(gau.num_hidden_layers * 2 * (gau.attention_key_size + gau.intermediate_size))
    # mixed chunk: constant per token at multiples of G
    g = flash.group_size
    assert flops_per_token("flash", flash, 4 * g) == flops_per_token("flash", flash, 64 * g)
    assert train_flops_per_token("flash", flash, g, task="mlm") == 3 * flops_per_token("flash", flash, g, task="mlm")


def test_bench_flops_reports_and_cross_checks(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench_flops(FlopsArgs(models=["gau-alpha", "flash"], lengths=[16, 64], threads=1))
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "gau-alpha" in out and result["peak_flops"] > 0
    for entry in result["models"].values():
        assert entry["counted"] / entry["analytic"] == pytest.approx(1.0, abs=TOLERANCE)
    with pytest.raises(ValueError, match="unknown models"):
        bench_flops(FlopsArgs(models=["nope"]))
