"""``PretrainArgs``: every option of ``lmforge pretrain``, named like Hugging Face ``TrainingArguments``.

The field names are HF's (``--per_device_train_batch_size``, ``--gradient_accumulation_steps``, ``--save_steps``,
...) so the FLASHQuad/``run_mlm_wwm.py`` command lines run with only the program name and data paths changed.
HF-only model/data flags map onto ours: ``--train_file`` is an alias of ``--train_dir`` (a raw text/jsonl file is
prepared first), ``--tokenizer_name`` of ``--tokenizer_dir``, ``--model_name_or_path`` names a registered
architecture or a local checkpoint to start from. HF flags that cannot mean anything here are rejected by
``check_argv`` with the reason (``UNSUPPORTED_HF_FLAGS``) instead of being silently ignored.

This module must not import torch (``lmforge pretrain --help`` stays fast).

Deviations from HF defaults: ``do_train``/``do_eval`` default to true (a pretraining command wants both; HF's
example scripts pass them explicitly), ``eval_steps`` unset means "evaluate once at the end" (HF's
``eval_strategy="no"`` + ``--do_eval``), and the output directory defaults to ``runs/pretrain``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["UNSUPPORTED_HF_FLAGS", "PretrainArgs", "ReportTo", "check_argv", "check_report_to"]

OptimizerName = Literal["adamw_torch", "adamw", "adamw_torch_fused", "lamb", "adafactor"]
SchedulerName = Literal["linear", "cosine", "constant", "constant_with_warmup", "piecewise"]
ReportTo = Literal["tensorboard", "wandb", "all", "none"]


def check_report_to(report_to: str) -> None:
    """``--report_to wandb`` without the wandb package is a one-line error before any work (W&B is optional)."""
    if report_to == "wandb" and importlib.util.find_spec("wandb") is None:
        raise ValueError("--report_to wandb needs Weights & Biases, which is not installed: pip install wandb")


# GAU-alpha's train.py (ZhuiyiTechnology/GAU-alpha): piecewise-linear lr multipliers, no warm-up.
GAU_ALPHA_MILESTONES: dict[int, float] = {0: 1.0, 160_000: 0.5, 640_000: 0.1, 1_280_000: 0.01}

# HF TrainingArguments / run_mlm*.py flags that we do not implement, and why (``check_argv`` reports them).
UNSUPPORTED_HF_FLAGS: dict[str, str] = {
    "dataset_name": "no `datasets` hub downloads; prepare local files with `lmforge prepare all` and pass --train_dir",
    "dataset_config_name": "no `datasets` hub downloads; prepare local files and pass --train_dir",
    "validation_ref_file": "whole-word boundaries are stored in the shards by `lmforge prepare`",
    "pad_to_max_length": "batches are padded by the collator; packing makes them full-length anyway",
    "config_overrides": "use --model_overrides '{\"hidden_size\": 256}' (JSON)",
    "model_type": "use --model (a registered architecture: `lmforge models`)",
    "cache_dir": "nothing is downloaded",
    "model_revision": "nothing is downloaded",
    "use_auth_token": "nothing is downloaded",
    "token": "nothing is downloaded",
    "push_to_hub": "no network; export with `lmforge export RUN --output_dir DIR` and upload it yourself",
    "hub_model_id": "no network; use `lmforge export`",
    "hub_strategy": "no network; use `lmforge export`",
    "hub_token": "no network; use `lmforge export`",
    "deepspeed": "not a dependency; use torchrun (DDP) or --fsdp full_shard",
    "sharded_ddp": "removed from HF too; use --fsdp full_shard",
    "fp16_opt_level": "apex is not used; --fp16 is native torch.autocast + GradScaler",
    "half_precision_backend": "only the native torch.amp backend exists",
    "evaluation_strategy": "set --eval_steps N to evaluate every N steps (unset: once at the end with --do_eval)",
    "eval_strategy": "set --eval_steps N to evaluate every N steps (unset: once at the end with --do_eval)",
    "save_strategy": "checkpoints are saved every --save_steps steps and at the end",
    "logging_strategy": "metrics are logged every --logging_steps steps",
    "load_best_model_at_end": "no best-model tracking; every checkpoint records its eval metrics in metrics.jsonl",
    "metric_for_best_model": "no best-model tracking",
    "label_smoothing_factor": "the task owns the loss; MLM/CLM use plain cross-entropy",
    "tpu_num_cores": "CPU and CUDA only",
    "use_ipex": "intel-extension-for-pytorch is not a dependency",
    "torchdynamo": "use --torch_compile",
    "max_train_samples": "use --max_steps to bound training",
}


@dataclass(kw_only=True)
class PretrainArgs:
    # ------------------------------------------------------------------ data
    train_dir: str | None = None
    """Training data: a `lmforge prepare all` output directory (tokenizer/ + shards/) or a shards directory."""
    train_file: str | None = None
    """HF alias of --train_dir; a raw .txt/.jsonl(.gz)/.zip file is first prepared into OUTPUT_DIR/data."""
    tokenizer_dir: str | None = None
    """Tokenizer directory (default: the tokenizer/ next to the shards). Must match the shards' fingerprint."""
    tokenizer_name: str | None = None
    """HF alias of --tokenizer_dir: a local lmforge or Hugging Face tokenizer directory (a hub id is an error)."""
    validation_split_percentage: float = 5.0
    """Held-out share (%) when --train_file is a raw file prepared here; prepared data keeps its own split."""
    preprocessing_num_workers: int | None = None
    """Worker processes for preparing a raw --train_file (ignored for prepared data)."""
    validation_file: str | None = None
    """With a raw --train_file: this file, read in full, is the held-out split (instead of a hashed share)."""
    train_ref_file: str | None = None
    """With a raw --train_file: HF run_chinese_ref.py whole-word refs, one JSON list per text line (replaces our
    segmenter for Chinese characters; the text is then read one document per line, in order)."""
    objective: Literal["mlm", "clm"] | None = None
    """mlm (whole-word masking) or clm. Default: the objective the shards were prepared for, else mlm."""
    max_seq_length: int = 512
    """Tokens per training sequence (including [CLS]/[SEP])."""
    line_by_line: bool = False
    """mlm: one document per sequence instead of documents packed into full sequences (HF run_mlm.py). Used when a
    raw --train_file is prepared here; prepared shards keep their layout (true on packed shards is an error)."""
    mlm_probability: float = 0.15
    """Share of words (wwm_mode=word) or tokens (wwm_mode=token) selected for prediction; 80/10/10 replacement."""
    wwm_mode: Literal["word", "token"] = "word"
    """word: whole-word masking over the segmenter's words; token: classic per-token BERT masking."""
    max_eval_samples: int | None = None
    """Evaluate on at most this many held-out sequences (default: the whole validation split)."""
    dataloader_num_workers: int = 0
    """Accepted for HF compatibility; batches are built in-process from memory-mapped shards (cheap)."""

    # ------------------------------------------------------------------ model
    model: str | None = None
    """Registered architecture (`lmforge models` lists them). Required unless --model_name_or_path or --config_name
    names the model; must agree with the architecture they hold."""
    model_preset: str | None = "small"
    """Preset of the architecture (tiny, small, base, ...)."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields to override, as JSON: '{"hidden_size": 128, "num_hidden_layers": 2}'."""
    model_name_or_path: str | None = None
    """Start from these weights (continued pretraining): a registered architecture name, a run, checkpoint, export,
    Hugging Face (bert, roformer, gpt2, llama, canine, reformer) or JunnYu directory, or a lucidrains FLASH file."""
    config_name: str | None = None
    """HF alias: train from scratch the architecture of a local HF/JunnYu config directory or a registered name."""

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
    run_name: str | None = None
    """Free-form name recorded in config.yaml and the model card."""
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
    """Epochs over the training shards, used when --max_steps is -1."""

    # ------------------------------------------------------------------ batch and optimizer
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
    lamb_bias_correction: bool = True
    """LAMB only: Adam bias correction of the moments (GAU-alpha's recipe uses false)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0: no clipping; the norm is still logged)."""

    # ------------------------------------------------------------------ schedule
    lr_scheduler_type: SchedulerName = "linear"
    """linear/cosine decay after warm-up, constant(_with_warmup), or piecewise (--lr_milestones)."""
    warmup_steps: int = 0
    """Linear warm-up steps (overrides --warmup_ratio when > 0)."""
    warmup_ratio: float = 0.0
    """Warm-up as a share of the total steps."""
    min_lr_ratio: float = 0.0
    """linear/cosine: the multiplier reached at the last step (0.1 = decay to 10% of the peak)."""
    lr_milestones: dict[int, float] = field(default_factory=lambda: dict(GAU_ALPHA_MILESTONES))
    """piecewise: {step: multiplier}, linearly interpolated, held after the last (default: GAU-alpha's)."""

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
    num_generation_samples: int = 2
    """CLM only: continuations sampled from held-out prompts at each evaluation."""
    generation_max_new_tokens: int = 32
    """CLM only: length of each sampled continuation."""

    # ------------------------------------------------------------------ numerics and devices
    seed: int = 42
    """Seed of model init, masking, shuffling and dropout (each rank adds its rank to the dropout seed)."""
    fp16: bool = False
    """float16 autocast + dynamic loss scaling (GradScaler). Works on CPU too, but is slow there."""
    bf16: bool = False
    """bfloat16 autocast (no loss scaling)."""
    tf32: bool | None = None
    """CUDA only: allow TF32 matmuls."""
    max_nonfinite_steps: int = 10
    """Stop after this many consecutive steps with a non-finite loss or gradient (each such step is skipped)."""
    full_determinism: bool = False
    """torch.use_deterministic_algorithms(True) (CPU runs are already deterministic for the ops we use)."""
    use_cpu: bool = False
    """Train on CPU even when CUDA is available."""
    threads: int | None = None
    """torch CPU threads (torch.set_num_threads) for the run; default: torch's (one per core). On a machine shared
    with other jobs, fewer threads than cores avoid OpenMP spin-waiting (lmforge demo uses 1)."""
    torch_compile: bool = False
    """Compile the model with torch.compile."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in backward instead of keeping them: less memory (deep models, long
    inputs), about one more forward per step; the same loss and gradients (every architecture)."""
    ddp_backend: Literal["gloo", "nccl"] | None = None
    """Process-group backend under torchrun (default: nccl on CUDA, gloo on CPU)."""
    ddp_find_unused_parameters: bool = False
    """DDP: tolerate parameters that get no gradient."""
    fsdp: Literal["", "full_shard", "full_shard auto_wrap"] = ""
    """full_shard: shard parameters, gradients and optimizer state (FSDP2 fully_shard per layer) under torchrun."""

    def __post_init__(self) -> None:
        positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
        for name in (*positive, "max_seq_length", "logging_steps", "save_steps", "max_nonfinite_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ValueError(f"--eval_steps must be >= 1, got {self.eval_steps}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ValueError(f"--save_total_limit must be >= 1, got {self.save_total_limit}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max_steps must be -1 or >= 1, got {self.max_steps}")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise ValueError(f"--num_train_epochs must be > 0 when --max_steps is -1, got {self.num_train_epochs}")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not 0.0 <= self.warmup_ratio < 1.0 or self.warmup_steps < 0:
            raise ValueError(
                f"warm-up must be >= 0 steps and a ratio in [0, 1), got {self.warmup_steps}, {self.warmup_ratio}"
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"--min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
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
        if not 0.0 <= self.validation_split_percentage < 100.0:
            raise ValueError(
                f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}"
            )
        if self.lr_scheduler_type == "piecewise" and (not self.lr_milestones or min(self.lr_milestones) < 0):
            raise ValueError(f"--lr_milestones needs steps >= 0, got {self.lr_milestones}")
        if self.train_dir is not None and self.train_file is not None and self.train_dir != self.train_file:
            raise ValueError(f"--train_dir {self.train_dir!r} and --train_file {self.train_file!r} disagree; pass one")
        for flag in ("validation_file", "train_ref_file"):
            if getattr(self, flag) is not None and self.train_file is None:
                raise ValueError(
                    f"--{flag} goes with a raw --train_file (prepared here); prepared data (--train_dir) already "
                    f"has its split and word boundaries: pass --{flag} to `lmforge prepare all` instead"
                )
        if self.num_generation_samples < 0 or self.generation_max_new_tokens < 1:
            raise ValueError("--num_generation_samples must be >= 0 and --generation_max_new_tokens >= 1")
        check_report_to(self.report_to)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _bool_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(PretrainArgs) if f.type in ("bool", "bool | None")}


_BOOL_WORDS = {"true", "false", "yes", "no", "1", "0"}


def check_argv(argv: list[str]) -> None:
    """Validate raw ``lmforge pretrain`` arguments before parsing; may raise ``ValueError``.

    1. A known-unsupported HF flag (``UNSUPPORTED_HF_FLAGS``) is an error that says why.
    2. Bare boolean flags as HF's ``HfArgumentParser`` accepts them (``--fp16 --do_train``) are normalised
       *in place* to ``--fp16 true``, because jsonargparse requires a value for booleans. The CLI parses the
       same list object afterwards, so the FLASHQuad/``run_mlm_wwm.py`` commands run unchanged.
    """
    booleans = _bool_fields()
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            if name in UNSUPPORTED_HF_FLAGS:
                raise ValueError(f"--{name} is not supported by lmforge pretrain: {UNSUPPORTED_HF_FLAGS[name]}")
            if name in booleans and "=" not in token:
                following = argv[i + 1] if i + 1 < len(argv) else None
                if following is None or following.lower() not in _BOOL_WORDS:
                    argv.insert(i + 1, "true")
                    i += 1
        i += 1
