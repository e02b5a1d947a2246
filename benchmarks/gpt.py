"""Issue #6 benchmark: our GPT vs HF ``GPT2LMHeadModel`` side by side in one process, fp32 on CPU.

1. Training step (forward + loss + backward + AdamW step + ``zero_grad``) tokens/s at hidden 256, 4 layers,
   4 heads, vocab 32000, seq 512, batch 8; both models hold the same weights (moved with our converter). Eager,
   and with ``--compile`` both ``torch.compile``'d as well.
2. Greedy generation tokens/s with the KV cache (``lmforge.generation.generate`` vs HF ``generate``), 256 new
   tokens after a 32-token prompt, batch 1 and 8. The token ids must be identical (checked, and printed). The
   models for this part are fresh and equal (converter again), with ``initializer_range`` 0.1: at GPT-2's 0.02
   a random model repeats one token for ever, and the identity check would prove little (0.1 gives ~140
   distinct tokens in 256). Weights do not change the cost of a dense fp32 forward.
3. MFU of our training step against the fp32 ``torch.mm`` peak measured in the same run with the same thread
   count, FLOPs per token from nanoGPT's ``estimate_mfu``: ``6 N + 12 L H K T`` (PaLM appendix B; N = all
   parameters except the position table; attention counted without the causal half, as nanoGPT).
   ``--check_flops``: the same count from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls) + attention.

Method (nanoGPT ``bench.py``, modded-nanogpt): warm-up runs excluded; ours and HF alternate within every repeat
(the order flips each repeat) so load from other processes hits both. Each repeat records wall time and CPU
time (``time.process_time``, all threads of the process). Speed ratios are ours vs HF (> 1 = we are faster):
the median of the per-repeat wall ratios (judged against the target), the ratio of the best wall times, and
the ratio of the median CPU times. On a shared machine run it also with ``--threads 1``: CPU time is then
contention-proof (with 2 threads it also counts OpenMP spin-waiting). Absolute times go to ``--json``.

Usage: ``python benchmarks/gpt.py [--threads 2] [--repeats 3] [--compile] [--check_flops] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import transformers

from lmforge.generation import generate
from lmforge.models.gpt.config import PRESETS, GPTConfig
from lmforge.models.gpt.convert import from_hf_state_dict, to_hf_config
from lmforge.models.gpt.model import build_clm

Timing = tuple[float, float]  # (wall s, CPU s)


def build_pair(cfg: GPTConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """HF ``GPT2LMHeadModel`` (SDPA attention) with its own random init, and ours holding the same weights."""
    fields = to_hf_config(cfg)
    fields.pop("model_type"), fields.pop("architectures")
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**fields, attn_implementation="sdpa"))
    ours = build_clm(cfg)
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))
    return ours, theirs


def timed(fn: Callable[[], object]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(
    ours: Callable[[], object],
    theirs: Callable[[], object],
    repeats: int,
    each_repeat: Callable[[], object] | None = None,
) -> list[tuple[Timing, Timing]]:
    """``(ours, theirs)`` timings per repeat; the order alternates so drifting background load hits both.
    ``each_repeat`` (untimed) runs before every repeat: the matmul peak is sampled in the same windows."""
    times = []
    for r in range(repeats):
        if each_repeat is not None:
            each_repeat()
        if r % 2 == 0:
            a = timed(ours)
            b = timed(theirs)
        else:
            b = timed(theirs)
            a = timed(ours)
        times.append((a, b))
    return times


def speedups(times: list[tuple[Timing, Timing]]) -> dict[str, float]:
    """Ours vs HF (HF time / our time): median and range of the per-repeat wall ratios, ratio of the best wall
    times (load only adds time), ratio of the median CPU times."""
    per_repeat = [theirs[0] / ours[0] for ours, theirs in times]
    return {
        "median": statistics.median(per_repeat),
        "min": min(per_repeat),
        "max": max(per_repeat),
        "best": min(t[0] for _, t in times) / min(o[0] for o, _ in times),
        "cpu": statistics.median(t[1] for _, t in times) / statistics.median(o[1] for o, _ in times),
    }


def matmul_peak(sizes: tuple[int, ...] = (1024, 2048), tries: int = 3) -> tuple[float, float]:
    """Best fp32 ``torch.mm`` FLOP/s over square sizes (2 n^3 FLOPs each), by wall time and by CPU time."""
    best_wall = best_cpu = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        for _ in range(tries):
            wall, cpu = timed(lambda: torch.mm(a, b))  # noqa: B023
            best_wall, best_cpu = max(best_wall, 2 * n**3 / wall), max(best_cpu, 2 * n**3 / cpu)
    return best_wall, best_cpu


def flops_per_token(model: torch.nn.Module, cfg: GPTConfig, seq_len: int) -> float:
    """nanoGPT ``estimate_mfu``: ``6 N + 12 L H K T`` per token for forward + backward."""
    params = sum(p.numel() for p in model.parameters()) - model.backbone.embeddings.position_embeddings.weight.numel()
    return 6 * params + 12 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * seq_len


def counted_flops(model: torch.nn.Module, cfg: GPTConfig, ids: torch.Tensor) -> float:
    """FLOPs of one forward + backward by ``FlopCounterMode`` (matmuls) plus attention ``12 L H K T`` per token
    (the counter has no formula for the CPU flash-attention kernel)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    model.zero_grad(set_to_none=True)
    attention = 12 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * ids.shape[1] * ids.numel()
    return counter.get_total_flops() + attention


