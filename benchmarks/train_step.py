"""One training step of our BERT baseline vs ``transformers.BertForMaskedLM`` at the same config.

Config (the brief's): hidden 256, 4 layers, 4 heads, FFN 1024, vocab 21128, sequence 512, batch 8, fp32, dropout
0.1 in both, SDPA attention in both, 15% of positions labelled (MLM), AdamW. A step = forward + backward +
``optimizer.step()`` + ``zero_grad``. Both models (and with ``--compile`` their ``torch.compile`` variants) live
in one process and are timed *interleaved* (ours, theirs, ours, theirs, ...) after warm-up; the median over
repeats is reported, so drifting machine load hits all variants alike (nanoGPT ``bench.py`` / modded-nanogpt
practice: warm-up excluded, median of repeats).

MFU = model FLOP/s / peak fp32 matmul FLOP/s, the peak measured in the same run with the same thread count:
the fastest square size of 1024/2048/4096, timed once per repeat between the models; MFU uses the median.
Model FLOPs are analytic (forward x 3): ``B*T*[L*(8d^2 + 4dF + 4Td) + 2d^2 + 2dV]`` per forward (projections,
FFN, QK^T and AV, MLM transform and decoder); ``--check-flops`` compares it with ``FlopCounterMode`` (equal).

CPU time (``time.process_time``, all threads) is reported next to wall time: with ``--threads 1`` it is the
contention-proof measure on a shared machine (with more threads it also counts OpenMP spin-waiting).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth of the process's peak RSS (VmHWM,
reset through /proc/self/clear_refs) during one step, measured in a fresh subprocess per model so that memory
freed by one model and kept by the allocator cannot hide the other's peak (Linux only).

Usage: ``python benchmarks/train_step.py [--compile] [--repeats 7] [--steps 2] [--threads 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

CONFIG = dict(
    vocab_size=21128,
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=1024,
    max_position_embeddings=512,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)


def build(name: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    if name.startswith("lmforge"):
        import lmforge

        model = lmforge.build_model("bert", task="mlm", **CONFIG)
    else:
        import transformers

        config = transformers.BertConfig(**CONFIG, attn_implementation="sdpa")
        model = transformers.BertForMaskedLM(config)
    return model.to(device).train()


def batch(batch_size: int, length: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, CONFIG["vocab_size"], (batch_size, length), generator=generator)
    labels = torch.where(torch.rand(input_ids.shape, generator=generator) < 0.15, input_ids, -100)
    mask = torch.ones_like(input_ids)
    return {k: v.to(device) for k, v in dict(input_ids=input_ids, attention_mask=mask, labels=labels).items()}


def make_step(model: torch.nn.Module, inputs: dict[str, torch.Tensor], compile_model: bool, sparse: bool = False):
    """``sparse``: decode only the labelled positions (``logits_at_labels_only``, what ``lmforge pretrain`` runs)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if compile_model else model
    extra = {"logits_at_labels_only": True} if sparse else {}

    def step() -> float:
        loss = forward(**inputs, **extra).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()  # synchronises

    return step


def flops_per_step(batch_size: int, length: int, decoded_rows: int | None = None) -> float:
    """Analytic FLOPs of a step; ``decoded_rows`` = positions through the MLM head (default: all of them)."""
    d, f, v, layers = (
        CONFIG["hidden_size"],
        CONFIG["intermediate_size"],
        CONFIG["vocab_size"],
        CONFIG["num_hidden_layers"],
    )
    rows = batch_size * length if decoded_rows is None else decoded_rows
    forward = batch_size * length * layers * (8 * d * d + 4 * d * f + 4 * length * d) + rows * (2 * d * d + 2 * d * v)
    return 3.0 * forward


