"""One training step of our BERT baseline vs ``transformers.BertForMaskedLM`` at the same config.

Config (the brief's): hidden 256, 4 layers, 4 heads, FFN 1024, vocab 21128, sequence 512, batch 8, fp32, dropout
0.1 in both, SDPA attention in both, 15% of positions labelled (MLM), AdamW. A step = forward + backward +
``optimizer.step()`` + ``zero_grad``. Both models live in one process and are timed *interleaved*
(ours, theirs, ours, theirs, ...) after warm-up; the median over repeats is reported, so drifting machine load
hits both alike (modded-nanogpt/nanoGPT ``bench.py`` practice: warm-up excluded, median of repeats).

MFU = model FLOP/s / peak fp32 matmul FLOP/s, the peak measured in the same run with the same thread count:
the fastest square size of 1024/2048/4096, timed once per repeat between the models; MFU uses the median.
Model FLOPs are analytic (forward x 3): ``B*T*[L*(8d^2 + 4dF + 4Td) + 2d^2 + 2dV]`` per forward (projections,
FFN, QK^T and AV, MLM transform and decoder); ``--check-flops`` compares it with ``FlopCounterMode`` (equal).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth of the process's peak RSS (VmHWM,
reset through /proc/self/clear_refs) during one step, measured in a fresh subprocess per model so that memory
freed by one model and kept by the allocator cannot hide the other's peak (Linux only).

Usage: ``python benchmarks/train_step.py [--compile] [--repeats 7] [--steps 3] [--threads 2] [--json out.json]``
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
    if name == "lmforge":
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


def make_step(model: torch.nn.Module, inputs: dict[str, torch.Tensor], compile_model: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if compile_model else model

    def step() -> float:
        loss = forward(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()  # synchronises

    return step


def flops_per_step(batch_size: int, length: int) -> float:
    d, f, v, layers = (
        CONFIG["hidden_size"],
        CONFIG["intermediate_size"],
        CONFIG["vocab_size"],
        CONFIG["num_hidden_layers"],
    )
    forward = batch_size * length * (layers * (8 * d * d + 4 * d * f + 4 * length * d) + 2 * d * d + 2 * d * v)
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


def peak_memory_mib(name: str, args: argparse.Namespace) -> float:
    device = torch.device(args.device)
    model = build(name, device)
    step = make_step(model, batch(args.batch_size, args.length, device), args.compile)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
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
    names = ("lmforge", "transformers")
    inputs = batch(args.batch_size, args.length, device)
    steps = {name: make_step(build(name, device), inputs, args.compile) for name in names}
    for name in names:
        for _ in range(args.warmup):
            steps[name]()
    best_n = max((1024, 2048, 4096), key=lambda n: matmul_flops(device, n, 0.5))
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks: list[float] = []
    for _ in range(args.repeats):  # interleaved: ours, theirs, the matmul peak, ours, theirs, ...
        for name in names:
            started = time.perf_counter()
            for _ in range(args.steps):
                steps[name]()
            times[name].append((time.perf_counter() - started) / args.steps)
        peaks.append(matmul_flops(device, best_n, 0.5))
    peak = statistics.median(peaks)
    flops = flops_per_step(args.batch_size, args.length)
    if args.check_flops:
        from torch.utils.flop_counter import FlopCounterMode

        model = build("lmforge", device)
        with FlopCounterMode(display=False) as counter:
            model(**inputs).loss.backward()
        print(f"analytic {flops / 1e9:.2f} GFLOP/step, FlopCounterMode {counter.get_total_flops() / 1e9:.2f}")

    tokens = args.batch_size * args.length
    rows = {}
    for name in names:
        median = statistics.median(times[name])
        memory = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-only",
                name,
                "--batch-size",
                str(args.batch_size),
                "--length",
                str(args.length),
                "--threads",
                str(args.threads),
                "--device",
                args.device,
                *(["--compile"] if args.compile else []),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[name] = {
            "step_ms": 1000 * median,
            "step_ms_min": 1000 * min(times[name]),
            "tokens_per_s": tokens / median,
            "mfu": flops / median / peak,
            "peak_mib": json.loads(memory.stdout.strip().splitlines()[-1])["peak_mib"],
        }
    ratio = rows["lmforge"]["tokens_per_s"] / rows["transformers"]["tokens_per_s"]
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": args.device if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": args.threads,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "config": CONFIG | {"batch_size": args.batch_size, "length": args.length, "compile": args.compile},
        "matmul_peak_gflops": peak / 1e9,
        "matmul_peak_gflops_max": max(peaks) / 1e9,
        "matmul_size": best_n,
        "model_gflop_per_step": flops / 1e9,
        "results": rows,
        "speedup_lmforge_over_transformers": ratio,
    }
    print(json.dumps(report, indent=2))
    print("\n| model | step ms (median) | tokens/s | MFU | peak step memory MiB |\n|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        cells = [f"{row['step_ms']:.0f}", f"{row['tokens_per_s']:.0f}", f"{100 * row['mfu']:.1f}%"]
        cells.append(f"{row['peak_mib']:.0f}")
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"\nlmforge / transformers tokens/s: {ratio:.3f}x (matmul peak {peak / 1e9:.1f} GFLOP/s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
