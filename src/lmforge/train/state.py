"""What the training loop works on: ``TrainingJob`` (everything ``train`` needs, built by
``lmforge.train.job.build_training_job``) and ``TrainState`` (the counters a checkpoint restores, including the
logging window), with the loop's two exceptions. ``train/loop.py`` re-exports every name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lmforge.eval.probe import ClozeItem
from lmforge.train.arguments import TrainingArguments
from lmforge.train.distributed import DistInfo
from lmforge.train.metrics import MetricLogger

__all__ = [
    "LM_OBJECTIVES",
    "MODEL_INPUTS",
    "NonFiniteLossError",
    "TrainState",
    "TrainingInterrupted",
    "TrainingJob",
    "empty_window",
]

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels", "start_positions", "end_positions")
LM_OBJECTIVES = ("mlm", "clm")


def empty_window(elapsed_s: float) -> dict[str, float]:
    # steps: finite-loss steps (the loss mean); all_steps: every step (the means of model-reported extras);
    # skipped: steps not applied (non-finite loss or gradient), logged with the last one's reason, never as a loss
    return {
        "loss": 0.0,
        "steps": 0,
        "all_steps": 0,
        "skipped": 0,
        "correct": 0.0,
        "n": 0.0,
        "tokens": 0.0,
        "samples": 0,
        "elapsed_at_start": elapsed_s,
    }


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``train``: carries the step reached and the newest valid checkpoint (None if none), so the CLI
    can say where the run stands and how to resume it in one line (exit status 130)."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(f"interrupted at step {step}")
        self.step, self.checkpoint = step, checkpoint


class NonFiniteLossError(ValueError):
    """Too many consecutive non-finite steps. A ``ValueError`` so the CLI prints it as one line: the fix is a
    setting (learning rate, --bf16 instead of --fp16, --max_grad_norm)."""


@dataclass
class TrainState:
    """Counters that a checkpoint restores (besides weights, optimizer, loader and RNG)."""

    step: int = 0
    tokens: int = 0  # non-padding input tokens consumed, all ranks
    elapsed_s: float = 0.0  # wall time spent in train(), summed over restarts
    nonfinite_steps: int = 0  # skipped steps, all causes (overflow_steps included)
    nonfinite_in_a_row: int = 0
    overflow_steps: int = 0  # fp16: finite loss, gradients overflowed at the current loss scale (scale backed off)
    # Sums since the last log line: part of the state so a resumed run logs the same means.
    window: dict[str, float] = field(default_factory=lambda: empty_window(0.0))
    last_eval: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)  # {"step", "value"} of job.metric_for_best_model
    loss_mean: float | None = None  # running mean of finite, non-spiking step losses (LOSS_MEAN_DECAY)
    troubled_since_save: str = ""  # why the next checkpoint is not healthy ("" = nothing went wrong yet)
    healthy_step: int | None = None  # step of the newest healthy checkpoint

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


@dataclass
class TrainingJob:
    """Everything ``train`` needs, built by ``lmforge.train.job.build_training_job`` (for every command)."""

    args: TrainingArguments  # PretrainArgs or FinetuneArgs; CLM samples read PretrainArgs' generation_*
    model: nn.Module  # possibly wrapped: DDP, FSDP2 (in place) or torch.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: Callable[[int], float]  # step -> multiplier of args.learning_rate
    train_batches: Iterator[dict[str, Tensor]]  # infinite, with state_dict()/load_state_dict()
    eval_batches: Callable[[], Iterable[dict[str, Tensor]]] | None  # a fresh pass over the held-out split
    autocast: Callable[[], AbstractContextManager]
    state: TrainState
    info: DistInfo
    max_steps: int
    objective: str  # "mlm" | "clm" | "finetune TASK" (no LM accuracy/perplexity, no sampling)
    model_info: dict[str, Any]  # config.json of checkpoints: {"model", "task", "config"}
    run_dir: Path
    tokenizer_dir: Path | None = None
    logger: MetricLogger | None = None  # rank 0 only
    sample_prompts: list[list[int]] = field(default_factory=list)  # CLM: prompts for sampled continuations
    decode: Callable[..., str] | None = None  # tokenizer.decode (takes skip_special_tokens)
    eos_token_id: int | None = None
    tokenizer: Any = None  # MLM: scores the cloze probe at every evaluation (None: no probe)
    probe_items: list[ClozeItem] | None = None  # None: the bundled set
    evaluate: Callable[[], dict[str, Any]] | None = None  # replaces eval_batches: eval_-prefixed metrics
    metric_for_best_model: str | None = None  # a key of the evaluation: save when it improves
    greater_is_better: bool = True  # direction of metric_for_best_model (HF TrainingArguments' name)
