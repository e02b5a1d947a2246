"""Issue #6 benchmark: our GPT vs HF ``GPT2LMHeadModel`` side by side in one process, fp32 on CPU.

1. Training step (forward + loss + backward + AdamW step) tokens/s at hidden 256, 4 layers, 4 heads, seq 512,
   batch 8, both models holding the same weights (moved with our converter); eager, and with ``--compile`` both
   compiled as well.
2. Greedy generation tokens/s with the KV cache (``lmforge.generation.generate`` vs HF ``generate``), 256 new
   tokens from a 32-token prompt, batch 1 and 8; the two token sequences must be identical (checked).
3. MFU of our training step against the fp32 matmul peak measured in the same run (best of square ``torch.mm``
   sizes), with nanoGPT's ``estimate_mfu`` FLOP count: ``6 N + 12 L H Q T`` per token (PaLM appendix B; N = all
   parameters except the position table, the tied head counted once as a matmul).

Method (nanoGPT ``bench.py``, modded-nanogpt): warm-up runs excluded; ours and HF alternate within every repeat
(the order flips each repeat) so load from other processes hits both. The table reports the ratio of the best
times (load only adds time) and the median and range of the per-repeat ratios; ratios only, since absolute CPU
numbers say little across machines (raw seconds go to ``--json``).

Usage: ``python benchmarks/gpt.py --threads 2 --repeats 5 [--compile] [--json out.json]``
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


def _models(cfg: GPTConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    fields = to_hf_config(cfg)
    fields.pop("model_type"), fields.pop("architectures")
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**fields, attn_implementation="sdpa"))
    ours = build_clm(cfg)
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))
    return ours, theirs


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _interleaved(ours: Callable[[], object], theirs: Callable[[], object], repeats: int) -> list[tuple[float, float]]:
    """(ours_s, theirs_s) per repeat; the order alternates so drifting background load hits both equally."""
    times = []
    for r in range(repeats):
        if r % 2 == 0:
            a = _seconds(ours)
            b = _seconds(theirs)
        else:
            b = _seconds(theirs)
            a = _seconds(ours)
        times.append((a, b))
    return times


def matmul_peak_flops(sizes: tuple[int, ...] = (1024, 2048, 3072), tries: int = 3) -> float:
    """Best fp32 ``torch.mm`` FLOP/s over a few square sizes (2 n^3 FLOPs each)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        for _ in range(tries):
            best = max(best, 2 * n**3 / _seconds(lambda: torch.mm(a, b)))  # noqa: B023
    return best