def train_step(model: torch.nn.Module, ids: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def generation_runs(ours: torch.nn.Module, theirs: torch.nn.Module, prompt: torch.Tensor, new_tokens: int):
    def run_ours() -> torch.Tensor:
        return generate(ours, prompt, max_new_tokens=new_tokens, do_sample=False, pad_token_id=0)

    def run_hf() -> torch.Tensor:
        with torch.no_grad():  # eos None: HF generates exactly new_tokens, as we do
            return theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                   do_sample=False, pad_token_id=0, eos_token_id=None)  # fmt: skip

    return run_ours, run_hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--prompt_len", type=int, default=32)
    parser.add_argument("--new_tokens", type=int, default=256)
    parser.add_argument("--generation_init_range", type=float, default=0.1)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd training steps")
    parser.add_argument("--check_flops", action="store_true", help="cross-check the FLOP count (FlopCounterMode)")
    parser.add_argument("--skip_generation", action="store_true")
    parser.add_argument("--json", type=str, default=None, help="write all raw timings here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = GPTConfig(**PRESETS["bench"])
    tokens = args.batch_size * args.seq_len
    report: dict[str, object] = {
        "config": {"hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers, "heads": cfg.num_attention_heads,
                   "vocab": cfg.vocab_size, "seq": args.seq_len, "batch": args.batch_size, "threads": args.threads,
                   "repeats": args.repeats, "dtype": "float32"},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    rows: list[dict[str, object]] = []

    def add_row(name: str, times: list[tuple[Timing, Timing]], work: float, target: float | None) -> None:
        ratio = speedups(times)
        ours = work / statistics.median(o[0] for o, _ in times)
        theirs = work / statistics.median(t[0] for _, t in times)
        met = "-" if target is None else ("yes" if ratio["median"] >= target else "no")
        target_text = "-" if target is None else f">= {target:.1f}x"
        print(f"| {name} | {ours:,.0f} | {theirs:,.0f} | {ratio['median']:.2f}x ({ratio['min']:.2f}-"
              f"{ratio['max']:.2f}) | {ratio['best']:.2f}x | {ratio['cpu']:.2f}x | {target_text} | {met} |",
              flush=True)  # fmt: skip
        rows.append({"name": name, **ratio, "target": target, "raw": times})

    print(f"lmforge GPT vs HF GPT2LMHeadModel | {report['date']} | torch {torch.__version__}, transformers "
          f"{transformers.__version__} | {args.threads} threads, fp32, {args.repeats} interleaved repeats")  # fmt: skip
    print("| measurement | ours tokens/s (median) | HF tokens/s (median) | speed-up, median of repeats (range) "
          "| best times | CPU time | target | met (median) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|---|", flush=True)

    # ---- 1. training step, eager (and compiled)
    ours, theirs = build_pair(cfg)
    ours.train(), theirs.train()
    ids = torch.randint(0, cfg.vocab_size, (args.batch_size, args.seq_len))
    if args.check_flops:
        report["flops_counted"] = counted_flops(ours, cfg, ids), counted_flops(theirs, cfg, ids)
    steps = {"ours": train_step(ours, ids), "hf": train_step(theirs, ids)}
    steps["ours"](), steps["hf"]()  # warm-up
    peaks = [matmul_peak()]  # sampled before, between and after the repeats; load only lowers it, so: the best
    train_times = interleaved(steps["ours"], steps["hf"], args.repeats, lambda: peaks.append(matmul_peak()))
    peaks.append(matmul_peak())
    peak_wall, peak_cpu = max(w for w, _ in peaks), max(c for _, c in peaks)
    add_row("training step, eager", train_times, tokens, 1.0)
    step_flops = flops_per_token(ours, cfg, args.seq_len) * tokens
    mfu = {"eager": step_flops / min(o[0] for o, _ in train_times) / peak_wall}
    mfu_cpu = {"eager": step_flops / min(o[1] for o, _ in train_times) / peak_cpu}

    if args.compile:
        compiled = {"ours": train_step(torch.compile(ours), ids), "hf": train_step(torch.compile(theirs), ids)}
        for _ in range(2):
            compiled["ours"](), compiled["hf"]()  # compile + warm-up
        vs_eager = interleaved(compiled["ours"], steps["hf"], args.repeats)
        both = interleaved(compiled["ours"], compiled["hf"], args.repeats)
        add_row("training step, ours compiled vs HF eager", vs_eager, tokens, 1.2)
        add_row("training step, both compiled", both, tokens, None)
        best_compiled = [o for o, _ in vs_eager + both]
        mfu["compiled"] = step_flops / min(w for w, _ in best_compiled) / peak_wall
        mfu_cpu["compiled"] = step_flops / min(c for _, c in best_compiled) / peak_cpu
    del ours, theirs, steps

    # ---- 2. greedy generation with the KV cache (fresh, equal models: see the module docstring)
    if not args.skip_generation:
        ours, theirs = build_pair(GPTConfig(**(PRESETS["bench"] | {"initializer_range": args.generation_init_range})))
        ours.eval(), theirs.eval()
        for batch in (1, 8):
            prompt = torch.randint(0, cfg.vocab_size, (batch, args.prompt_len))
            run_ours, run_hf = generation_runs(ours, theirs, prompt, args.new_tokens)
            ours_ids, hf_ids = run_ours(), run_hf()  # doubles as the warm-up
            new_ids = ours_ids[:, args.prompt_len :]
            if ours_ids.shape != hf_ids.shape or new_ids.shape[1] != args.new_tokens:
                raise RuntimeError(f"unequal lengths: ours {tuple(ours_ids.shape)}, HF {tuple(hf_ids.shape)}")
            differ = (ours_ids != hf_ids).any(dim=0).nonzero()
            same = "identical ids" if len(differ) == 0 else f"ids DIFFER from position {int(differ[0])}"
            distinct = statistics.median(len(set(row)) for row in new_ids.tolist())
            times = interleaved(run_ours, run_hf, args.repeats)
            name = f"greedy generation, batch {batch} ({same}, {distinct:.0f} distinct of {args.new_tokens})"
            add_row(name, times, batch * args.new_tokens, 1.5)
            report[f"generation_b{batch}_identical"] = len(differ) == 0

    print(f"\nfp32 matmul peak: {peak_wall / 1e9:.0f} GFLOP/s by wall time, {peak_cpu / 1e9:.0f} GFLOP/s per CPU "
          f"second ({args.threads} threads). Training step: {step_flops / 1e9:.1f} GFLOP (estimate_mfu).")  # fmt: skip
    if "flops_counted" in report:
        counted = ", ".join(f"{f / 1e9:.1f}" for f in report["flops_counted"])  # type: ignore[union-attr]
        print(f"FlopCounterMode + attention: ours, HF = {counted} GFLOP")
    for name in mfu:
        print(f"MFU of our {name} training step (best step): {mfu[name]:.1%} by wall time, "
              f"{mfu_cpu[name]:.1%} by CPU time (target >= 60%: {'yes' if mfu[name] >= 0.6 else 'no'})")  # fmt: skip
    report |= {"rows": rows, "mfu_wall": mfu, "mfu_cpu": mfu_cpu, "step_gflop": step_flops / 1e9,
               "matmul_peak_gflops": {"wall": peak_wall / 1e9, "cpu": peak_cpu / 1e9}}  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
