"""``lmforge bench flops``: analytic FLOPs per token for every registered architecture, cross-checked against
``torch.utils.flop_counter.FlopCounterMode``, and the matmul peak that MFU is measured against.

What is counted: matrix-multiply FLOPs (2 m n k per product) of one forward pass, per token, *as computed*:
full ``T x T`` score blocks even when a causal mask zeroes half of them (eager kernels compute them; SDPA's flash
kernels on CUDA skip about half, so causal MFU on GPU is then slightly understated), chunk padding included for
FLASH. Element-wise work (norms, activations, softmax, RoPE) is left out, as ``FlopCounterMode`` leaves it out.
Training = 3 x forward: the backward of every product computes one product per input (PaLM appendix B; this
holds here because the embeddings require gradients, so even the first layer's input gradient is computed).
``6 N + 12 L H Q T`` (nanoGPT/PaLM) is this count for a softmax Transformer; GAU, FLASH, LSH attention and
CANINE need their own formulas, which is why there is one function per architecture.

Formulas are keyed by the registered architecture name (``FORMULAS``); an architecture registered without one is
reported as "no formula" instead of failing. Legend: T tokens in the sequence, D width, E GAU expansion, K GAU
shared q/k width, I FFN width, G FLASH chunk, V vocabulary, L layers.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from lmforge.data.tokenizer import NUM_CODEPOINTS
from lmforge.nn.lsh import default_num_buckets

__all__ = [
    "FORMULAS",
    "TRAIN_FORMULAS",
    "FlopsArgs",
    "bench_flops",
    "counted_flops_per_token",
    "flops_per_token",
    "matmul_peak",
    "sample_ids",
    "train_flops_per_token",
]

Formula = Callable[[Any, int, str], float]  # (config, length T, task) -> forward matmul FLOPs per token


def _decoder(cfg: Any, task: str, *, transform: bool) -> float:
    """LM head per token: optional BERT transform (D x D) and the decoder (D x V); nothing for a backbone."""
    if task == "backbone":
        return 0.0
    return (2.0 * cfg.hidden_size**2 if transform else 0.0) + 2.0 * cfg.hidden_size * cfg.vocab_size


def bert_flops(cfg: Any, length: int, task: str) -> float:
    """BERT/RoFormer: q, k, v, o (4 D^2), scores + weighted sum (2 T D), FFN (2 D I); BERT head (transform)."""
    d = cfg.hidden_size
    layer = 2 * 4 * d * d + 2 * 2 * length * d + 2 * 2 * d * cfg.intermediate_size
    return cfg.num_hidden_layers * layer + _decoder(cfg, task, transform=True)


def _ffn_matmuls(cfg: Any, width: int) -> float:
    return (3 if cfg.ffn_type == "swiglu" else 2) * 2.0 * cfg.hidden_size * width


def gpt_flops(cfg: Any, length: int, task: str) -> float:
    """GPT-2 and variants: q, o (D^2 each), k, v (D x kv width, GQA), attention 2 T D, FFN (MLP 2 matmuls, SwiGLU
    3); MoE: router (D x experts) + top-k routed experts + the shared experts' FFN; tied/untied decoder."""
    d = cfg.hidden_size
    kv = cfg.kv_heads * cfg.head_dim
    layer = 2 * d * (2 * d + 2 * kv) + 2 * 2 * length * d
    if cfg.num_experts > 0:
        width = cfg.moe_intermediate_size or cfg.ffn_hidden_size
        experts = cfg.num_experts_per_tok + cfg.num_shared_experts
        layer += 2 * d * cfg.num_experts + experts * _ffn_matmuls(cfg, width)
    else:
        layer += _ffn_matmuls(cfg, cfg.ffn_hidden_size)
    return cfg.num_hidden_layers * layer + _decoder(cfg, task, transform=False)


def _gau_projections(cfg: Any) -> float:
    """One GAU's fused ``D -> 2E + K`` projection and its ``E -> D`` output (per token)."""
    d, e, k = cfg.hidden_size, cfg.intermediate_size, cfg.attention_key_size
    return 2.0 * d * (2 * e + k) + 2.0 * e * d


