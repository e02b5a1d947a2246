"""``TrainingArguments``: the options every training command shares, named like Hugging Face ``TrainingArguments``.

``PretrainArgs`` (``train/config.py``) and ``FinetuneArgs`` (``tasks/finetune.py``, also the SFT job's arguments)
extend it with their own fields (litgpt's shared ``TrainArgs``); the loop (``train/loop.py``) and the job builder
(``train/job.py``) read only these. Defaults are HF's (and ``lmforge pretrain``'s); a command whose default differs
re-declares the field with its own default (a re-declared field keeps its place, so ``--help`` order is stable).

Steps: ``--max_steps`` if set, else ``ceil(num_train_epochs * steps_per_epoch)`` with ``steps_per_epoch =
max(1, batches // gradient_accumulation_steps)`` (HF ``Trainer``'s ``len_dataloader // gradient_accumulation_steps``):
a partial accumulation window at the end of an epoch is not counted as a step. The loaders run on across epochs,
so those micro-batches still feed the next step. ``lmforge finetune`` rounded up before; it now counts as pretrain.

This module must not import torch (``lmforge pretrain --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "OptimizerName",
    "ReportTo",
    "SchedulerName",
    "TrainingArguments",
    "check_report_to",
    "normalise_bool_flags",
]

OptimizerName = Literal["adamw_torch", "adamw", "adamw_torch_fused", "lamb", "adafactor"]
SchedulerName = Literal["linear", "cosine", "constant", "constant_with_warmup", "piecewise"]
ReportTo = Literal["tensorboard", "wandb", "all", "none"]

_BOOL_WORDS = {"true", "false", "yes", "no", "1", "0"}


def check_report_to(report_to: str) -> None:
    """``--report_to wandb`` without the wandb package is a one-line error before any work (W&B is optional)."""
    if report_to == "wandb" and importlib.util.find_spec("wandb") is None:
        raise ValueError("--report_to wandb needs Weights & Biases, which is not installed: pip install wandb")


@dataclass(kw_only=True)
class TrainingArguments:
    # ------------------------------------------------------------------ run directory
    output_dir: str = "runs/pretrain"
    """Run directory: config.yaml, env.json, metrics.jsonl, TensorBoard events, loss.png, checkpoint-STEP/."""
    overwrite_output_dir: bool = False
    """Allow starting a new run in a non-empty output directory (its old checkpoints are deleted)."""
    logging_dir: str | None = None
    """TensorBoard directory (default OUTPUT_DIR/tensorboard)."""
    report_to: ReportTo = "tensorboard"
    """Where metrics go besides metrics.jsonl: tensorboard, wandb (Weights & Biases: pip install wandb; WANDB_PROJECT,
    WANDB_MODE=offline apply), all (TensorBoard, and W&B when installed) or none."""
    disable_tqdm: bool = False
    """Disable the console progress bar."""

    # ------------------------------------------------------------------ what to run
    do_train: bool = True
    """Train (false: only evaluate the initial or resumed model)."""
    do_eval: bool = True
    """Evaluate on the held-out split at the end (and every --eval_steps)."""
    max_steps: int = -1
    """Optimizer steps to run; -1: derive from --num_train_epochs and the training set size."""
    num_train_epochs: float = 3.0
    """Epochs over the training data, used when --max_steps is -1."""

    # ------------------------------------------------------------------ batch and optimizer
    max_seq_length: int = 512
    """Tokens per training sequence (including [CLS]/[SEP])."""
    per_device_train_batch_size: int = 8
    """Sequences per device per micro-step."""
    per_device_eval_batch_size: int = 8
    """Sequences per device per evaluation batch."""
    gradient_accumulation_steps: int = 1
    """Micro-steps per optimizer step; the global batch is batch * accumulation * world size."""
    optim: OptimizerName = "adamw_torch"
    """adamw_torch/adamw/adamw_torch_fused (torch AdamW), lamb (You et al. 2019, ours) or adafactor (torch)."""
    learning_rate: float = 5e-5
    """Peak learning rate."""
    weight_decay: float = 0.0
    """Decoupled weight decay; never applied to biases, norm weights and other 1-D tensors."""
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0: no clipping; the norm is still logged)."""

    # ------------------------------------------------------------------ schedule
    lr_scheduler_type: SchedulerName = "linear"
    """linear/cosine decay after warm-up, constant(_with_warmup), or piecewise (--lr_milestones)."""
    warmup_steps: int = 0
    """Linear warm-up steps (overrides --warmup_ratio when > 0)."""
    warmup_ratio: float = 0.0
    """Warm-up as a share of the total steps."""

    # ------------------------------------------------------------------ logging, evaluation, checkpoints
    logging_steps: int = 500
    """Log the mean training metrics every N steps."""
    logging_first_step: bool = False
    """Also log after the first step."""
    eval_steps: int | None = None
    """Evaluate every N steps (unset: once at the end when --do_eval)."""
    save_steps: int = 500
    """Save a checkpoint every N steps (and always at the end)."""
    save_total_limit: int | None = None
    """Keep only the newest N checkpoints."""
    resume_from_checkpoint: str | None = None
    """A checkpoint directory, or "auto": the newest valid checkpoint in --output_dir (a fresh start if none)."""

    # ------------------------------------------------------------------ numerics and devices
    seed: int = 42
    """Seed of model init, masking, shuffling and dropout (each rank adds its rank to the dropout seed)."""
    fp16: bool = False
    """float16 autocast + dynamic loss scaling (GradScaler). Works on CPU too, but is slow there."""
    bf16: bool = False
    """bfloat16 autocast (no loss scaling)."""
    max_nonfinite_steps: int = 10
    """Stop after this many consecutive steps with a non-finite loss or gradient (each such step is skipped)."""
    use_cpu: bool = False
    """Train on CPU even when CUDA is available."""
    threads: int | None = None
    """torch CPU threads (torch.set_num_threads) for the run; default: torch's (one per core). On a machine shared
    with other jobs, fewer threads than cores avoid OpenMP spin-waiting (lmforge demo uses 1)."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in backward instead of keeping them: less memory (deep models, long
    inputs), about one more forward per step; the same loss and gradients (every architecture)."""
    ddp_backend: Literal["gloo", "nccl"] | None = None
    """Process-group backend under torchrun (default: nccl on CUDA, gloo on CPU)."""
    ddp_find_unused_parameters: bool = False
    """DDP: tolerate parameters that get no gradient."""

    def __post_init__(self) -> None:
        positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
        for name in (*positive, "max_seq_length", "logging_steps", "save_steps", "max_nonfinite_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("threads", "eval_steps", "save_total_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max_steps must be -1 or >= 1, got {self.max_steps}")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise ValueError(f"--num_train_epochs must be > 0 when --max_steps is -1, got {self.num_train_epochs}")
        if not 0.0 <= self.warmup_ratio < 1.0 or self.warmup_steps < 0:
            raise ValueError(
                f"warm-up must be >= 0 steps and a ratio in [0, 1), got {self.warmup_steps}, {self.warmup_ratio}"
            )
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.adam_epsilon <= 0:
            raise ValueError(
                f"need learning_rate > 0, weight_decay >= 0, adam_epsilon > 0; got {self.learning_rate}, "
                f"{self.weight_decay}, {self.adam_epsilon}"
            )
        if not (0.0 <= self.adam_beta1 < 1.0 and 0.0 <= self.adam_beta2 < 1.0):
            raise ValueError(f"Adam betas must be in [0, 1), got {self.adam_beta1}, {self.adam_beta2}")
        if self.max_grad_norm < 0:
            raise ValueError(f"--max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.fp16 and self.bf16:
            raise ValueError("--fp16 and --bf16 are exclusive")
        check_report_to(self.report_to)

    def steps_per_epoch(self, batches_per_epoch: int) -> int:
        """Optimizer steps in one epoch of ``batches_per_epoch`` micro-batches (this rank's); at least 1."""
        return max(1, batches_per_epoch // self.gradient_accumulation_steps)

    def total_steps(self, batches_per_epoch: int) -> int:
        """``--max_steps``, or ``ceil(num_train_epochs * steps_per_epoch)`` when it is -1."""
        if self.max_steps > 0:
            return self.max_steps
        return math.ceil(self.num_train_epochs * self.steps_per_epoch(batches_per_epoch))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def normalise_bool_flags(argv: list[str], args_class: type) -> None:
    """Bare boolean flags as HF's ``HfArgumentParser`` accepts them (``--fp16 --do_train``) become ``--fp16 true``
    *in place*, because jsonargparse requires a value for booleans; the CLI parses the same list afterwards."""
    booleans = {f.name for f in dataclasses.fields(args_class) if f.type in ("bool", "bool | None")}
    i = 0
    while i < len(argv):
        token = argv[i]
        name = token[2:].split("=", 1)[0].replace("-", "_") if token.startswith("--") else None
        if name in booleans and "=" not in token:
            following = argv[i + 1] if i + 1 < len(argv) else None
            if following is None or following.lower() not in _BOOL_WORDS:
                argv.insert(i + 1, "true")
                i += 1
        i += 1
