"""Merge `lmforge compare` results that ran as separate invocations (e.g. one per core, each with --threads 1) into
one NAME.json/.md/.png, the verdicts recomputed against the first file's reference variant.

    python benchmarks/compare_merge.py runs/compare_domain/compare_domain_a.json \
        runs/compare_domain/compare_domain_b.json --output_dir benchmarks --name compare_domain

The invocations must share the data, length, width, depth, batch, lr, budget and seeds (checked); each keeps its own
calibrated seconds per step, so with ``--budget_minutes`` give them the same load (run them side by side).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmforge.bench.compare_report import format_compare, plot_compare, verdict

SHARED = ("data_dir", "max_seq_length", "hidden_size", "num_layers", "per_device_train_batch_size", "learning_rate",
          "budget", "budget_minutes", "max_steps", "seeds", "eval_max_tokens", "threads")  # fmt: skip


def merge(results: list[dict]) -> dict:
    first = results[0]
    for other in results[1:]:
        differing = [k for k in SHARED if first["settings"].get(k) != other["settings"].get(k)]
        if differing or other["eval_lengths"] != first["eval_lengths"]:
            raise SystemExit(f"error: the results differ in {differing or ['eval_lengths']}; they cannot be one table")
        clash = set(first["variants"]) & set(other["variants"])
        if clash:
            raise SystemExit(f"error: variants {sorted(clash)} appear in more than one result")
    merged = dict(first, variants={}, parts=[])
    for result in results:
        merged["variants"] |= result["variants"]
        merged["parts"].append({"settings": result["settings"], "environment": result["environment"]})
    merged["settings"] = dict(first["settings"], variants=list(merged["variants"]))
    merged["environment"] = dict(first["environment"], total_s=sum(r["environment"]["total_s"] for r in results),
                                 command=" & ".join(r["environment"]["command"] for r in results))  # fmt: skip
    reference = merged["variants"][first["reference"]]["summary"]
    for name, variant in merged["variants"].items():
        variant["verdict"] = verdict(variant["summary"], reference, is_reference=name == first["reference"])
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    merged = merge([json.loads(path.read_text(encoding="utf-8")) for path in args.results])
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.name}.json").write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    markdown = format_compare(merged)
    (args.output_dir / f"{args.name}.md").write_text(markdown, encoding="utf-8")
    plot_compare(merged, args.output_dir / f"{args.name}.png")
    print(markdown)


if __name__ == "__main__":
    main()