def gau_alpha_flops(cfg: Any, length: int, task: str) -> float:
    """GAU-alpha: projections + quadratic attention over all T keys (q k^T: 2 T K, A v: 2 T E); tied decoder."""
    layer = _gau_projections(cfg) + 2.0 * length * cfg.attention_key_size + 2.0 * length * cfg.intermediate_size
    return cfg.num_hidden_layers * layer + _decoder(cfg, task, transform=False)


def flash_quad_flops(cfg: Any, length: int, task: str) -> float:
    """FLASH-Quad: the GAU-alpha layer count (the kernel differs only element-wise); BERT head (transform)."""
    layer = _gau_projections(cfg) + 2.0 * length * cfg.attention_key_size + 2.0 * length * cfg.intermediate_size
    return cfg.num_hidden_layers * layer + _decoder(cfg, task, transform=True)


def flash_flops(cfg: Any, length: int, task: str) -> float:
    """FLASH (mixed chunk): per padded token, quadratic inside its chunk (2 G K + 2 G E) and linear across chunks
    (lin_k^T v: 2 K E, lin_q (k^T v): 2 K E); the sequence is padded to a multiple of G. Tied decoder."""
    g, k, e = cfg.group_size, cfg.attention_key_size, cfg.intermediate_size
    padded = math.ceil(length / g) * g
    attention = (2.0 * g * k + 2.0 * g * e + 2 * 2.0 * k * e) * padded / length
    return cfg.num_hidden_layers * (_gau_projections(cfg) + attention) + _decoder(cfg, task, transform=False)


def _reformer_parts(cfg: Any, length: int, task: str) -> tuple[float, float, float]:
    """(layers without hashing, LSH hashing, LM head) forward FLOPs per token of a Reformer."""
    d, a = cfg.hidden_size, cfg.num_attention_heads * cfg.attention_head_size
    padded = length
    if length % cfg.chunk_multiple and length > cfg.min_chunk_length:
        padded = length + cfg.chunk_multiple - length % cfg.chunk_multiple
    layers = hashing = 0.0
    for kind in cfg.attn_layers:
        chunk, before, after = (
            (cfg.lsh_attn_chunk_length, cfg.lsh_num_chunks_before, cfg.lsh_num_chunks_after)
            if kind == "lsh"
            else (cfg.local_attn_chunk_length, cfg.local_num_chunks_before, cfg.local_num_chunks_after)
        )
        rounds = 1
        if padded <= chunk:  # one chunk: full attention, no hashing (HF)
            chunk, before, after = padded, 0, 0
        elif kind == "lsh":
            rounds = cfg.num_hashes
            buckets = cfg.num_buckets or default_num_buckets(padded, chunk, cfg.max_position_embeddings)
            factors = (buckets,) if isinstance(buckets, int) else tuple(buckets)
            hashing += 2.0 * a * rounds * sum(factors) / 2
        projections = (2 if kind == "lsh" else 3) * 2.0 * d * a + 2.0 * a * d  # shared qk (lsh), v, out
        attention = rounds * 2 * 2.0 * chunk * (1 + before + after) * a
        layers += projections + attention + 2 * 2.0 * d * cfg.feed_forward_size
    head = 0.0 if task == "backbone" else 2.0 * 2 * d * cfg.vocab_size  # on the unpadded positions only
    scale = padded / length  # the layers compute the padding tokens too
    return layers * scale, hashing * scale, head


def reformer_flops(cfg: Any, length: int, task: str) -> float:
    """Reformer: per layer of ``attn_layers`` (A = heads x head size), ``"lsh"``: shared q=k and v projections
    (2 D A), hashing (random rotations, A x rounds x sum(buckets)/2 per token) and, per hash round, every query
    against its chunk and the chunks before/after (2 x 2 c (1 + before + after) A); ``"local"``: q, k, v
    (3 D A) and the same chunked attention once; both: the output projection (A D) and the FFN (2 D F). The LM
    head reads the two concatenated reversible streams (2D x V). Axial positions are a gather."""
    return sum(_reformer_parts(cfg, length, task))


