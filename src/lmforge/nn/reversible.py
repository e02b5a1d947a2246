"""Reversible residual layers (activations recomputed in backward), Reformer's depth-independent memory saver.
Chunked application of position-wise blocks is ``nn.ffn.apply_chunked``; the cheap dropout mask is
``nn.dropout.fast_dropout``.

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
from torch import Tensor

__all__ = ["RNGState", "reversible_layers", "sequential_layers"]

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
