"""``lmforge compare`` on the tiny prepared data: two variants x two seeds x a few steps, table, plot, verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge import cli
from lmforge.bench.compare import CompareArgs, compare, verdict


def _stats(low: float, high: float) -> dict:
    return {"accuracy": {"mean": (low + high) / 2, "min": low, "max": high}}


def test_tiny_bake_off(tmp_path: Path, mlm_data: Path) -> None:
    args = CompareArgs(
        variants=["gau-alpha squared_relu", "small-flash"],
        custom_variants={"small-flash": {"model": "flash", "overrides": {"group_size": 8}}},
        seeds=[1, 2],
        data_dir=str(mlm_data),
        output_dir=str(tmp_path),
        max_seq_length=32,
        eval_lengths=[16],
        eval_max_tokens=512,
        hidden_size=32,
        num_layers=1,
        budget="flops",
        max_steps=4,
        per_device_train_batch_size=4,
        threads=1,
    )
    result = compare(args)
    assert {p.name for p in tmp_path.iterdir()} >= {"compare.json", "compare.md", "compare.png", "runs"}
    saved = json.loads((tmp_path / "compare.json").read_text())
    gau, flash = saved["variants"]["gau-alpha squared_relu"], saved["variants"]["small-flash"]
    assert gau["config"]["normalization"] == "squared_relu" and flash["config"]["group_size"] == 8
    assert gau["steps"] == 4 and gau["verdict"] == "reference"
    # equal compute: steps scale inversely with the analytic training FLOPs per token
    expected = round(4 * gau["train_flops_per_token"] / flash["train_flops_per_token"])
    assert flash["steps"] == max(1, expected)
    for variant in (gau, flash):
        assert [run["seed"] for run in variant["runs"]] == [1, 2]
        assert set(variant["runs"][0]["accuracy"]) == {"16", "32"}
        assert 0.0 <= variant["summary"]["accuracy"]["min"] <= variant["summary"]["accuracy"]["max"] <= 1.0
        assert variant["summary"]["tokens_per_s"]["mean"] > 0 and variant["activation_bytes"] > 0
    markdown = (tmp_path / "compare.md").read_text()
    assert "| gau-alpha squared_relu |" in markdown and "32 (train)" in markdown
    assert result["reference"] == "gau-alpha squared_relu"
    (tmp_path / "compare.md").unlink()
    assert (
        compare(CompareArgs(output_dir=str(tmp_path), report_only=True))["variants"].keys() == saved["variants"].keys()
    )
    assert (tmp_path / "compare.md").read_text() == markdown  # rewritten from the JSON, nothing trained


def test_verdict_needs_the_difference_to_exceed_the_seed_spread() -> None:
    reference = _stats(0.10, 0.12)
    assert verdict(_stats(0.125, 0.13), reference) == "better (beyond seed spread)"
    assert verdict(_stats(0.05, 0.09), reference) == "worse (beyond seed spread)"
    assert verdict(_stats(0.115, 0.20), reference) == "within seed spread"  # higher mean, overlapping ranges
    assert verdict(reference, reference, is_reference=True) == "reference"


def test_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="at least 2 seeds"):
        CompareArgs(seeds=[1])
    with pytest.raises(SystemExit):
        cli.run(["compare", "--variants", '["no-such-variant"]', "--output_dir", str(tmp_path)])
    assert "unknown variant 'no-such-variant'" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # the name is checked before any data is prepared


def test_equal_time_budget_sets_steps_from_timed_steps(tmp_path: Path, mlm_data: Path) -> None:
    """--budget_minutes: each variant's steps come from its timed seconds per step, so a variant twice as slow gets
    about half the steps; the table says the budget and the minutes each run took."""
    args = CompareArgs(
        variants=["bert", "wide-bert"],
        custom_variants={"wide-bert": {"model": "bert", "overrides": {"intermediate_size": 512}}},
        seeds=[1, 2], data_dir=str(mlm_data), output_dir=str(tmp_path), max_seq_length=32, eval_lengths=[32],
        eval_max_tokens=256, hidden_size=32, num_layers=1, budget_minutes=0.02, per_device_train_batch_size=4,
        threads=1, plot=False,
    )  # fmt: skip
    assert args.budget == "time"
    result = compare(args)
    for variant in result["variants"].values():
        assert variant["steps"] == max(1, int(0.02 * 60 / variant["timed_s_per_step"]))
    assert "budget time (0.02 min of training per run)" in (tmp_path / "compare.md").read_text()
    with pytest.raises(ValueError, match="needs --budget_minutes"):
        CompareArgs(budget="time")