def reformer_train_flops(cfg: Any, length: int, task: str) -> float:
    """Training is not 3 x forward: reversible layers recompute their forward in backward (with the buckets of
    the forward, so no second hashing), and hashing has no backward (detached)."""
    layers, hashing, head = _reformer_parts(cfg, length, task)
    return (4.0 if cfg.use_reversible else 3.0) * layers + hashing + 3.0 * head


def canine_flops(cfg: Any, length: int, task: str) -> float:
    """CANINE: initial BERT layer with block-local attention over chunks of W = ``local_transformer_stride``
    (padded to a multiple of W; plus the v/o projections of each chunk's mean, kept for HF parity), strided Conv1d
    downsampling (kernel = stride = r: 2 D^2 r per molecule), L deep BERT layers over M = T // r molecules, the
    pooler (D^2 per sequence), upsampling Conv1d over the concatenated 2D features (kernel k: 2 (2D) D k per
    character) and a final full-attention BERT layer. Head (mlm): BERT transform + K tied hash decoders of
    D/K x buckets each (2 D buckets per position) + the quotient classifier (D x codepoints / buckets)."""
    d, i, r = cfg.hidden_size, cfg.intermediate_size, cfg.downsampling_rate

    def bert_layer(keys: float) -> float:
        return 2 * 4.0 * d * d + 2 * 2.0 * keys * d + 2 * 2.0 * d * i

    width = cfg.local_transformer_stride
    padded = math.ceil(length / width) * width
    total = padded * bert_layer(width) + (padded // width) * 2 * 2.0 * d * d
    molecules = length // r
    total += molecules * 2.0 * d * d * r + cfg.num_hidden_layers * molecules * bert_layer(molecules) + 2.0 * d * d
    total += length * (2 * 2.0 * d * d * cfg.upsampling_kernel_size + bert_layer(length))
    if task != "backbone":  # transform, K tied bucket decoders, the codepoint-quotient classifier
        quotients = NUM_CODEPOINTS // cfg.num_hash_buckets + 1
        head = (2.0 * d * d if cfg.hash_head_transform else 0.0) + 2.0 * d * cfg.num_hash_buckets + 2.0 * d * quotients
        total += length * head
    return total / length


FORMULAS: dict[str, Formula] = {
    "bert": bert_flops,
    "gpt": gpt_flops,
    "gau-alpha": gau_alpha_flops,
    "flash-quad": flash_quad_flops,
    "flash": flash_flops,
    "reformer": reformer_flops,
    "canine": canine_flops,
}


def flops_per_token(name: str, cfg: Any, length: int, *, task: str = "backbone") -> float | None:
    """Forward matmul FLOPs per token of architecture ``name`` at sequence length ``length``; None = no formula."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    formula = FORMULAS.get(name)
    return None if formula is None else float(formula(cfg, length, task))


# Architectures whose training FLOPs are not 3 x forward.
TRAIN_FORMULAS: dict[str, Formula] = {"reformer": reformer_train_flops}


def train_flops_per_token(name: str, cfg: Any, length: int, *, task: str = "backbone") -> float | None:
    """Forward + backward: 3 x forward (see the module docstring) unless ``TRAIN_FORMULAS`` says otherwise."""
    if name in TRAIN_FORMULAS:
        return float(TRAIN_FORMULAS[name](cfg, length, task))
    forward = flops_per_token(name, cfg, length, task=task)
    return None if forward is None else 3.0 * forward


def counted_flops_per_token(model: torch.nn.Module, input_ids: torch.Tensor, *, backward: bool = False) -> float:
    """FLOPs per token of one forward (and backward) of ``model(input_ids)`` by ``FlopCounterMode``.

    The output is reduced to a scalar by ``float().square().mean()`` (element-wise, not counted). The CPU SDPA
    kernel has no FLOP formula in the counter: cross-check models with ``attn_implementation="eager"``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = model(input_ids)
        tensor = out if isinstance(out, torch.Tensor) else out.logits
        if backward:
            tensor.float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / input_ids.numel()


def sample_ids(cfg: Any, shape: tuple[int, ...], *, device: str | torch.device = "cpu") -> torch.Tensor:
    """Random input ids for a model of ``cfg``: token ids below ``vocab_size``, or CJK codepoints for
    vocabulary-free models (CANINE)."""
    vocab = getattr(cfg, "vocab_size", None)
    if vocab is None:
        return torch.randint(0x4E00, 0x9FFF, shape, device=device)
    return torch.randint(1, vocab, shape, device=device)


def matmul_peak(*, sizes: tuple[int, ...] = (1024, 2048), tries: int = 3, device: str = "cpu") -> float:
    """Best fp32 ``torch.mm`` FLOP/s (2 n^3 per product) over square sizes on ``device``: the MFU denominator."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        torch.mm(a, b)
        for _ in range(tries):
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            torch.mm(a, b)
            if device != "cpu":
                torch.cuda.synchronize()
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


@dataclass(kw_only=True)
class FlopsArgs:
    models: list[str] | None = None
    """Architectures to report (default: every registered one)."""
    preset: str = "tiny"
    """Preset whose config the table and the cross-check use (tiny: the counter runs in seconds)."""
    lengths: list[int] = field(default_factory=lambda: [64, 512, 2048])
    """Sequence lengths of the analytic table."""
    check_length: int = 24
    """Sequence length of the FlopCounterMode cross-check (crosses FLASH's tiny chunk of 8)."""
    threads: int = 2
    """torch CPU threads for the matmul peak."""


def _cross_check_config(name: str, preset: str) -> tuple[Any, str]:
    from lmforge.models.registry import get_config, get_entry

    entry = get_entry(name)
    task = "mlm" if "mlm" in entry.builders else ("clm" if "clm" in entry.builders else "backbone")
    cfg = get_config(name, preset=preset if preset in entry.presets else None)
    if hasattr(cfg, "attn_implementation"):
        cfg = dataclasses.replace(cfg, attn_implementation="eager")  # the counter sees eager matmuls
    return cfg, task


def bench_flops(args: FlopsArgs) -> dict[str, Any]:
    """Print the analytic FLOPs/token table, the FlopCounterMode cross-check and the matmul peak; return them."""
    from lmforge.models.registry import build_model, list_models

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    registered = list_models()
    names = args.models or list(registered)
    unknown = sorted(set(names) - set(registered))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {sorted(registered)}")
    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(f"fp32 matmul peak ({platform.machine()}, {args.threads} threads): {peak / 1e9:.1f} GFLOP/s")
    header = " ".join(f"{'T=' + str(n):>11s}" for n in args.lengths)
    print(f"\ntraining FLOPs per token (matmuls: 3 x forward; reversible Reformer more), preset {args.preset!r}")
    print(f"{'model':12s} {'task':8s} {header}   counter/analytic at T={args.check_length}")
    result: dict[str, Any] = {"peak_flops": peak, "preset": args.preset, "models": {}}
    for name in names:
        cfg, task = _cross_check_config(name, args.preset)
        if name not in FORMULAS:
            print(f"{name:12s} {task:8s} no formula")
            result["models"][name] = {"task": task, "formula": False}
            continue
        row = {n: train_flops_per_token(name, cfg, n, task=task) for n in args.lengths}
        torch.manual_seed(0)
        model = build_model(name, task=task, config=cfg).eval()
        ids = sample_ids(cfg, (2, args.check_length))
        counted = counted_flops_per_token(model, ids, backward=True)
        analytic = train_flops_per_token(name, cfg, args.check_length, task=task)
        cells = " ".join(f"{row[n] / 1e6:9.3f}MF" for n in args.lengths)
        print(f"{name:12s} {task:8s} {cells}   {counted / analytic:.4f}")
        result["models"][name] = {"task": task, "formula": True, "train_flops_per_token": row,
                                  "counted": counted, "analytic": analytic}  # fmt: skip
    return result
