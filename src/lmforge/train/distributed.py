"""Process groups, DDP/FSDP wrapping and the few collectives the training loop needs.

Launch: ``torchrun --nproc_per_node N -m lmforge pretrain ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
without them everything here is a no-op on one process. Backend: nccl on CUDA, gloo on CPU (``--ddp_backend``).

- DDP (``torch.nn.parallel.DistributedDataParallel``): gradients are all-reduced only on the last micro-step of
  an accumulation window. ``set_gradient_sync`` flips ``require_backward_grad_sync`` *before* the forward, as
  nanoGPT does: DDP reads it in ``forward`` to prepare the reducer, so setting it between forward and backward
  syncs wrongly (karpathy/build-nanogpt PR #30).
- FSDP (``--fsdp full_shard``): FSDP2 ``torch.distributed.fsdp.fully_shard`` on every child module that holds a
  layer stack entry (``model.backbone.layers[i]`` or any ``nn.ModuleList`` item), then on the root; parameters,
  gradients and optimizer state are sharded. Works on CPU with gloo (tested) and CUDA with nccl. Gradient sync
  across micro-steps is toggled with ``set_requires_gradient_sync``. Checkpoints gather full (unsharded) state
  dicts through ``torch.distributed.checkpoint.state_dict``, so an FSDP checkpoint loads anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "destroy_distributed",
    "gather_objects",
    "init_distributed",
    "set_gradient_sync",
    "unwrap",
    "wrap_model",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(*, use_cpu: bool = False, backend: str | None = None) -> DistInfo:
    """Join the torchrun process group if launched by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not use_cpu
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"), device_id=device if cuda else None)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _layer_modules(model: nn.Module) -> list[nn.Module]:
    """The entries of every ``nn.ModuleList`` (transformer layers): FSDP's unit of sharding."""
    return [m for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst]


def wrap_model(
    model: nn.Module, info: DistInfo, *, fsdp: bool = False, find_unused_parameters: bool = False
) -> nn.Module:
    """DDP or FSDP2 when running distributed; the model itself otherwise."""
    if fsdp:
        if not info.enabled:
            raise ValueError("--fsdp full_shard needs several processes: launch with torchrun --nproc_per_node N")
        from torch.distributed.fsdp import fully_shard

        for layer in _layer_modules(model):
            fully_shard(layer)
        fully_shard(model)
        return model
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under a DDP wrapper or ``torch.compile`` (FSDP2 shards in place, nothing to unwrap)."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """Call before the forward of each micro-step: sync gradients only on the last one."""
    if hasattr(model, "require_backward_grad_sync"):  # DDP
        model.require_backward_grad_sync = enabled
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(enabled)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place); identity on one process."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: Any, info: DistInfo) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (``None`` elsewhere); ``[obj]`` on one process."""
    if not info.enabled:
        return [obj]
    out: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# ----------------------------------------------------------------------------- state dicts for checkpoints
# Optimizer state is stored keyed by parameter *name* (the format of torch.distributed.checkpoint's full state
# dicts), so a checkpoint written by one process, DDP or FSDP loads into any of the three.


def _is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def model_state_for_save(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU weights; a collective under FSDP (every rank must call it, rank 0 gets the data)."""
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def optimizer_state_for_save(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Optimizer state keyed by parameter name; a collective under FSDP."""
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    names = {id(p): n for n, p in unwrap(model).named_parameters()}
    ordered = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    raw = optimizer.state_dict()
    groups = []
    for group in raw["param_groups"]:
        groups.append({**group, "params": [ordered[i] for i in group["params"]]})
    return {"state": {ordered[i]: s for i, s in raw["state"].items()}, "param_groups": groups}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Inverse of ``optimizer_state_for_save`` (every rank passes the full state)."""
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    names = {id(p): n for n, p in unwrap(model).named_parameters()}
    ordered = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    index = {name: i for i, name in enumerate(ordered)}
    saved = [name for group in state["param_groups"] for name in group["params"]]
    if saved != ordered:
        raise ValueError("the checkpoint's optimizer was built over different parameters than this model's")
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]
    optimizer.load_state_dict({"state": {index[n]: s for n, s in state["state"].items()}, "param_groups": groups})
