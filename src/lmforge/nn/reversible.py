"""Reformer's memory savers: reversible residual layers (activations recomputed in backward) and chunked
application of position-wise blocks.

Reversible residuals (Gomez et al. 2017, RevNet; Kitaev et al. 2020 section 3): two streams,
``y1 = x1 + f(x2)``, ``y2 = x2 + g(y1)``; the inputs are recovered from the outputs
(``x2 = y2 - g(y1)``, ``x1 = y1 - f(x2)``), so the custom ``autograd.Function`` keeps only the last layer's output
whatever the depth and recomputes each layer in backward. References: HF ``_ReversibleFunction`` /
``ReformerLayer.backward_pass``; lucidrains/reformer-pytorch ``reversible.py`` (``Deterministic``).

Two things make the recomputation the *same* function (the traps of lucidrains PR #13 and HF's per-layer seeds):
- the RNG state (CPU, plus the CUDA device's) is captured before each ``f``/``g`` call and restored for the
  recomputation, so dropout draws the same masks; we capture and restore states (lucidrains) rather than
  re-seeding the global RNG (HF), which would leave it in a different state than without reversibility;
- ``f`` receives a per-layer ``state`` dict that lives from forward to backward: LSH attention stores its buckets
  there and reuses them, so new random rotations cannot change the recomputed function.
Autocast state is recorded and re-entered in backward as ``torch.utils.checkpoint`` does.

Contract: ``f(x, state=dict, **kwargs) -> Tensor`` and ``g(x) -> Tensor``, both shape-preserving. Gradients of
the parameters of ``f``/``g`` are accumulated into ``.grad`` inside backward (as HF and lucidrains do), so the
function's inputs must require grad for the backward to run at all; without grad (inference) the layers run
plainly and nothing is recorded.

Legend: B batch, T tokens, D width of one stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["FastDropout", "RNGState", "apply_chunked", "fast_dropout", "reversible_layers", "sequential_layers"]

Layer = tuple[Callable[..., Tensor], Callable[[Tensor], Tensor]]  # (f, g)


class RNGState:
    """The CPU RNG state and, for a CUDA tensor, its device's state; ``replay()`` restores them inside a fork."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextmanager
    def replay(self):
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def sequential_layers(x1: Tensor, x2: Tensor, layers: Sequence[Layer], **kwargs: Any) -> tuple[Tensor, Tensor]:
    """The same two-stream network with stored activations (plain autograd): the reference of the tests."""
    for f, g in layers:
        x1 = x1 + f(x2, state={}, **kwargs)
        x2 = x2 + g(x1)
    return x1, x2


class _Reversible(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1: Tensor, x2: Tensor, layers: Sequence[Layer], kwargs: dict[str, Any]):
        device = x1.device
        records = []
        for f, g in layers:
            record: dict[str, Any] = {"state": {}, "f_rng": RNGState(device)}
            x1 = x1 + f(x2, state=record["state"], **kwargs)
            record["g_rng"] = RNGState(device)
            x2 = x2 + g(x1)
            records.append(record)
        ctx.layers, ctx.kwargs, ctx.records = layers, kwargs, records
        ctx.autocast = (
            device.type,
            torch.is_autocast_enabled(device.type),
            torch.get_autocast_dtype(device.type),
        )
        ctx.save_for_backward(x1, x2)
        return x1, x2

    @staticmethod
    def backward(ctx, dy1: Tensor, dy2: Tensor):
        y1, y2 = ctx.saved_tensors
        device_type, autocast_enabled, autocast_dtype = ctx.autocast
        for (f, g), record in zip(reversed(ctx.layers), reversed(ctx.records)):
            with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_enabled):
                with torch.enable_grad():
                    y1 = y1.detach().requires_grad_()
                    with record["g_rng"].replay():
                        g_y1 = g(y1)
                    torch.autograd.backward(g_y1, dy2)
                with torch.no_grad():
                    x2 = y2 - g_y1
                    dy1 = dy1 + y1.grad  # gradient of x1 = everything that reached y1
                    del g_y1
                with torch.enable_grad():
                    x2 = x2.detach().requires_grad_()
                    with record["f_rng"].replay():
                        f_x2 = f(x2, state=record["state"], **ctx.kwargs)
                    torch.autograd.backward(f_x2, dy1)
                with torch.no_grad():
                    x1 = y1 - f_x2
                    dy2 = dy2 + x2.grad
                    del f_x2
            y1, y2 = x1.detach(), x2.detach()
        return dy1, dy2, None, None


def reversible_layers(x1: Tensor, x2: Tensor, layers: Sequence[Layer], **kwargs: Any) -> tuple[Tensor, Tensor]:
    """``y1 = x1 + f(x2)``, ``y2 = x2 + g(y1)`` for each ``(f, g)``, keeping only the final outputs for backward.

    ``kwargs`` (masks) are passed to every ``f``; with grad disabled or no input requiring grad this is
    ``sequential_layers`` (nothing to recompute).
    """
    if not (torch.is_grad_enabled() and (x1.requires_grad or x2.requires_grad)):
        return sequential_layers(x1, x2, layers, **kwargs)
    return _Reversible.apply(x1, x2, layers, kwargs)


def apply_chunked(fn: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int, *, dim: int = 1) -> Tensor:
    """``fn`` over slices of ``chunk_size`` along ``dim``, concatenated (HF ``apply_chunking_to_forward``): the
    peak memory of a position-wise block falls from T to ``chunk_size`` positions; ``chunk_size <= 0`` = no split."""
    if chunk_size <= 0 or x.shape[dim] <= chunk_size:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(chunk_size, dim=dim)], dim=dim)


def fast_dropout(x: Tensor, p: float, *, training: bool = True) -> Tensor:
    """Inverted dropout whose mask comes from 16-bit slices of 64-bit random integers: one RNG draw per 4 elements.

    On CPU, ``F.dropout``'s ``bernoulli_`` (one generator call per element) is the largest single cost of a
    Reformer training step (~23% of HF's and ours at seq 2048, profiled) and a reversible step pays it twice;
    this mask is ~3.5x cheaper. The drop probability is quantised to 1/65536 (0.05 -> 3277/65536 = 0.050003)
    and the scale uses the quantised value, so E[output] = x exactly. Draws from the global RNG of x's device, so
    ``RNGState`` replays it.
    """
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    threshold = round(p * 65536)
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    bits = words.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
    return torch.where(bits >= threshold - 32768, x * (65536 / (65536 - threshold)), 0.0)


class FastDropout(nn.Module):
    """``nn.Dropout`` with ``fast_dropout``'s mask."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return fast_dropout(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
