"""Length generalisation (issue 5, item 5): train at length 512, evaluate masked-token accuracy at 64 ... 1024.

Four encoders, identical except for the attention normaliser, trained with the same data, steps, optimizer and
seed on the bundled corpus (``data/corpus``), then evaluated with ``lmforge evaluate length``:

- ``gau-alpha softmax_plus``: ``softmax(log_512(n) q k^T / sqrt(s))``, n = valid keys (GAU-alpha);
- ``gau-alpha squared_relu``: ``relu(q k^T / sqrt(s))^2 / n`` (bert4keras option), n = valid keys;
- ``flash-quad actual-n``: the FLASH paper kernel ``relu(q k^T / n + b)^2`` with n = valid keys
  (JunnYu/FLASHQuad_pytorch before its fix, FLASHQuad_pytorch#1);
- ``flash-quad fixed-n``: the same kernel with n fixed at the training length 512 (JunnYu's fix).

Target: softmax_plus keeps its accuracy at length 64 within 2 points of its accuracy at 512.

Data: consecutive documents of one corpus file are joined (with a newline) until at least 1,500 characters, so
almost every training window is a full 512 tokens ("training at length 512" means it: the bundled poems are ~130
characters, and an MLM sequence never crosses a document). Held out: 5% of the joined documents (prepare's hashed
split), evaluated as one stream (``lmforge.eval.length``: the same masked tokens at every length).

Scale (CPU demo scale, ~4 minutes per model on one core): hidden 128, 4 GAU layers, e=256, s=64, dropout 0,
batch 4 x 512, 450 AdamW steps (lr 3e-3, warm-up 10%, cosine to 10%), about 0.8 M tokens (0.9 epoch) of the
joined corpus. One torch thread: on a 2-core machine shared with other jobs, two OpenMP threads spin-wait for
each other and a step can take 10x longer (measured).

    .venv/bin/python benchmarks/length_generalisation.py                   # ~16 min training + ~2 min evaluation
    .venv/bin/python benchmarks/length_generalisation.py --steps 50        # a smoke run (numbers meaningless)
    .venv/bin/python benchmarks/length_generalisation.py --evaluate-only   # keep the runs, evaluate again
    .venv/bin/python benchmarks/length_generalisation.py --only-report     # re-read the runs, rewrite the table

Writes the runs to ``benchmarks/out/length_generalisation/`` (each with length.json/.md/.png), the combined
``benchmarks/length_generalisation.json`` and the plot ``benchmarks/length_generalisation.png``; prints the table
for ``benchmarks/length_generalisation.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from lmforge.data.prepare import PrepareAllArgs, prepare_all
from lmforge.demo import OPTIMIZER_RECIPE
from lmforge.eval.length import LengthArgs, evaluate_length, plot_length
from lmforge.train.config import PretrainArgs
from lmforge.train.metrics import read_metrics
from lmforge.train.pretrain import pretrain

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "length_generalisation"
LENGTHS = [64, 128, 256, 512, 1024]  # the lengths
EXTRA_LENGTHS = [16, 32]  # shorter still, where an n-dependent kernel scale is furthest from training (cheap)
TRAIN_LENGTH = 512
MIN_DOC_CHARS = 1500

SHAPE = dict(hidden_size=128, num_hidden_layers=4, intermediate_size=256, attention_key_size=64)
VARIANTS: dict[str, tuple[str, dict]] = {
    "gau-alpha softmax_plus": (
        "gau-alpha",
        {**SHAPE, "normalization": "softmax_plus", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    ),
    "gau-alpha squared_relu": (
        "gau-alpha",
        {**SHAPE, "normalization": "squared_relu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    ),
    "flash-quad actual-n": ("flash-quad", {**SHAPE, "quad_length": None, "max_position_embeddings": TRAIN_LENGTH}),
    "flash-quad fixed-n": (
        "flash-quad",
        {**SHAPE, "quad_length": TRAIN_LENGTH, "max_position_embeddings": TRAIN_LENGTH},
    ),
}


def slug(name: str) -> str:
    return name.replace(" ", "-").replace("_", "-")


def join_documents(corpus: Path, out: Path, *, min_chars: int) -> Path:
    """Consecutive documents of each file joined by a newline until ``min_chars`` characters."""
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted(corpus.glob("*.jsonl")):
        texts = [json.loads(line)["text"] for line in source.read_text(encoding="utf-8").splitlines() if line]
        joined, part, size = [], [], 0
        for text in texts:
            part.append(text)
            size += len(text)
            if size >= min_chars:
                joined.append("\n".join(part))
                part, size = [], 0
        if part:
            joined.append("\n".join(part))
        lines = (json.dumps({"id": f"{source.stem}-{i}", "text": t}, ensure_ascii=False) for i, t in enumerate(joined))
        (out / source.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{source.name}: {len(texts)} documents -> {len(joined)} joined documents of >= {min_chars} characters")
    return out


def prepare(data: Path) -> Path:
    if (data / "shards" / "validation" / "index.json").is_file():
        return data
    joined = join_documents(REPO / "data" / "corpus", data / "joined", min_chars=MIN_DOC_CHARS)
    prepare_all(
        PrepareAllArgs(
            input=[str(joined)],
            output_dir=str(data),
            cjk_continuations=False,
            max_seq_length=TRAIN_LENGTH,
            validation_split_percentage=5.0,
            seed=42,
        )
    )
    return data


def train(name: str, data: Path, *, steps: int, batch_size: int, learning_rate: float, seed: int) -> dict:
    model, overrides = VARIANTS[name]
    run = OUT / slug(name)
    started = time.perf_counter()
    pretrain(
        PretrainArgs(
            train_dir=str(data),
            output_dir=str(run),
            overwrite_output_dir=True,
            run_name=name,
            model=model,
            model_preset="small",
            model_overrides=overrides,
            objective="mlm",
            wwm_mode="word",
            max_seq_length=TRAIN_LENGTH,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=8,
            learning_rate=learning_rate,
            **OPTIMIZER_RECIPE,
            max_steps=steps,
            logging_steps=max(1, steps // 25),
            eval_steps=steps,
            save_steps=steps,
            save_total_limit=1,
            max_eval_samples=64,
            seed=seed,
        )
    )
    return {"train_seconds": time.perf_counter() - started}


def loss_fall(run: Path) -> tuple[float, float]:
    losses = [r["train_loss"] for r in read_metrics(run) if isinstance(r.get("train_loss"), float)]
    window = max(1, len(losses) // 5)
    return sum(losses[:window]) / window, sum(losses[-window:]) / window


def report(results: dict[str, dict], timings: dict[str, dict], *, unigram: float) -> str:
    names = list(results)
    by_length = {name: {r["length"]: r for r in results[name]["results"]} for name in names}
    lengths = sorted(by_length[names[0]])
    head = ["| length | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]

    def label(n: int) -> str:
        return f"{n} (train)" if n == TRAIN_LENGTH else (f"{n} (extra)" if n in EXTRA_LENGTHS else str(n))

    lines = ["Masked-token accuracy:", "", *head]
    for n in lengths:
        cells = [f"{100 * by_length[name][n]['accuracy']:.2f}%" for name in names]
        lines.append(f"| {label(n)} | " + " | ".join(cells) + " |")
    lines.append("| **64 minus 512** | " + " | ".join(_delta(by_length[name]) for name in names) + " |")
    lines.append("| 1024 minus 512 | " + " | ".join(_delta(by_length[name], 1024) for name in names) + " |")
    if 16 in lengths:
        lines.append("| 16 minus 512 | " + " | ".join(_delta(by_length[name], 16) for name in names) + " |")
    lines.append(f"| unigram baseline | {100 * unigram:.2f}% (always the most frequent training token) |")
    lines += ["", "Held-out masked-token loss (nats):", "", *head]
    for n in lengths:
        cells = [f"{by_length[name][n]['loss']:.4f}" for name in names]
        lines.append(f"| {label(n)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | parameters | train loss (first -> last 20% of logs) | train s | eval s |",
        "|---|---:|---|---:|---:|",
    ]
    for name in names:
        t = timings.get(name, {})
        first, last = t.get("loss_fall", (float("nan"), float("nan")))
        eval_s = sum(r["seconds"] for r in results[name]["results"])
        train_s = t.get("train_seconds", float("nan"))
        lines.append(
            f"| {name} | {t.get('parameters', 0):,} | {first:.3f} -> {last:.3f} | {train_s:.0f} | {eval_s:.0f} |"
        )
    return "\n".join(lines)


def unigram_baseline(data: Path) -> float:
    """Share of the held-out (non-special) tokens equal to the most frequent training token: the accuracy of an
    MLM that ignores its context."""
    import numpy as np

    from lmforge.data.shards import open_shards

    train, held = open_shards(data / "shards" / "train"), open_shards(data / "shards" / "validation")
    top = int(np.bincount(train.tokens(0, train.num_tokens)).argmax())
    tokens = held.tokens(0, held.num_tokens)
    return float((tokens == top).mean())


def _delta(rows: dict[int, dict], length: int = 64) -> str:
    return f"{100 * (rows[length]['accuracy'] - rows[TRAIN_LENGTH]['accuracy']):+.2f} pts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--evaluate-only", action="store_true", help="skip training; evaluate the existing runs")
    parser.add_argument("--only-report", action="store_true", help="skip training and evaluation; re-read the runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = prepare(OUT / "data")
    results, timings = {}, {}
    for name in args.variants:
        run = OUT / slug(name)
        if not (args.only_report or args.evaluate_only):
            print(f"==== {name}: training", flush=True)
            timings[name] = train(
                name,
                data,
                steps=args.steps,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                seed=args.seed,
            )
            (run / "timing.json").write_text(json.dumps(timings[name]) + "\n")
        if not args.only_report:
            print(f"==== {name}: evaluate length", flush=True)
            lengths = EXTRA_LENGTHS + LENGTHS
            evaluate_length(LengthArgs(model=str(run), lengths=lengths, max_tokens=1 << 20, batch_size=8))
        timings[name] = json.loads((run / "timing.json").read_text())
        timings[name]["loss_fall"] = loss_fall(run)
        env = json.loads((run / "env.json").read_text())
        timings[name]["parameters"] = env["parameters"]
        results[name] = json.loads((run / "length.json").read_text(encoding="utf-8"))

    plot = REPO / "benchmarks" / "length_generalisation.png"
    plot_length(results, plot, training_length=TRAIN_LENGTH)
    unigram = unigram_baseline(data)
    table = report(results, timings, unigram=unigram)
    softmax_plus = {
        r["length"]: r["accuracy"] for r in results.get("gau-alpha softmax_plus", {"results": []})["results"]
    }
    verdict = None
    if softmax_plus:
        gap = 100 * (softmax_plus[64] - softmax_plus[TRAIN_LENGTH])
        outcome = "PASS" if abs(gap) <= 2.0 else "FAIL"
        verdict = f"softmax_plus at 64 vs 512: {gap:+.2f} points -> {outcome} (target: within 2 points)"
    summary = {
        "lengths": EXTRA_LENGTHS + LENGTHS,
        "train_length": TRAIN_LENGTH,
        "unigram_baseline_accuracy": unigram,
        "args": vars(args),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "timings": timings,
        "results": {name: result["results"] for name, result in results.items()},
        "verdict": verdict,
    }
    (REPO / "benchmarks" / "length_generalisation.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table)
    print(f"plot: {plot.relative_to(REPO)}")
    if verdict:
        print(verdict)


if __name__ == "__main__":
    main()
