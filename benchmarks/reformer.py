"""Issue #7 benchmark: our Reformer vs HF ``ReformerModelWithLMHead`` side by side in one run, fp32 on CPU.

(a) Training step (forward + causal-LM loss + backward + ``zero_grad``) tokens/s at the ``bench`` preset: hidden
    256, 6 layers (local/lsh alternating), 2 heads of 64, FFN 512, chunks of 64, 128 buckets, one hash round,
    dropout 0.05 (HF defaults), seq 4096, batch 1; both models hold the same weights (our converter). Our
    variants: reversible (as HF) with the eager and the fused (SDPA) chunk kernel, and stored activations.
    ours and HF alternate within every repeat (the order flips each repeat); the ratio is HF time / our time
    (> 1 = we are faster): median of the per-repeat wall ratios, and the ratio of the median CPU times.
(b) Peak memory of one training step vs depth (2, 6, 12 layers, local/lsh alternating) at seq 4096, reversible
    on and off. Each configuration runs in its own subprocess; two measures: (1) the bytes of the tensors
    autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``, exact and deterministic; for the
    reversible function that is its two output streams, plus the LSH buckets it keeps, counted by hand), and
    (2) the peak RSS growth of the process over the step (``VmHWM``, reset through ``/proc/self/clear_refs``,
    minus the RSS after building the model and one no-grad forward; glibc's mmap threshold fixed at 128 KiB so
    freed blocks go back to the OS), which also counts parameter gradients, the
    logits, the recomputation in backward and allocator slack. Target: reversible, 12 layers <= 1.3x the 2-layer memory.
(c) Time per token of one LSH attention layer (1 round, chunk 64, HF's bucket rule) vs full causal attention
    (SDPA, the fastest full attention on CPU) with the same projections, forward + backward, batch 1, hidden 256,
    2 heads of 64, at 1024 ... 16384 tokens; a log-log plot with ``--plot``.

Usage: ``python benchmarks/reformer.py [--threads 2] [--repeats 3] [--json out.json] [--plot out.png]``
(wrap every run in ``flock /tmp/lmforge-bench.lock``; the machine is shared).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import transformers

from lmforge.models.reformer.config import PRESETS, ReformerConfig
from lmforge.models.reformer.convert import from_hf_state_dict, to_hf_config
from lmforge.models.reformer.model import build_clm
from lmforge.nn.lsh import LSHSelfAttention

Timing = tuple[float, float]  # (wall s, CPU s)


def timed(fn: Callable[[], object]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def hf_model(cfg: ReformerConfig) -> torch.nn.Module:
    fields = to_hf_config(cfg)
    fields.pop("model_type"), fields.pop("architectures")
    return transformers.ReformerModelWithLMHead(transformers.ReformerConfig(**fields))


def train_step(model: torch.nn.Module, ids: torch.Tensor, *, hf: bool) -> Callable[[], None]:
    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss if hf else model(ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def speed(repeats: int, seq: int) -> dict:
    # HF trains only when prod(axial_pos_shape) == the length (ours takes any length up to the table)
    cfg = ReformerConfig(**PRESETS["bench"] | {"axial_pos_shape": (seq // 64, 64), "max_position_embeddings": seq})
    theirs = hf_model(cfg).train()
    variants = {
        "reversible, eager": {},
        "reversible, sdpa": {"attn_implementation": "sdpa"},
        "stored activations, sdpa": {"attn_implementation": "sdpa", "use_reversible": False},
    }
    ours = {}
    for name, overrides in variants.items():
        model = build_clm(dataclasses.replace(cfg, **overrides)).train()
        model.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))
        ours[name] = model
    ids = torch.randint(1, cfg.vocab_size, (1, seq), generator=torch.Generator().manual_seed(0))
    steps = {"HF": train_step(theirs, ids, hf=True)} | {n: train_step(m, ids, hf=False) for n, m in ours.items()}
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[Timing]] = {name: [] for name in steps}
    for repeat in range(repeats):
        order = list(steps) if repeat % 2 == 0 else list(reversed(steps))
        for name in order:
            times[name].append(timed(steps[name]))
        print(f"  repeat {repeat}: " + ", ".join(f"{n} {times[n][-1][0]:.2f}s" for n in steps), flush=True)
    rows = {}
    for name in ours:
        wall_ratios = [hf[0] / mine[0] for hf, mine in zip(times["HF"], times[name])]
        rows[name] = {
            "tokens_per_s": seq / statistics.median(t[0] for t in times[name]),
            "ratio_wall_median": statistics.median(wall_ratios),
            "ratio_cpu_median": statistics.median(t[1] for t in times["HF"])
            / statistics.median(t[1] for t in times[name]),
        }
    rows["HF"] = {"tokens_per_s": seq / statistics.median(t[0] for t in times["HF"])}
    return {"config": dataclasses.asdict(cfg), "seq_len": seq, "batch": 1, "rows": rows, "times": times}


def _memory_child(depth: int, reversible: bool, seq: int) -> dict:
    """One training step in this (fresh) process: saved-tensor bytes and peak RSS growth."""
    cfg = ReformerConfig(
        **PRESETS["bench"] | {"attn_layers": ("local", "lsh") * (depth // 2), "use_reversible": reversible}
    )
    model = build_clm(cfg).train()
    ids = torch.randint(1, cfg.vocab_size, (1, seq), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(ids)
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS (Linux >= 4.0)
        f.write("5")
    rss_before = _status_bytes("VmRSS")
    saved = {"bytes": 0}
    seen = {p.untyped_storage().data_ptr() for p in model.parameters()}  # weights are not activations

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            saved["bytes"] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(ids, labels=ids).loss
    buckets = 1 * cfg.num_attention_heads * cfg.num_hashes * seq * 8 * (depth // 2)  # int64 buckets, lsh layers
    loss.backward()
    peak = _status_bytes("VmHWM")
    return {
        "saved_bytes": saved["bytes"] + (buckets if reversible else 0),
        "peak_rss_growth": peak - rss_before,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024  # kB


def memory(threads: int, seq: int) -> dict:
    # A fixed mmap threshold: every block above 128 KiB is mmapped and given back on free, so RSS follows live
    # memory. With glibc's default dynamic threshold, freed blocks up to 32 MiB stay in the heap and the peak RSS
    # grows with the number of alloc/free cycles (one per layer in the recomputation), not with live memory.
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    results = {}
    for reversible in (True, False):
        for depth in (2, 6, 12):
            call = f"reformer._memory_child({depth}, {reversible}, {seq})"
            code = (
                "import json, torch, sys; sys.path.insert(0, 'benchmarks'); import reformer; "
                f"torch.set_num_threads({threads}); print(json.dumps({call}))"
            )
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results[f"{'reversible' if reversible else 'stored'}-{depth}"] = result
            print(f"  reversible={reversible} depth={depth}: {result}", flush=True)
    return results


def _attention_pair(length: int, hidden: int = 256, heads: int = 2, head_dim: int = 64):
    """(LSH step, full-attention step): forward + backward of one layer at ``length`` tokens."""
    lsh = LSHSelfAttention(hidden, num_heads=heads, head_dim=head_dim, chunk_length=64, causal=True,
                           max_positions=length, kernel="sdpa")  # fmt: skip
    qkv = torch.nn.Linear(hidden, 3 * heads * head_dim, bias=False)
    x = torch.randn(1, length, hidden, requires_grad=True)

    def run_lsh() -> None:
        lsh(x)[0].sum().backward()

    def run_full() -> None:
        q, k, v = qkv(x).view(1, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    return run_lsh, run_full


def attention_scaling(lengths: list[int]) -> dict:
    torch.manual_seed(0)
    rows = {}
    for length in lengths:
        run_lsh, run_full = _attention_pair(length)
        run_lsh(), run_full()  # warm-up
        tries = 3
        lsh_s = min(timed(run_lsh)[0] for _ in range(tries))
        full_s = min(timed(run_full)[0] for _ in range(tries))
        rows[length] = {"lsh_us_per_token": 1e6 * lsh_s / length, "full_us_per_token": 1e6 * full_s / length,
                        "full_over_lsh": full_s / lsh_s}  # fmt: skip
        print(f"  {length}: {rows[length]}", flush=True)
    return rows


def plot(rows: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted(int(n) for n in rows)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(lengths, [rows[n]["lsh_us_per_token"] for n in lengths], "o-", label="LSH attention (1 round, chunk 64)")
    ax.plot(lengths, [rows[n]["full_us_per_token"] for n in lengths], "s-", label="full causal attention (SDPA)")
    ax.set(xscale="log", yscale="log", xlabel="tokens", ylabel="µs per token (fwd + bwd)",
           title="One attention layer, hidden 256, 2 heads, CPU fp32")  # fmt: skip
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seq", type=int, default=4096, help="length of parts (a) and (b)")
    parser.add_argument("--lengths", default="1024,2048,4096,8192,16384")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: speed, memory, scaling")
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "command": " ".join(sys.argv),
    }
    if "speed" not in skip:
        print(f"(a) training step, seq {args.seq}", flush=True)
        report["speed"] = speed(args.repeats, args.seq)
        for name, row in report["speed"]["rows"].items():
            print(f"  {name}: {row}")
    if "memory" not in skip:
        print("(b) peak memory vs depth", flush=True)
        report["memory"] = memory(args.threads, args.seq)
    if "scaling" not in skip:
        print("(c) LSH vs full attention", flush=True)
        report["scaling"] = attention_scaling([int(n) for n in args.lengths.split(",")])
        if args.plot:
            plot(report["scaling"], args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
