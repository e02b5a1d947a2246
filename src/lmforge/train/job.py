"""The one job builder behind every training command: ``lmforge pretrain``, ``lmforge finetune`` (task heads) and SFT.

Each command resolves its own data and model; everything else comes from here, in this order:

1. ``training_session(args)``: CPU threads, the torchrun process group and this process's device; at the end the
   ranks leave together, the run lock is released and the group torn down.
2. ``open_run_dir``: create the run directory, take its lock, decide between resume and a fresh start
   (``prepare_output_dir``; the checkpoint to resume from, or None).
3. ``place_model``: load the checkpoint's weights (before wrapping: FSDP shards what it is given), gradient
   checkpointing, per-rank seeding, device, ``torch.compile``, DDP/FSDP.
4. ``build_training_job``: optimizer, learning-rate schedule, GradScaler and autocast, the checkpoint's optimizer,
   scaler, loader and counters, the metric logger, and the ``TrainingJob`` for ``train/loop.py``. It returns the
   checkpoint's RNG states too: the caller restores them last, right before the loop (nothing may draw after).

``write_run_record`` writes ``config.yaml`` and ``env.json`` the same way for every command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmforge.models.common import set_gradient_checkpointing
from lmforge.models.loading import load_weights
from lmforge.train.arguments import TrainingArguments
from lmforge.train.checkpoint import find_latest_checkpoint, list_checkpoints, load_training_state, verify_checkpoint
from lmforge.train.distributed import (
    DistInfo,
    barrier,
    destroy_distributed,
    init_distributed,
    load_optimizer_state,
    unwrap,
    wrap_model,
)
from lmforge.train.metrics import collect_env, run_logger, write_yaml
from lmforge.train.optim import build_optimizer, make_schedule, warmup_steps_for
from lmforge.train.run_lock import acquire_run_lock, release_run_lock
from lmforge.train.state import TrainingJob, TrainState
from lmforge.utils import seed_everything, torch_threads

__all__ = [
    "RUN_FILES",
    "amp_dtype",
    "build_training_job",
    "open_run_dir",
    "place_model",
    "prepare_output_dir",
    "restore_training_state",
    "training_session",
    "write_run_record",
]

RUN_FILES = ("config.yaml", "env.json", "metrics.jsonl", "loss.png", "all_results.json", "tensorboard")


@contextlib.contextmanager
def training_session(args: TrainingArguments) -> Iterator[DistInfo]:
    """``--threads`` CPU threads and the torchrun process group (if launched by torchrun) for the block. A block
    that ends normally waits for every rank (a rank that tore down gloo while rank 0 still wrote aborted, SIGABRT);
    in any case the run lock (taken by ``prepare_output_dir``; only this process's) is released at the end."""
    with torch_threads(args.threads):
        info = init_distributed(use_cpu=args.use_cpu, backend=args.ddp_backend)
        try:
            yield info
            barrier()
        finally:
            release_run_lock(args.output_dir)
            destroy_distributed()


def prepare_output_dir(
    args: TrainingArguments, run_dir: Path, info: DistInfo, *, run_files: tuple[str, ...] = RUN_FILES
) -> Path | None:
    """Decide between resume and a fresh start; returns the checkpoint to resume from (or None). ``run_files``:
    what a run writes besides checkpoints (deleted by a fresh start; ``tasks/finetune.py`` adds its reports)."""
    if info.is_main:  # one writer per run directory: a second one fails here, naming the first one's pid
        acquire_run_lock(run_dir)
    barrier()
    resume = None
    if args.resume_from_checkpoint == "auto":
        resume = find_latest_checkpoint(run_dir)  # skips (and reports) damaged ones: falls back to an older one
        if resume is None and list_checkpoints(run_dir) and not args.overwrite_output_dir:
            raise ValueError(
                f"--resume_from_checkpoint auto: no checkpoint in {str(run_dir)!r} is valid (reasons above); "
                "pass --overwrite_output_dir true to start over"
            )
        if resume is None and info.is_main:
            print(f"--resume_from_checkpoint auto: no checkpoint in {run_dir} to resume from, starting from scratch",
                  flush=True)  # fmt: skip
    elif args.resume_from_checkpoint is not None:
        resume = Path(args.resume_from_checkpoint)
        # a run directory: its newest valid checkpoint (verified by find_latest_checkpoint, not hashed again)
        latest = find_latest_checkpoint(resume) if resume.is_dir() and list_checkpoints(resume) else None
        if latest is not None:
            resume = latest
        elif (reason := verify_checkpoint(resume)) is not None:
            raise ValueError(f"cannot resume from {resume}: {reason}")
    used = any((run_dir / name).exists() for name in run_files) or bool(list_checkpoints(run_dir))
    if resume is None and used:
        # auto without any checkpoint (killed before the first save): a fresh start, as the flag promises
        if not args.overwrite_output_dir and args.resume_from_checkpoint != "auto":
            raise ValueError(
                f"output directory {str(run_dir)!r} already holds a run; pass --resume_from_checkpoint auto to "
                "continue it or --overwrite_output_dir true to start over"
            )
        if info.is_main:
            for child in run_dir.iterdir():
                if child.name in run_files or child.name.startswith(("checkpoint-", ".tmp-checkpoint-")):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
    barrier()
    return resume


def open_run_dir(
    args: TrainingArguments, info: DistInfo, *, run_files: tuple[str, ...] = RUN_FILES
) -> tuple[Path, Path | None]:
    """(run directory, checkpoint to resume from or None): ``--output_dir`` created by rank 0, then
    ``prepare_output_dir``."""
    run_dir = Path(args.output_dir)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    return run_dir, prepare_output_dir(args, run_dir, info, run_files=run_files)


def place_model(
    model: nn.Module, args: TrainingArguments, info: DistInfo, *, resume: Path | None, fsdp: bool = False,
    torch_compile: bool = False,
) -> nn.Module:  # fmt: skip
    """``model`` (built from ``--seed``, identical on every rank) with the checkpoint's weights, on the device,
    seeded per rank, compiled if asked and wrapped for DDP/FSDP."""
    if resume is not None:
        model.load_state_dict(load_weights(resume), strict=True)
    if args.gradient_checkpointing:
        set_gradient_checkpointing(model)
    seed_everything(args.seed, info.rank)
    model.to(info.device)
    if torch_compile:
        model = torch.compile(model)
    return wrap_model(model, info, fsdp=fsdp, find_unused_parameters=args.ddp_find_unused_parameters)


def amp_dtype(args: TrainingArguments) -> torch.dtype | None:
    """The autocast dtype of ``--bf16``/``--fp16``, or None (full precision)."""
    return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None


def build_training_job(
    args: TrainingArguments,
    info: DistInfo,
    model: nn.Module,
    train_batches: Any,
    *,
    resume: Path | None,
    run_dir: Path,
    objective: str,
    model_info: dict[str, Any],
    eval_batches: Any = None,
    optimizer_options: dict[str, Any] | None = None,
    schedule_options: dict[str, Any] | None = None,
    eval_every_epoch: bool = False,
    **job_fields: Any,
) -> tuple[TrainingJob, dict[str, Any] | None]:
    """The loop's ``TrainingJob`` over ``train_batches`` (a resumable loader: ``len`` = micro-batches per epoch),
    restored from ``resume``, and this rank's RNG states from it (restore them last) or None.

    ``optimizer_options`` go to ``build_optimizer`` (``lamb_bias_correction``, ``layerwise_lr_decay``),
    ``schedule_options`` to ``make_schedule`` (``min_lr_ratio``, ``milestones``); ``eval_every_epoch``: an unset
    ``--eval_steps`` means once per epoch (fine-tuning); ``job_fields`` are further ``TrainingJob`` fields."""
    max_steps = args.total_steps(len(train_batches))
    warmup = warmup_steps_for(max_steps, warmup_steps=args.warmup_steps, warmup_ratio=args.warmup_ratio)
    schedule = make_schedule(
        args.lr_scheduler_type, total_steps=max_steps, warmup_steps=warmup, **(schedule_options or {})
    )
    optimizer = build_optimizer(
        unwrap(model), name=args.optim, lr=args.learning_rate, weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon, **(optimizer_options or {}),
    )  # fmt: skip
    scaler = torch.amp.GradScaler(info.device.type, enabled=args.fp16)
    dtype = amp_dtype(args)
    autocast = functools.partial(torch.autocast, info.device.type, dtype=dtype) if dtype else contextlib.nullcontext
    state = TrainState()
    saved = None
    if resume is not None:
        saved = restore_training_state(resume, model, optimizer, scaler, train_batches, state, info)
    logger = run_logger(args, run_dir, resume_step=state.step if resume else None) if info.is_main else None
    if eval_every_epoch and args.eval_steps is None:
        args = dataclasses.replace(args, eval_steps=args.steps_per_epoch(len(train_batches)))
    job = TrainingJob(
        args=args, model=model, optimizer=optimizer, scaler=scaler, schedule=schedule, train_batches=train_batches,
        eval_batches=eval_batches, autocast=autocast, state=state, info=info, max_steps=max_steps,
        objective=objective, model_info=model_info, run_dir=run_dir, logger=logger, **job_fields,
    )  # fmt: skip
    return job, None if saved is None else saved["ranks"][info.rank]["rng"]


def restore_training_state(
    checkpoint: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loader: Any,
    state: TrainState,
    info: DistInfo,
) -> dict[str, Any]:
    """Load a checkpoint's optimizer, scaler, this rank's loader position and the counters (weights are loaded
    before wrapping, by ``place_model``). Returns the saved state: restore its ``["ranks"][rank]["rng"]`` last."""
    saved = load_training_state(checkpoint)
    if saved["world_size"] != info.world_size:
        raise ValueError(
            f"{checkpoint} was written by {saved['world_size']} processes, this run has {info.world_size}; "
            "exact resume needs the same number (use --model_name_or_path to start a new run from its weights)"
        )
    load_optimizer_state(model, optimizer, saved["optimizer"])
    scaler.load_state_dict(saved["scaler"])
    loader.load_state_dict(saved["ranks"][info.rank]["loader"])
    state.load_state_dict(saved["train"])
    if info.is_main:
        print(f"resuming from {checkpoint} at step {state.step}", flush=True)
    return saved


def write_run_record(run_dir: Path, config: dict[str, Any], info: DistInfo, **env_extra: Any) -> None:
    """Rank 0: the resolved arguments as ``config.yaml`` and the environment (+ ``env_extra``) as ``env.json``."""
    if not info.is_main:
        return
    write_yaml(run_dir / "config.yaml", config)
    env = collect_env(info.device, world_size=info.world_size) | env_extra
    (run_dir / "env.json").write_text(json.dumps(env, indent=2, ensure_ascii=False, default=str) + "\n")
