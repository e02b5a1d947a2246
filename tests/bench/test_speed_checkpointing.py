"""``lmforge bench speed`` measures activation memory with gradient checkpointing on against off, per architecture."""

from __future__ import annotations

from pathlib import Path

from lmforge.bench.speed import SpeedArgs, bench_speed
from lmforge.models.registry import list_models

TINY = dict(hidden_size=32, num_layers=2, vocab_size=300, tokens_per_step=64, warmup=0, steps=1, threads=1)


def test_checkpointing_memory_ratio_per_architecture(tmp_path: Path) -> None:
    args = SpeedArgs(lengths=[64], dtypes=["float32"], peers=False, plot=False, output_dir=str(tmp_path), **TINY)
    rows = {r["model"]: r for r in bench_speed(args)["rows"]}
    assert set(rows) == set(list_models())
    for name, row in rows.items():
        assert row["status"] == "ok", row
        ratio = row["checkpointing_memory_ratio"]
        assert ratio == row["memory_bytes"]["ours_checkpointed"] / row["memory_bytes"]["ours"]
        # reversible Reformer layers keep no per-layer activations already: checkpointing adds nothing there
        assert (0.99 <= ratio <= 1.01) if name == "reformer" else ratio < 0.9, (name, ratio)
    markdown = (tmp_path / "bench_speed.md").read_text()
    assert "ours MB, checkpointing (on/off)" in markdown and "x) |" in markdown
