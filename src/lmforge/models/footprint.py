"""How big a config's model is before it exists: parameter count and memory, checked against the machine.

A config with ``num_hidden_layers: 1000000000`` or ``vocab_size: 1e12`` would otherwise allocate until the
machine runs out of memory. ``count_parameters`` builds the model on the ``meta`` device (shapes only, nothing
allocated: exact for every architecture, tied weights counted once); the depth is built as 1 and 2 layers and
extrapolated linearly, so a billion layers costs two tiny builds, not a billion modules. ``check_memory`` turns
the count into bytes (4 per fp32 weight; training with AdamW needs 16: weight, gradient and two moments, before
activations) and refuses, in one line, a model that cannot fit in the device's total memory.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any

import torch

__all__ = ["TRAINING_BYTES_PER_PARAMETER", "check_memory", "count_parameters", "device_memory"]

TRAINING_BYTES_PER_PARAMETER = 16  # fp32 weight + gradient + AdamW's two moments (activations come on top)
DEPTH_FIELD = "num_hidden_layers"  # parameters grow linearly with it in every architecture here


def _as_ints(config: Any) -> Any:
    """``config`` with integral floats in int fields made ints (JSON/YAML ``1e9`` arrives as a float)."""
    hints = typing.get_type_hints(type(config))
    fixed = {
        f.name: int(value)
        for f in dataclasses.fields(config)
        if hints.get(f.name) is int and isinstance(value := getattr(config, f.name), float) and value.is_integer()
    }
    return dataclasses.replace(config, **fixed) if fixed else config


def _meta_count(arch: str, config: Any, task: str) -> int:
    from lmforge.models.registry import build_model

    with torch.device("meta"):
        model = build_model(arch, task=task, config=config)
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once


def count_parameters(arch: str, config: Any, task: str = "backbone") -> int:
    """Parameters of ``arch`` built for ``task`` from ``config``, without allocating them."""
    config = _as_ints(config)
    depth = getattr(config, DEPTH_FIELD, None)
    if not isinstance(depth, int) or depth <= 2:
        return _meta_count(arch, config, task)
    one, two = (_meta_count(arch, dataclasses.replace(config, **{DEPTH_FIELD: n}), task) for n in (1, 2))
    return one + (depth - 1) * (two - one)


def device_memory(device: str | torch.device = "cpu") -> int | None:
    """Total memory of ``device`` in bytes (CUDA: the GPU's; otherwise physical RAM), None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if num_bytes < 1024 or unit == "PiB":
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{num_bytes:.0f} B"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def check_memory(
    arch: str,
    config: Any,
    task: str = "backbone",
    *,
    bytes_per_parameter: int = 4,
    device: str | torch.device = "cpu",
    purpose: str = "its fp32 weights",
) -> int:
    """The parameter count; ``ValueError`` (one line) when ``bytes_per_parameter`` times it exceeds ``device``'s
    total memory. A config the estimate cannot build is left to the real build, which reports it."""
    try:
        params = count_parameters(arch, config, task)
    except (TypeError, ValueError, RuntimeError):
        return -1
    memory = device_memory(device)
    need = params * bytes_per_parameter
    if memory is not None and need > memory:
        shape = {name: getattr(config, name) for name in (DEPTH_FIELD, "hidden_size", "vocab_size")
                 if hasattr(config, name)}  # fmt: skip
        shown = ", ".join(f"{name}={value}" for name, value in shape.items())
        raise ValueError(
            f"the {arch} model ({shown}) has {params:.3g} parameters: {purpose} need {_size(need)} "
            f"({bytes_per_parameter} bytes each) but {torch.device(device).type} memory is {_size(memory)}; "
            "shrink the config (--model_overrides / config.json)"
        )
    return params
