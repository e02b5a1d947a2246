"""Measurement primitives of ``lmforge bench speed`` and ``lmforge compare``: one training step as a closure, its
activation memory, alternating timed repeats, a profile of one step and the environment record (R13). The method
is described in ``lmforge.bench.speed``."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["environment", "measure_pair", "profile_step", "saved_bytes", "step_fn", "step_memory"]


def _output_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state"):
        value = getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cannot find an output tensor in {type(out).__name__}")


def step_fn(model: nn.Module, ids: torch.Tensor, autocast: torch.dtype | None) -> Callable[[], None]:
    device_type = ids.device.type

    def step() -> None:
        with torch.autocast(device_type, dtype=autocast, enabled=autocast is not None):
            loss = _output_tensor(model(ids)).float().square().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device_type == "cuda":
            torch.cuda.synchronize()

    return step


def step_memory(step: Callable[[], None], device: torch.device) -> int:
    """CUDA: peak allocated bytes of one step; CPU: bytes saved for backward in one step."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        return torch.cuda.max_memory_allocated(device) - base
    return saved_bytes(step)


def saved_bytes(step: Callable[[], None]) -> int:
    """Bytes of the tensors autograd saves for backward during ``step`` (activation memory, any device)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total


def _timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_pair(
    steps: dict[str, Callable[[], None]], *, tokens: int, warmup: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Seconds per token of each named step (median, min, max); the steps alternate, the order flips each repeat."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            times[n].append(_timed(steps[n]) / tokens)
    out = {n: _spread(times[n]) | {"raw": times[n]} for n in names}
    if len(names) == 2:
        ours, peer = names
        out["ratio"] = _spread([p / o for o, p in zip(times[ours], times[peer], strict=True)])
    return out


def environment(device: torch.device, threads: int) -> dict[str, Any]:
    """Command, date, machine and versions (R13), recorded in every result file."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("transformers", "FLASH-pytorch", "lmforge"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "command": shlex.join(["lmforge", *sys.argv[1:]] if Path(sys.argv[0]).name == "lmforge" else sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {cpu}",
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "load_average_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def profile_step(step: Callable[[], None], *, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` ops of one ``step`` by self CPU time (``torch.profiler``): name, calls, ms, share of the step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "calls": e.count, "ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total}
            for e in events[:top]]  # fmt: skip
