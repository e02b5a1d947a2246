"""Reports of ``lmforge bench speed``: the one-line progress of a row, the markdown table and the log-log plot of
time per token vs length."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["format_markdown", "plot_speed", "row_line"]


def row_line(row: dict[str, Any]) -> str:
    head = f"{row['model']:12s} {row['dtype']:9s} T={row['length']:<6d}"
    if row.get("status") != "ok":
        return f"{head} {row.get('status')}"
    line = f"{head} ours {row['ours_tokens_per_s']:9,.0f} tok/s"
    if "ratio" in row:
        line += f"  peer {row['peer_tokens_per_s']:9,.0f} tok/s  peer/ours time {row['ratio']['median']:.2f}x"
    if "checkpointing_memory_ratio" in row:
        line += f"  memory with checkpointing {row['checkpointing_memory_ratio']:.2f}x"
    for key, ops in row.get("profile", {}).items():
        line += f"\n    {key} profile: " + "; ".join(f"{o['op']} {o['share']:.0%} ({o['calls']}x)" for o in ops)
    return line


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def format_markdown(result: dict[str, Any]) -> str:
    """The result table: one row per model, dtype and length; ratios are peer time / our time (> 1 = ours faster)."""
    env = result["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines = [
        f"Command: `{env['command']}`",
        "",
        f"Date {env['date']}; {env['device']}, {env['cpu_count']} CPUs, {env['threads']} threads; {versions}; "
        f"best fp32 matmul peak {env['peak_flops_fp32'] / 1e9:.1f} GFLOP/s; load average "
        f"{env['load_average_start']:.2f} at the start, {env['load_average_end']:.2f} at the end (1-minute; a "
        "shared machine when > 0.5).",
        "",
        "| model | task | peer | dtype | T | batch | ours tokens/s | peer tokens/s | speed-up vs peer, median (range) "
        "| ours MB | peer MB | GFLOP/token | MFU ours | matmul peak GFLOP/s | ours MB, checkpointing (on/off) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    models = result["models"]
    for row in result["rows"]:
        model = models[row["model"]]
        peer = row.get("peer_label") or f"none ({model.get('peer_error', '')})"
        start = f"| {row['model']} | {row['task']} | {peer} | {row['dtype']} | {row['length']} | {row['batch']} |"
        if row.get("status") != "ok":
            lines.append(f"{start} {row['status']} | | | | | | | | |")
            continue
        memory = row["memory_bytes"]
        ratio = row.get("ratio")
        ratio_text = f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio else "-"
        peer_rate = f"{row['peer_tokens_per_s']:,.0f}" if "peer" in row else "-"
        flops = row.get("flops_per_token")
        mfu = row.get("ours_mfu")
        ckpt = row.get("checkpointing_memory_ratio")
        ckpt_text = "-" if ckpt is None else f"{_mb(memory['ours_checkpointed'])} ({ckpt:.2f}x)"
        lines.append(
            f"{start} {row['ours_tokens_per_s']:,.0f} | {peer_rate} | {ratio_text} | {_mb(memory.get('ours'))} | "
            f"{_mb(memory.get('peer'))} | {'-' if flops is None else f'{flops / 1e9:.3f}'} | "
            f"{'-' if mfu is None else f'{mfu:.1%}'} | {row['peak_flops'] / 1e9:.0f} | {ckpt_text} |"
        )
    for name, model in models.items():
        if "error" in model:
            lines.append(f"| {name} | | | | | | not measured: {model['error']} | | | | | | | | |")
    lines.append("")
    on_cpu = env["device"].startswith("CPU")
    memory_note = "bytes saved for backward in one step (activation memory)" if on_cpu else "peak allocated bytes"
    lines.append(
        "Speed-up = peer time / our time per repeat (ours and the peer alternate; > 1: ours is faster). "
        f"Memory (MB): {memory_note}. GFLOP/token: analytic training FLOPs (`lmforge bench flops`). MFU: against "
        "the fp32 matmul peak sampled around the row's timed steps (last column; it moves with the machine's load)."
    )
    return "\n".join(lines) + "\n"


def plot_speed(result: dict[str, Any], path: Path) -> Path:
    """Best time per token over the repeats (load only adds time) vs length, log-log; ours solid, peers dashed,
    one colour per architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.0, 4.6))
    rows = [r for r in result["rows"] if r.get("status") == "ok" and r["dtype"] == "float32"]
    for i, name in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = sorted((r for r in rows if r["model"] == name), key=lambda r: r["length"])
        colour = f"C{i % 10}"
        lengths = [r["length"] for r in mine]
        ax.plot(lengths, [r["ours"]["min"] * 1e6 for r in mine], marker="o", color=colour, label=name)
        peers = [r for r in mine if "peer" in r]
        if peers:
            label = f"{name} peer: {peers[0]['peer_label']}"
            ax.plot([r["length"] for r in peers], [r["peer"]["min"] * 1e6 for r in peers], marker="x",
                    linestyle="--", color=colour, label=label)  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="sequence length (tokens)", ylabel="fwd+bwd us per token (best)")
    ax.set_title(f"{result['environment']['device']}, fp32 (lower is better)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
