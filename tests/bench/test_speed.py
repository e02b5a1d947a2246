"""``lmforge bench speed`` on tiny shapes: one length, one timed step, every output file, the peer table."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from lmforge import cli
from lmforge.bench.peers import PEERS, build_peer
from lmforge.bench.speed import SpeedArgs, bench_config, bench_speed, measure_pair, profile_step
from lmforge.models.registry import build_model, list_models

TINY = dict(hidden_size=32, num_layers=2, vocab_size=300, tokens_per_step=64, warmup=0, steps=1, threads=1)


def test_tiny_run_writes_json_markdown_and_plot(tmp_path: Path) -> None:
    args = SpeedArgs(models=["bert", "gau-alpha"], lengths=[32], output_dir=str(tmp_path), **TINY)
    result = bench_speed(args)
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {"bench_speed.json", "bench_speed.md", "bench_speed.png"}
    saved = json.loads((tmp_path / "bench_speed.json").read_text())
    assert saved["environment"]["versions"]["torch"] == torch.__version__ and saved["environment"]["command"]
    rows = {(r["model"], r["dtype"]): r for r in result["rows"]}
    bert = rows["bert", "float32"]
    assert bert["status"] == "ok" and bert["batch"] == 2 and bert["peer_label"] == "transformers BertForMaskedLM"
    assert bert["ours_tokens_per_s"] > 0 and bert["peer_tokens_per_s"] > 0 and bert["ratio"]["median"] > 0
    assert bert["memory_bytes"]["ours"] > 0 and 0 < bert["ours_mfu"] < 1
    assert "ratio" not in rows["gau-alpha", "float32"]  # no peer: measured alone
    assert result["models"]["gau-alpha"]["peer_error"] == "no peer listed"
    assert rows["bert", "bfloat16"]["status"].startswith("not measured")  # CPU: bf16 recorded, not timed
    markdown = (tmp_path / "bench_speed.md").read_text()
    assert "| bert | mlm | transformers BertForMaskedLM | float32 | 32 | 2 |" in markdown
    assert "none (no peer listed)" in markdown
    (tmp_path / "bench_speed.png").unlink()
    assert bench_speed(SpeedArgs(output_dir=str(tmp_path), replot=True))["rows"] == saved["rows"]
    assert (tmp_path / "bench_speed.png").is_file()  # redrawn from the JSON, nothing measured


def test_every_listed_peer_matches_our_shape() -> None:
    """Peers are built from our config: same parameter count where the parameterisations coincide, and a listed
    peer exists for a registered architecture (or the table entry is for one still to come)."""
    for name, peer in PEERS.items():
        if name not in list_models():
            continue
        cfg = bench_config(name, hidden_size=32, num_layers=2, vocab_size=300, max_length=64)
        ours = build_model(name, task=peer.task, config=cfg)
        theirs = build_peer(name, getattr(ours, "config", cfg))
        if name in ("bert", "gpt"):
            assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters())
    with pytest.raises(ValueError, match="no peer"):
        build_peer("gau-alpha", None)


def test_matched_shape_and_gau_depth() -> None:
    bert = bench_config("bert", hidden_size=64, num_layers=3, vocab_size=100, max_length=1024)
    gau = bench_config("gau-alpha", hidden_size=64, num_layers=3, vocab_size=100, max_length=1024)
    assert (bert.hidden_size, bert.num_hidden_layers, bert.intermediate_size) == (64, 3, 256)
    assert bert.max_position_embeddings == 1024 and bert.hidden_dropout_prob == 0.0
    assert (gau.num_hidden_layers, gau.intermediate_size, gau.attention_key_size) == (6, 128, 32)
    reformer = bench_config("reformer", hidden_size=64, num_layers=2, vocab_size=100, max_length=512)
    assert reformer.axial_pos_shape == (16, 32) and sum(reformer.axial_pos_embds_dim) == 64


def test_steps_alternate_and_ratios_are_per_repeat() -> None:
    calls: list[str] = []
    steps = {"ours": lambda: calls.append("ours"), "peer": lambda: calls.append("peer")}
    timing = measure_pair(steps, tokens=10, warmup=1, repeats=4)
    assert calls == ["ours", "peer", "ours", "peer", "peer", "ours", "ours", "peer", "peer", "ours"]
    assert len(timing["ours"]["raw"]) == 4 and timing["ratio"]["min"] <= timing["ratio"]["median"]


def test_cli_and_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "speed", "--models", '["flash"]', "--lengths", "[16]", "--hidden_size", "32", "--num_layers",
            "1", "--vocab_size", "200", "--tokens_per_step", "32", "--warmup", "0", "--steps", "1", "--threads",
            "1", "--dtypes", '["float32"]', "--plot", "false", "--output_dir", str(tmp_path)]  # fmt: skip
    result = cli.run(argv)
    assert [r["peer_label"] for r in result["rows"]] == ["FLASH-pytorch FLASHTransformer"]
    assert not (tmp_path / "bench_speed.png").exists()
    for bad, message in ((["--models", '["nope"]'], "unknown models"), (["--steps", "0"], "--steps must be >= 1")):
        with pytest.raises(SystemExit):
            cli.run(["bench", "speed", *bad, "--output_dir", str(tmp_path)])
        assert message in capsys.readouterr().err


def test_profile_step_ranks_ops_by_self_time() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
    x = torch.randn(32, 64)

    def step() -> None:
        model(x).square().mean().backward()

    ops = profile_step(step, top=4)
    assert 1 <= len(ops) <= 4 and all(a["ms"] >= b["ms"] for a, b in itertools.pairwise(ops))
    assert 0 < sum(o["share"] for o in ops) <= 1.0 + 1e-9


def test_compile_needs_a_warmup_step() -> None:
    with pytest.raises(ValueError, match="--warmup"):
        SpeedArgs(compile=True, warmup=0)


@pytest.mark.slow
def test_compiled_pair_runs(tmp_path: Path) -> None:
    args = SpeedArgs(models=["gpt"], lengths=[16], output_dir=str(tmp_path), plot=False, dtypes=["float32"],
                     compile=True, **(TINY | {"warmup": 1}))  # fmt: skip
    (row,) = bench_speed(args)["rows"]
    assert row["status"] == "ok" and row["ratio"]["median"] > 0
