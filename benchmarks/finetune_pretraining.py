"""Does pretraining help fine-tuning? The demo's pretrained GAU-alpha vs the same architecture from random weights,
fine-tuned on a bundled labelled split with the demo's settings, several seeds each, in one run.

Both arms use the pretraining run's config and tokenizer; only the initial backbone weights differ. Reported: dev
accuracy per seed, mean, min-max, the majority-class baseline, and wall time per run.

Usage: ``python benchmarks/finetune_pretraining.py --pretrained runs/demo [--task lo_topic] [--seeds 1,2,3]
[--json out.json]`` (``runs/demo`` from ``lmforge demo``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from lmforge.demo import find_corpus
from lmforge.tasks.finetune import FinetuneArgs, finetune
from lmforge.train.checkpoint import TOKENIZER_DIR, load_model_info, resolve_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--task", default="lo_topic")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = resolve_checkpoint(args.pretrained)
    info = load_model_info(checkpoint)
    data = find_corpus()[0].parent.parent / "clue" / args.task
    arms = {
        "pretrained": dict(model=str(checkpoint)),
        "random init": dict(model=info["model"], model_overrides=info["config"],
                            tokenizer_dir=str(checkpoint / TOKENIZER_DIR)),
    }  # fmt: skip
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            for arm, model_args in arms.items():  # interleaved: machine load drifts hit both arms alike
                started = time.perf_counter()
                report = finetune(
                    FinetuneArgs(
                        "classification", data_dir=str(data), output_dir=f"{tmp}/{arm}-{seed}", max_seq_length=64,
                        per_device_train_batch_size=32, learning_rate=1e-3, num_train_epochs=args.epochs,
                        warmup_ratio=0.1, seed=seed, disable_tqdm=True, **model_args,
                    )
                )  # fmt: skip
                results[arm].append({"seed": seed, "accuracy": report["dev"]["accuracy"],
                                     "macro_f1": report["dev"]["macro_f1"], "wall_s": time.perf_counter() - started,
                                     "majority": report["dev"]["majority_baseline_accuracy"]})  # fmt: skip
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} threads={args.threads}",
        "pretrained": str(checkpoint),
        "task": args.task,
        "runs": results,
    }
    print("| arm | dev accuracy mean | min-max | macro-F1 mean | majority baseline | s/run |")
    print("|---|---:|---:|---:|---:|---:|")
    for arm, runs in results.items():
        accuracy = [r["accuracy"] for r in runs]
        print(f"| {arm} | {statistics.mean(accuracy):.3f} | {min(accuracy):.3f}-{max(accuracy):.3f} | "
              f"{statistics.mean(r['macro_f1'] for r in runs):.3f} | {runs[0]['majority']:.3f} | "
              f"{statistics.mean(r['wall_s'] for r in runs):.0f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
