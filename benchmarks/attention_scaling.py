"""Forward+backward time per token and activation memory vs. sequence length: GAU (quadratic, FLASH-Quad), FLASH
(mixed chunk), a Transformer++ baseline (pre-RMSNorm, RoPE, SwiGLU, SDPA; the ``gpt`` model with those switches)
and lucidrains ``FLASH-pytorch`` ``FLASHTransformer`` at the same config, side by side in one run.

All causal (LM), width 256, 4 layers, s=128, e=512, G=256, batch 1, fp32, 2 threads, backbones only (no LM head).
Memory is the bytes autograd saves for backward (``saved_tensors_hooks``), the part of training memory that grows
with length; CPU peak RSS is not attributable per model in one process. The analytic FLOP counts (per token,
forward + backward = 3x forward, matmuls only, full T x T blocks as computed) are printed beside every measured
ratio, and MFU is reported against an fp32 matmul peak measured in the same run.

    .venv/bin/python benchmarks/attention_scaling.py            # default: lengths 512, 2048, 8192 (~5 min)
    .venv/bin/python benchmarks/attention_scaling.py --full     # 512 ... 8192 in powers of two, more steps
    .venv/bin/python benchmarks/attention_scaling.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch import nn

import lmforge
from lmforge.bench.speed import saved_bytes

WIDTH, LAYERS, KEY, EXPANSION, GROUP, VOCAB = 256, 4, 128, 512, 256, 1000
SWIGLU = 688  # ~ 8d/3 (LLaMA sizing, same parameter count as a 4d GELU MLP), multiple of 16


def build_models() -> dict[str, nn.Module]:
    common = dict(vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=LAYERS, is_decoder=True)
    gau = lmforge.build_model("flash-quad", preset="bench", **common, max_position_embeddings=8192, quad_length=512)
    flash = lmforge.build_model("flash", preset="bench", **common, group_size=GROUP)
    tpp = lmforge.build_model(
        "gpt",
        preset="bench",
        vocab_size=VOCAB,
        position_embedding_type="rotary",
        normalization="rmsnorm",
        ffn_type="swiglu",
        use_bias=False,
        intermediate_size=SWIGLU,
        max_position_embeddings=8192,
        attn_implementation="sdpa",
    )
    models = {"gau_quad": gau, "flash": flash, "transformer++_sdpa": tpp}
    try:
        from flash_pytorch import FLASHTransformer

        lucid = FLASHTransformer(
            dim=WIDTH,
            num_tokens=VOCAB,
            depth=LAYERS,
            group_size=GROUP,
            query_key_dim=KEY,
            expansion_factor=EXPANSION / WIDTH,
            causal=True,
            shift_tokens=False,
        )
        lucid.to_logits = nn.Identity()  # backbone only, as ours
        models["flash_pytorch"] = lucid
    except ImportError:
        pass
    return models


def flops_per_token(name: str, length: int) -> float:
    """Analytic training FLOPs per token (3 x forward matmul FLOPs), full blocks as computed."""
    projections = 2 * WIDTH * (2 * EXPANSION + KEY) + 2 * EXPANSION * WIDTH
    if name == "gau_quad":
        layer = projections + 2 * length * KEY + 2 * length * EXPANSION
    elif name in ("flash", "flash_pytorch"):
        chunk = min(GROUP, length)
        layer = projections + 2 * chunk * KEY + 2 * chunk * EXPANSION + 2 * 2 * KEY * EXPANSION
    else:  # Transformer++: q, k, v, o projections + scores + weighted sum (causal SDPA skips ~half) + SwiGLU
        layer = 4 * 2 * WIDTH * WIDTH + 2 * 2 * length * WIDTH / 2 + 3 * 2 * WIDTH * SWIGLU
    return 3.0 * LAYERS * layer


def matmul_peak(seconds: float = 2.0) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * 2048**3 * count / (time.perf_counter() - start)


def measure(model: nn.Module, length: int, *, warmup: int, steps: int) -> tuple[float, int]:
    ids = torch.randint(1, VOCAB, (1, length))

    def step() -> None:
        model(ids).float().square().mean().backward()
        model.zero_grad(set_to_none=True)

    memory = saved_bytes(step)
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps / length, memory


def plot(results: dict, path: str) -> None:
    """Time per token vs length, log-log, one line per model (the README figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, points in results.items():
        lengths = sorted(int(length) for length in points)
        ax.plot(lengths, [points[str(n)]["s_per_token"] * 1e6 for n in lengths], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="sequence length (tokens)", ylabel="forward+backward us per token")
    ax.set_title("causal LM backbones, width 256, 4 layers, fp32 CPU (lower is better)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="all lengths 512..8192 and more steps")
    parser.add_argument("--lengths", type=str, default=None, help="comma-separated lengths (overrides the default)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--skip-quadratic-above", type=int, default=4096, help="skip GAU-quad beyond this length")
    parser.add_argument("--json", type=str, default=None)
    parser.add_argument("--plot", type=str, default=None, help="write the time-per-token plot (png) here")
    parser.add_argument("--plot-from", type=str, default=None, help="only plot the results of an earlier --json")
    args = parser.parse_args()
    if args.plot_from:
        with open(args.plot_from, encoding="utf-8") as f:
            plot(json.load(f)["results"], args.plot or "attention_scaling.png")
        return
    torch.manual_seed(0)
    torch.set_num_threads(2)
    lengths = [512, 1024, 2048, 4096, 8192] if args.full else [512, 2048, 8192]
    if args.lengths:
        lengths = [int(x) for x in args.lengths.split(",")]
    steps = args.steps or (5 if args.full else 2)
    skip_quadratic = 8192 if args.full else args.skip_quadratic_above

    peak = matmul_peak()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads 2, fp32")
    print(f"fp32 matmul peak (2048^3, measured): {peak / 1e9:.1f} GFLOP/s\n")
    models = build_models()
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in models}
    header = f"{'model':20s} {'T':>6s} {'us/token':>9s} {'saved MB':>9s} {'GFLOP/tok':>9s} {'MFU':>6s}"
    print(header)
    for length in lengths:
        for name, model in models.items():
            if name == "gau_quad" and length > skip_quadratic:
                continue
            seconds, memory = measure(model, length, warmup=1, steps=steps)
            flops = flops_per_token(name, length)
            mfu = flops / seconds / peak
            results[name][length] = {"s_per_token": seconds, "saved_bytes": memory, "flops": flops, "mfu": mfu}
            print(f"{name:20s} {length:6d} {seconds * 1e6:9.1f} {memory / 2**20:9.1f} {flops / 1e9:9.3f} {mfu:6.1%}")

    print("\nratios (measured | analytic FLOPs)")
    flash = results["flash"]
    first, last = lengths[0], lengths[-1]
    print(
        f"FLASH time/token {last} vs {first}: {flash[last]['s_per_token'] / flash[first]['s_per_token']:.2f}x"
        f" | {flops_per_token('flash', last) / flops_per_token('flash', first):.2f}x   (target <= 1.3x)"
    )
    for length in lengths:
        tpp = results["transformer++_sdpa"][length]
        speedup = tpp["s_per_token"] / flash[length]["s_per_token"]
        analytic = tpp["flops"] / flash[length]["flops"]
        line = f"T={length:5d}: Transformer++/FLASH time {speedup:.2f}x | {analytic:.2f}x"
        if "flash_pytorch" in results:
            lucid = results["flash_pytorch"][length]["s_per_token"]
            line += f";  flash_pytorch/ours {lucid / flash[length]['s_per_token']:.2f}x | 1.00x"
        if length in results["gau_quad"]:
            gau = results["gau_quad"][length]
            line += f";  GAU-quad/FLASH {gau['s_per_token'] / flash[length]['s_per_token']:.2f}x | "
            line += f"{gau['flops'] / flash[length]['flops']:.2f}x"
        print(line)
    print("(targets: Transformer++/FLASH >= 2.5x at 8192 and widening; flash_pytorch/ours >= 1.3x; MFU >= 50%)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"peak_flops": peak, "lengths": lengths, "steps": steps, "results": results}, f, indent=2)
    if args.plot:
        plot(json.loads(json.dumps(results)), args.plot)  # the JSON round trip makes the length keys strings


if __name__ == "__main__":
    main()