def flops_per_token(model: torch.nn.Module, cfg: GPTConfig, seq_len: int) -> float:
    """nanoGPT ``estimate_mfu``: ``6 N + 12 L H Q T`` (training: forward + backward)."""
    params = sum(p.numel() for p in model.parameters()) - model.backbone.embeddings.position_embeddings.weight.numel()
    return 6 * params + 12 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * seq_len


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _ratios(times: list[tuple[float, float]]) -> dict[str, float]:
    """Speed ratios ours/HF (= HF time / our time): of the best times (background load only ever adds time, so
    the minimum is the least disturbed estimate on a shared machine) and the median and range per repeat."""
    ratios = [theirs / ours for ours, theirs in times]
    best = min(t for _, t in times) / min(t for t, _ in times)
    return {"best": best, "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--vocab_size", type=int, default=PRESETS["bench"]["vocab_size"])
    parser.add_argument("--prompt_len", type=int, default=32)
    parser.add_argument("--new_tokens", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="also compare torch.compile'd training steps")
    parser.add_argument("--skip_generation", action="store_true")
    parser.add_argument("--json", type=str, default=None, help="write all raw timings here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = GPTConfig(**(PRESETS["bench"] | {"vocab_size": args.vocab_size}))
    tokens = args.batch_size * args.seq_len
    report: dict[str, object] = {
        "config": {"hidden": 256, "layers": 4, "heads": 4, "vocab": args.vocab_size, "seq": args.seq_len,
                   "batch": args.batch_size, "threads": args.threads, "dtype": "float32"},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    rows = []

    def add_row(name: str, ratio: dict[str, float], target: float | None) -> None:
        rows.append((name, ratio, target))
        met = "-" if target is None else ("yes" if ratio["median"] >= target else "no")  # judged on the median
        target_text = "-" if target is None else f">= {target:.1f}x"
        spread = f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
        print(f"| {name} | {ratio['best']:.2f}x | {spread} | {target_text} | {met} |", flush=True)

    print(f"lmforge GPT vs HF GPT2LMHeadModel | {report['date']} | torch {torch.__version__}, transformers "
          f"{transformers.__version__} | {args.threads} threads, fp32, {args.repeats} interleaved repeats")  # fmt: skip
    print("| measurement | ours / HF, ratio of best times | per-repeat median (range) | target | met (median) |")
    print("|---|---|---|---|---|", flush=True)

    # ---- 1. training step, eager (and compiled)
    ours, theirs = _models(cfg)
    ids = torch.randint(0, cfg.vocab_size, (args.batch_size, args.seq_len))
    steps = {}
    for name, model in (("ours", ours), ("hf", theirs)):
        model.train()
        steps[name] = train_step(model, torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1), ids)
        steps[name]()  # warm-up
    peak_before = matmul_peak_flops()
    train_times = _interleaved(steps["ours"], steps["hf"], args.repeats)
    peak = max(peak_before, matmul_peak_flops())
    train = _ratios(train_times)
    add_row("training step tokens/s, eager", train, 1.0)
    best_ours = min(t for t, _ in train_times)
    mfu = flops_per_token(ours, cfg, args.seq_len) * tokens / best_ours / peak
    report["train_eager_s"] = train_times
    report["matmul_peak_gflops"] = peak / 1e9
    report["mfu"] = mfu

    if args.compile:
        compiled = {}
        for name, model in (("ours", ours), ("hf", theirs)):
            fast = torch.compile(model)
            compiled[name] = train_step(fast, torch.optim.AdamW(model.parameters(), lr=1e-4), ids)
            for _ in range(2):
                compiled[name]()  # compile + warm-up
        both = _interleaved(compiled["ours"], compiled["hf"], args.repeats)
        vs_eager = _interleaved(compiled["ours"], steps["hf"], args.repeats)
        add_row("training step tokens/s, both compiled", _ratios(both), None)
        add_row("training step tokens/s, ours compiled vs HF eager", _ratios(vs_eager), 1.2)
        best_compiled = min(t for t, _ in both + vs_eager)
        report["mfu_compiled"] = flops_per_token(ours, cfg, args.seq_len) * tokens / best_compiled / peak
        report["train_compiled_s"], report["train_compiled_vs_eager_s"] = both, vs_eager

    # ---- 2. greedy generation with the KV cache
    if not args.skip_generation:
        # The training steps above moved both models apart (different kernels): start again from equal weights.
        ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))
        ours.eval(), theirs.eval()
        for batch in (1, 8):
            prompt = torch.randint(0, cfg.vocab_size, (batch, args.prompt_len))
            options = dict(max_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)

            def run_ours(prompt=prompt, options=options):
                return generate(ours, prompt, **options)

            def run_hf(prompt=prompt, options=options):
                with torch.no_grad():
                    return theirs.generate(
                        prompt, attention_mask=torch.ones_like(prompt), min_new_tokens=args.new_tokens,
                        eos_token_id=None, **options,
                    )  # fmt: skip

            differ = (run_ours() != run_hf()).any(dim=0).nonzero()  # doubles as the warm-up
            same = "identical tokens" if len(differ) == 0 else f"tokens differ from position {int(differ[0])}"
            times = _interleaved(run_ours, run_hf, args.repeats)
            add_row(f"greedy generation tokens/s, batch {batch}, {same}", _ratios(times), 1.5)
            report[f"generate_b{batch}_s"] = times

    print(f"| MFU of our eager training step vs measured fp32 matmul peak | {mfu:.0%} | - | >= 60% | "
          f"{'yes' if mfu >= 0.6 else 'no'} |")  # fmt: skip
    if "mfu_compiled" in report:
        print(f"| MFU of our compiled training step | {report['mfu_compiled']:.0%} | - | - | - |")
    report["rows"] = [{"name": n, **r, "target": t} for n, r, t in rows]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