def matmul_flops(device: torch.device, n: int, seconds: float) -> float:
    """FLOP/s of ``n x n @ n x n`` fp32 matmuls run back to back for ``seconds``."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b  # warm-up
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        calls += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * calls / (time.perf_counter() - started)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_mib(variant: str, args: argparse.Namespace) -> float:
    device = torch.device(args.device)
    name, _, compiled = variant.partition("+")
    inputs = batch(args.batch_size, args.length, device)
    step = make_step(build(name, device), inputs, bool(compiled), sparse=name.endswith("-sparse"))
    step()  # optimizer state allocated, kernels compiled
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        step()
        return (torch.cuda.max_memory_allocated() - baseline) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline = _rss_kib("VmRSS")
    step()
    return (_rss_kib("VmHWM") - baseline) / 1024


def _memory_in_subprocess(variant: str, args: argparse.Namespace) -> float:
    argv = [sys.executable, __file__, "--memory-only", variant, "--batch-size", str(args.batch_size)]
    argv += ["--length", str(args.length), "--threads", str(args.threads), "--device", args.device]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd variants of both models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--check-flops", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--memory-only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_only:
        print(json.dumps({"peak_mib": peak_memory_mib(args.memory_only, args)}))
        return

    device = torch.device(args.device)
    variants = ["lmforge-sparse", "lmforge", "transformers"]
    variants += ["lmforge-sparse+compile", "lmforge+compile", "transformers+compile"] if args.compile else []
    inputs = batch(args.batch_size, args.length, device)
    steps = {}
    for variant in variants:
        name, _, compiled = variant.partition("+")
        steps[variant] = make_step(build(name, device), inputs, bool(compiled), sparse=name.endswith("-sparse"))
        for _ in range(args.warmup):
            steps[variant]()
    best_n = max((1024, 2048, 4096), key=lambda n: matmul_flops(device, n, 0.5))
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    cpu_times: dict[str, list[float]] = {variant: [] for variant in variants}
    peaks: list[float] = []
    for _ in range(args.repeats):  # interleaved: ours, theirs, (compiled ones), the matmul peak, ours, ...
        for variant in variants:
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                steps[variant]()
            times[variant].append((time.perf_counter() - started) / args.steps)
            cpu_times[variant].append((time.process_time() - cpu_started) / args.steps)
        peaks.append(matmul_flops(device, best_n, 0.5))
    peak = statistics.median(peaks)
    flops = flops_per_step(args.batch_size, args.length)
    labelled = int((inputs["labels"] != -100).sum())
    sparse_flops = flops_per_step(args.batch_size, args.length, decoded_rows=labelled)
    if args.check_flops:
        from torch.utils.flop_counter import FlopCounterMode

        model = build("lmforge", device)
        with FlopCounterMode(display=False) as counter:
            model(**inputs).loss.backward()
        print(f"analytic {flops / 1e9:.2f} GFLOP/step, FlopCounterMode {counter.get_total_flops() / 1e9:.2f}")

    tokens = args.batch_size * args.length
    rows = {}
    for variant in variants:
        median = statistics.median(times[variant])
        rows[variant] = {
            "step_ms": 1000 * median,
            "step_ms_min": 1000 * min(times[variant]),
            "cpu_ms": 1000 * statistics.median(cpu_times[variant]),
            "tokens_per_s": tokens / median,
            "mfu": (sparse_flops if "-sparse" in variant else flops) / median / peak,
            "peak_mib": _memory_in_subprocess(variant, args),
        }
    baseline = rows["transformers"]["tokens_per_s"]
    ratios = {f"{variant} / transformers": row["tokens_per_s"] / baseline for variant, row in rows.items()}
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": args.device if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": args.threads,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "config": CONFIG | {"batch_size": args.batch_size, "length": args.length},
        "matmul_peak_gflops": peak / 1e9,
        "matmul_peak_gflops_max": max(peaks) / 1e9,
        "matmul_size": best_n,
        "model_gflop_per_step": flops / 1e9,
        "model_gflop_per_step_sparse": sparse_flops / 1e9,
        "results": rows,
        "ratios_vs_transformers_eager": ratios,
    }
    print(json.dumps(report, indent=2))
    print("\n| variant | step ms (median) | CPU ms | tokens/s | vs transformers | MFU | peak step memory MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant, row in rows.items():
        cells = [f"{row['step_ms']:.0f}", f"{row['cpu_ms']:.0f}", f"{row['tokens_per_s']:.0f}"]
        cells.append(f"{row['tokens_per_s'] / baseline:.3f}x")
        cells += [f"{100 * row['mfu']:.1f}%", f"{row['peak_mib']:.0f}"]
        print(f"| {variant} | {' | '.join(cells)} |")
    print(f"\nmatmul peak (median of {args.repeats}): {peak / 1e9:.1f} GFLOP/s at n={best_n}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
