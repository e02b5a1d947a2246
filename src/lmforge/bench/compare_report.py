"""Results of ``lmforge compare``: the per-variant summary over seeds, the verdict against the reference (better or
worse only beyond the seed spread, modded-nanogpt's rule), the markdown table and the quality-vs-cost plot.
``bench/compare.py`` re-exports the public names."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

__all__ = ["format_compare", "plot_compare", "summarize_runs", "verdict"]


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}  # fmt: skip


def summarize_runs(runs: list[dict[str, Any]], lengths: list[int], train_length: int) -> dict[str, Any]:
    key = str(train_length)
    return {
        "accuracy": _stats([r["accuracy"][key] for r in runs]),
        "perplexity": _stats([r["perplexity"][key] for r in runs]),
        "tokens_per_s": _stats([r["tokens_per_s"] for r in runs if r["tokens_per_s"]]),
        "train_s": _stats([r["train_s"] for r in runs if r["train_s"]]),
        "accuracy_by_length": {str(n): _stats([r["accuracy"][str(n)] for r in runs]) for n in lengths},
    }


def verdict(summary: dict[str, Any], reference: dict[str, Any], *, is_reference: bool = False) -> str:
    """ "better"/"worse" than the reference only when the seed ranges of accuracy do not overlap."""
    if is_reference:
        return "reference"
    mine, ref = summary["accuracy"], reference["accuracy"]
    if mine["min"] > ref["max"]:
        return "better (beyond seed spread)"
    if mine["max"] < ref["min"]:
        return "worse (beyond seed spread)"
    return "within seed spread"


def _pct(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.2%} ({stats['min']:.2%}-{stats['max']:.2%})"


def format_compare(result: dict[str, Any]) -> str:
    """The bake-off table (accuracy at the training length, with the min-max over seeds) and accuracy per length."""
    env, settings = result["environment"], result["settings"]
    train_length = settings["max_seq_length"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    seeds = ", ".join(str(s) for s in settings["seeds"])
    budget = settings["budget"]
    if budget == "time":
        budget = f"time ({settings['budget_minutes']:g} min of training per run)"
    lines = [
        f"Command: `{env['command']}`",
        "",
        f"Date {env['date']}; {env['device']}, {env['cpu_count']} CPUs, {env['threads']} threads; {versions}; "
        f"total {env['total_s'] / 60:.1f} min. Data `{result['data']}`; length {train_length}, batch "
        f"{settings['per_device_train_batch_size']}, lr {settings['learning_rate']}, budget {budget}, "
        f"seeds {seeds}; width {settings['hidden_size']}, {settings['num_layers']} blocks (GAU stacks: 2x layers).",
        "",
        f"| variant | params | steps | masked-token accuracy at {train_length}, mean (min-max over seeds) | "
        "perplexity | tokens/s, best of seeds | train min, mean | activation MB | train GFLOP/token | "
        "verdict vs reference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, v in result["variants"].items():
        s = v["summary"]
        flops = v["train_flops_per_token"]
        lines.append(
            f"| {name} | {v['params'] / 1e6:.2f} M | {v['steps']} | {_pct(s['accuracy'])} | "
            f"{s['perplexity']['mean']:.1f} ({s['perplexity']['min']:.1f}-{s['perplexity']['max']:.1f}) | "
            f"{s['tokens_per_s']['max']:,.0f} | {s['train_s']['mean'] / 60:.1f} | "
            f"{v['activation_bytes'] / 2**20:,.1f} | "
            f"{'-' if flops is None else f'{flops / 1e9:.4f}'} | {v['verdict']} |"
        )
    lengths = result["eval_lengths"]
    lines += ["", "Masked-token accuracy per evaluation length (mean over seeds; length generalisation):", ""]
    header = " | ".join(f"{n}" + (" (train)" if n == train_length else "") for n in lengths)
    lines.append(f"| variant | {header} |")
    lines.append("|---|" + "---:|" * len(lengths))
    for name, v in result["variants"].items():
        by_length = v["summary"]["accuracy_by_length"]
        lines.append(f"| {name} | " + " | ".join(f"{by_length[str(n)]['mean']:.2%}" for n in lengths) + " |")
    lines += [
        "",
        "Verdict: better/worse only when the accuracy ranges over seeds do not overlap. tokens/s: training tokens "
        "per second of the fastest seed's run (load from other jobs only slows a run down). Activation MB: bytes "
        "saved for backward by one step. Plot: accuracy vs analytic training compute (steps x tokens x FLOPs).",
    ]
    return "\n".join(lines) + "\n"


def plot_compare(result: dict[str, Any], path: Path) -> Path:
    """Quality vs cost: accuracy (mean, min-max bars over seeds) against the analytic training compute (tokens
    seen x training FLOPs per token: deterministic, unlike wall time on a shared machine), one point per variant;
    variants without a FLOP formula are placed at their best wall time instead (noted in the label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (name, v) in enumerate(result["variants"].items()):
        acc = v["summary"]["accuracy"]
        tokens = statistics.fmean(run["tokens"] for run in v["runs"])
        flops = v["train_flops_per_token"]
        cost = tokens * flops / 1e12 if flops else v["summary"]["train_s"]["min"]
        ax.errorbar(
            [cost],
            [acc["mean"] * 100],
            yerr=[[(acc["mean"] - acc["min"]) * 100], [(acc["max"] - acc["mean"]) * 100]],
            fmt="o",
            capsize=3,
            color=f"C{i % 10}",
            label=name if flops else f"{name} (x: best wall s)",
        )
    ax.set(xlabel="training compute per run (TFLOP, analytic)", ylabel="masked-token accuracy (%)")
    ax.set_title("quality vs cost (bars: min-max over seeds; up and left is better)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
