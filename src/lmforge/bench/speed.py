"""``lmforge bench speed``: forward+backward tokens/s and activation memory of every registered architecture and
its peer implementation (``lmforge.bench.peers``) at matched width and depth, over sequence lengths.

Method (nanoGPT ``bench.py``, modded-nanogpt, benchmarks/gpt.py): both models of a pair are built from one config
(the peer through our converter), get ``warmup`` untimed steps each, then ``steps`` repeats in which ours and the
peer alternate (the order flips every repeat, so drifting background load hits both). A step is forward, the
scalar ``output.float().square().mean()``, backward and ``zero_grad`` (no optimizer: it is the same for every
model). Per length the batch is ``tokens_per_step // length`` sequences (at least 1), so time per token is
comparable across lengths. Reported: median seconds per token with the min-max spread, the ratio peer/ours per
repeat (median and range: > 1 means ours is faster), MFU against the fp32 matmul peak measured in the same run
(``lmforge.bench.flops``), and memory: on CUDA the peak allocated bytes of a step; on CPU the bytes autograd saves
for backward (``saved_tensors_hooks``), the part of training memory that grows with length (a process's peak RSS
cannot be attributed to one of two models). The same memory of our model with gradient checkpointing on
(``--gradient_checkpointing``, ``models.common``) is recorded beside it with the ratio on/off per architecture
(not timed; ``--checkpointing_memory false`` skips it). bf16 runs under autocast on CUDA only; on CPU it is
recorded as not measured (bf16 matmuls have no fast CPU kernel there: ~200x slower than fp32, measured).

Shape: width ``hidden_size`` and ``num_layers`` Transformer blocks; GAU stacks (gau-alpha, flash-quad, flash) get
twice the layers, because one GAU replaces attention *and* FFN (two GAUs ~ one block in parameters and FLOPs; the
FLASH paper's convention). Each architecture starts from its ``bench`` (else ``small``) preset; FFN and GAU widths
keep the preset's ratio to the width. Dropout is off. Writes ``NAME.json``, ``NAME.md`` and ``NAME.png`` (time per
token vs length, log-log) to ``output_dir``, with the command, date, machine and versions.

Code: the step, memory, timing and environment primitives are in ``bench/measure.py`` (shared with ``lmforge
compare``), the table and plot in ``bench/speed_report.py``; this module re-exports them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmforge.bench.flops import matmul_peak, sample_ids, train_flops_per_token
from lmforge.bench.measure import (  # re-exported: the primitives live in bench/measure.py
    environment,
    measure_pair,
    profile_step,
    saved_bytes,
    step_fn,
    step_memory,
)
from lmforge.bench.peers import PEERS, build_peer
from lmforge.bench.speed_report import format_markdown, plot_speed, row_line  # re-exported
from lmforge.models.common import set_gradient_checkpointing

__all__ = [
    "GAU_STACKS",
    "SpeedArgs",
    "bench_config",
    "bench_speed",
    "environment",
    "format_markdown",
    "measure_pair",
    "plot_speed",
    "profile_step",
    "saved_bytes",
    "step_memory",
]

GAU_STACKS = ("gau-alpha", "flash-quad", "flash")  # two GAU layers per Transformer block


@dataclass(kw_only=True)
class SpeedArgs:
    models: list[str] | None = None
    """Architectures to measure (default: every registered one)."""
    lengths: list[int] = field(default_factory=lambda: [128, 512, 1024])
    """Sequence lengths (longer ones, e.g. 2048 and 8192, show the linear models' advantage; they take longer)."""
    tokens_per_step: int = 1024
    """Tokens per step: batch = tokens_per_step // length (at least 1)."""
    hidden_size: int = 256
    """Model width of every architecture and its peer."""
    num_layers: int = 4
    """Transformer blocks (GAU stacks get 2x GAU layers)."""
    vocab_size: int = 8000
    """Vocabulary of every model (the LM head is timed with it)."""
    warmup: int = 1
    """Untimed steps per model and length."""
    steps: int = 5
    """Timed repeats per model and length (ours and the peer alternate)."""
    threads: int = 2
    """torch CPU threads."""
    dtypes: list[str] = field(default_factory=lambda: ["float32", "bfloat16"])
    """float32 and/or bfloat16 (autocast; CUDA only, recorded as not measured on CPU)."""
    device: str = "auto"
    """cpu, cuda or auto (cuda when available)."""
    peers: bool = True
    """Also time each architecture's peer implementation."""
    output_dir: str = "runs/bench"
    """Directory for NAME.json, NAME.md and NAME.png."""
    name: str = "bench_speed"
    """File name stem of the outputs."""
    plot: bool = True
    """Write the log-log plot (or redraw it alone from an earlier NAME.json with ``replot``)."""
    replot: bool = False
    """Only redraw NAME.png from OUTPUT_DIR/NAME.json (no measurement)."""
    compile: bool = False
    """``torch.compile`` ours and the peer (the untimed warm-up steps compile; needs --warmup >= 1)."""
    checkpointing_memory: bool = True
    """Also measure our model's memory with gradient checkpointing on: the ratio on/off per row (not with --compile)."""
    profile: int = 0
    """Also profile one step of each model per row (``torch.profiler``) and keep its N most expensive ops by self
    time in the JSON and the log (0 = off; profiled steps are not timed)."""

    def __post_init__(self) -> None:
        for key in ("tokens_per_step", "hidden_size", "num_layers", "vocab_size", "steps", "threads"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key} must be >= 1, got {getattr(self, key)}")
        if self.warmup < 0 or (self.compile and self.warmup < 1):
            raise ValueError(f"--warmup must be >= 0 (>= 1 with --compile), got {self.warmup}")
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError(f"--lengths must be positive, got {self.lengths}")
        bad = sorted(set(self.dtypes) - {"float32", "bfloat16"})
        if bad:
            raise ValueError(f"--dtypes must be float32 and/or bfloat16, got {bad}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device must be auto, cpu or cuda, got {self.device!r}")


def _reformer_shape(base: Any, *, hidden_size: int, num_layers: int, max_length: int) -> dict[str, Any]:
    """Reformer: local/LSH layers alternating, the axial position table shaped to the length (HF trains only at
    exactly prod(axial_pos_shape) tokens), its two widths scaled with the model width, buckets by HF's rule."""
    first = 2 ** (max(max_length.bit_length() - 1, 0) // 2)
    shape = (first, max_length // first) if max_length % first == 0 else (1, max_length)
    dims = base.axial_pos_embds_dim
    widths = (round(dims[0] * hidden_size / sum(dims)),)
    return {
        "attn_layers": tuple(("local", "lsh")[i % 2] for i in range(num_layers)),
        "axial_pos_shape": shape,
        "axial_pos_embds_dim": (*widths, hidden_size - widths[0]),
        "max_position_embeddings": max_length,
        "num_buckets": None,
    }


# Architecture-specific shape fields (beyond width, depth and vocabulary); called with the base preset config.
SHAPE_HOOKS: dict[str, Callable[..., dict[str, Any]]] = {"reformer": _reformer_shape}


def bench_config(name: str, *, hidden_size: int, num_layers: int, vocab_size: int, max_length: int) -> Any:
    """The benchmark config of ``name`` for inputs of up to ``max_length`` tokens: its bench/small preset at our
    width, depth and vocabulary, no dropout (``SHAPE_HOOKS`` for what an architecture needs beyond that)."""
    from lmforge.models.registry import get_config, get_entry

    entry = get_entry(name)
    preset = next((p for p in ("bench", "small") if p in entry.presets), None)
    base = get_config(name, preset=preset) if preset else None
    fields = {f.name for f in dataclasses.fields(entry.config_class)}
    wanted: dict[str, Any] = {
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers * (2 if name in GAU_STACKS else 1),
        "vocab_size": vocab_size,
    }
    if base is not None and getattr(base, "hidden_size", None):
        for width in ("intermediate_size", "attention_key_size"):
            value = getattr(base, width, None)
            if isinstance(value, int) and width in fields:
                wanted[width] = max(8, round(value * hidden_size / base.hidden_size))
        rotary = getattr(base, "rotary_dim", None)  # partial RoPE (FLASH: 32 dims) cannot exceed the key width
        if isinstance(rotary, int) and "attention_key_size" in wanted:
            wanted["rotary_dim"] = min(rotary, wanted["attention_key_size"])
    if "max_position_embeddings" in fields and (getattr(base, "max_position_embeddings", 0) or 0) < max_length:
        wanted["max_position_embeddings"] = max_length
    if name in SHAPE_HOOKS:
        wanted |= SHAPE_HOOKS[name](base, hidden_size=hidden_size, num_layers=num_layers, max_length=max_length)
    for key in fields:
        if "dropout" in key or key.endswith("pdrop") or key.endswith("dropout_prob"):
            wanted[key] = 0.0
    return get_config(name, preset=preset, **{k: v for k, v in wanted.items() if k in fields})


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device available")
    return torch.device(name)


def _build_pair(name: str, args: SpeedArgs, device: torch.device, length: int) -> dict[str, Any]:
    """Our model for ``length`` tokens (task matched to the peer) and the peer, or the reason there is none."""
    from lmforge.models.registry import build_model, get_entry

    entry = get_entry(name)
    peer_spec = PEERS.get(name)
    task = peer_spec.task if peer_spec and peer_spec.task in entry.builders else None
    task = task or next(t for t in ("mlm", "clm", "backbone") if t in entry.builders)
    cfg = bench_config(name, hidden_size=args.hidden_size, num_layers=args.num_layers, vocab_size=args.vocab_size,
                       max_length=length)  # fmt: skip
    torch.manual_seed(0)
    ours = build_model(name, task=task, config=cfg).to(device).train()
    pair: dict[str, Any] = {"task": task, "config": dataclasses.asdict(cfg), "ours": ours, "cfg": cfg}
    pair["params"] = sum(p.numel() for p in ours.parameters())
    if args.compile:
        pair["ours"] = torch.compile(ours)
    if not args.peers:
        pair["peer_error"] = "peers switched off"
    elif peer_spec is None:
        pair["peer_error"] = "no peer listed"
    elif peer_spec.task != task:
        pair["peer_error"] = f"{name} has no {peer_spec.task!r} task to match {peer_spec.label}"
    else:
        try:  # a peer that cannot be built is reported, not fatal: the architecture is still measured
            model_cfg = getattr(ours, "config", cfg)
            pair["peer"] = build_peer(name, model_cfg).to(device).train()
            if args.compile:
                pair["peer"] = torch.compile(pair["peer"])
            pair["peer_label"] = peer_spec.label
            pair["peer_params"] = sum(p.numel() for p in pair["peer"].parameters())
        except (ImportError, ValueError, TypeError, AttributeError) as error:
            pair["peer_error"] = f"{peer_spec.label}: {type(error).__name__}: {error}"
    return pair


def bench_speed(args: SpeedArgs) -> dict[str, Any]:
    """Measure, print the markdown table and write NAME.json/.md/.png; returns the JSON-ready result."""
    from lmforge.models.registry import list_models

    if args.replot:
        out = Path(args.output_dir)
        result = json.loads((out / f"{args.name}.json").read_text(encoding="utf-8"))
        plot_speed(result, out / f"{args.name}.png")
        return result
    registered = list_models()
    names = args.models or list(registered)
    unknown = sorted(set(names) - set(registered))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {sorted(registered)}")
    device = _resolve_device(args.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, names, device)
    finally:
        torch.set_num_threads(threads)


def _run(args: SpeedArgs, names: list[str], device: torch.device) -> dict[str, Any]:
    env = environment(device, args.threads)
    env["peak_flops_fp32"] = matmul_peak(device=device.type)
    print(f"fp32 matmul peak: {env['peak_flops_fp32'] / 1e9:.1f} GFLOP/s on {env['device']}", flush=True)
    rows: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    for name in names:
        for length in args.lengths:  # models are built per length: some shapes depend on it (Reformer's axes)
            try:  # an architecture whose bench config cannot be built is reported, not fatal
                pair = _build_pair(name, args, device, length)
            except (ValueError, TypeError) as error:
                models[name] = {"error": f"{type(error).__name__}: {error}"}
                print(f"{name}: not measured ({models[name]['error']})", flush=True)
                break
            keys = ("task", "params", "peer_label", "peer_params", "peer_error", "config")
            models.setdefault(name, {k: pair.get(k) for k in keys})
            for dtype in args.dtypes:
                row = _measure_row(name, pair, args, device, dtype=dtype, length=length)
                rows.append(row)
                print(row_line(row), flush=True)
            del pair
    env["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    env["peak_flops_fp32"] = max([env["peak_flops_fp32"], *(r["peak_flops"] for r in rows if "peak_flops" in r)])
    result = {"environment": env, "settings": dataclasses.asdict(args), "models": models, "rows": rows}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    markdown = format_markdown(result)
    (out / f"{args.name}.md").write_text(markdown, encoding="utf-8")
    print("\n" + markdown, flush=True)
    if args.plot:
        plot_speed(result, out / f"{args.name}.png")
    return result


def _measure_row(
    name: str, pair: dict[str, Any], args: SpeedArgs, device: torch.device, *, dtype: str, length: int
) -> dict[str, Any]:
    """One (model, dtype, length) row. MFU (fp32 rows) is against the fp32 matmul peak sampled just before and
    after the timed steps (the best of the two): on a shared machine the peak moves with the load, and a peak
    taken minutes earlier can put MFU above 100%."""
    batch = max(1, args.tokens_per_step // length)
    row: dict[str, Any] = {"model": name, "task": pair["task"], "dtype": dtype, "length": length, "batch": batch,
                           "peer_label": pair.get("peer_label")}  # fmt: skip
    if dtype == "bfloat16" and device.type != "cuda":
        return row | {"status": "not measured: bf16 on CPU (no fast bf16 matmul kernel; ~200x slower than fp32)"}
    autocast = torch.bfloat16 if dtype == "bfloat16" else None
    ids = sample_ids(pair["cfg"], (batch, length), device=device)
    steps = {"ours": step_fn(pair["ours"], ids, autocast)}
    if "peer" in pair:
        steps["peer"] = step_fn(pair["peer"], ids, autocast)
    try:  # a length a model cannot take (e.g. a fixed position table) is a row with the reason
        memory = {key: step_memory(step, device) for key, step in steps.items()}
        if args.checkpointing_memory and not args.compile:
            set_gradient_checkpointing(pair["ours"], True)
            try:
                memory["ours_checkpointed"] = step_memory(steps["ours"], device)
            finally:
                set_gradient_checkpointing(pair["ours"], False)
        before = matmul_peak(device=device.type, tries=2)
        timing = measure_pair(steps, tokens=batch * length, warmup=args.warmup, repeats=args.steps)
        peak = max(before, matmul_peak(device=device.type, tries=2))  # sampled around the timed steps
    except (RuntimeError, ValueError, AssertionError, IndexError) as error:
        return row | {"status": f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    flops = train_flops_per_token(name, pair["cfg"], length, task=pair["task"])
    row |= {"status": "ok", "flops_per_token": flops, "memory_bytes": memory, "peak_flops": peak}
    for key in steps:
        row[key] = timing[key]
        row[f"{key}_tokens_per_s"] = 1.0 / timing[key]["median"]
        if flops is not None and autocast is None:
            row[f"{key}_mfu"] = flops / timing[key]["median"] / peak
    if "ratio" in timing:
        row["ratio"] = timing["ratio"]
    if "ours_checkpointed" in memory and memory["ours"]:
        row["checkpointing_memory_ratio"] = memory["ours_checkpointed"] / memory["ours"]
    if args.profile:
        row["profile"] = {key: profile_step(step, top=args.profile) for key, step in steps.items()}
    return row
