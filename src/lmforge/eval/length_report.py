"""Output of ``lmforge evaluate length``: the Markdown table of ``length.json`` and the length plot (accuracy or
perplexity against evaluation length, log2 x axis, the training length marked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table of ``length.json``'s results (one row per length)."""
    train_row = next((r for r in result["results"] if r["length"] == result.get("training_length")), None)
    mlm = result["objective"] == "mlm"
    header = "| length | sequences | predictions | accuracy | loss | perplexity |"
    rule = "|---:|---:|---:|---:|---:|---:|"
    if train_row is not None:
        header += " accuracy vs training length |" if mlm else " perplexity vs training length |"
        rule += "---:|"
    lines = [header, rule]
    for row in result["results"]:
        mark = " (train)" if row["length"] == result.get("training_length") else ""
        line = (
            f"| {row['length']}{mark} | {row['sequences']} | {row['predictions']} | {100 * row['accuracy']:.2f}% "
            f"| {row['loss']:.4f} | {row['perplexity']:.2f} |"
        )
        if train_row is not None:
            if mlm:
                line += f" {100 * (row['accuracy'] - train_row['accuracy']):+.2f} pts |"
            else:
                line += f" {row['perplexity'] / train_row['perplexity']:.3f}x |"
        lines.append(line)
    return "\n".join(lines)


def plot_length(results: dict[str, dict[str, Any]], out: Path, *, training_length: int | None = None) -> Path:
    """Accuracy (MLM) or perplexity (CLM) against evaluation length, one line per entry of ``results``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    objective = next(iter(results.values()))["objective"]
    for name, result in results.items():
        lengths = [r["length"] for r in result["results"]]
        values = [100 * r["accuracy"] if objective == "mlm" else r["perplexity"] for r in result["results"]]
        ax.plot(lengths, values, "o-", label=name)
    if training_length is not None:
        label = f"training length {training_length}"
        ax.axvline(training_length, color="grey", linestyle="--", linewidth=1, label=label)
    ax.set_xscale("log", base=2)
    all_lengths = sorted({r["length"] for result in results.values() for r in result["results"]})
    ax.set_xticks(all_lengths, [str(n) for n in all_lengths])
    ax.set_xlabel("evaluation length (tokens)")
    ax.set_ylabel("masked-token accuracy (%)" if objective == "mlm" else "perplexity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
