"""``PretrainArgs``: every option of ``lmforge pretrain``, named like Hugging Face ``TrainingArguments``.

The options every training command shares (run directory, steps, batch, optimizer, schedule, logging, numerics,
devices) are ``train/arguments.py``'s ``TrainingArguments``, which ``PretrainArgs`` extends with the data, model
and pretraining-only options.

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

from dataclasses import dataclass, field
from typing import Any, Literal

from lmforge.train.arguments import ReportTo, TrainingArguments, check_report_to, normalise_bool_flags

# ReportTo and check_report_to live in train/arguments.py; they stay importable from here.
__all__ = ["UNSUPPORTED_HF_FLAGS", "PretrainArgs", "ReportTo", "check_argv", "check_report_to"]

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
class PretrainArgs(TrainingArguments):
    """``TrainingArguments`` (run directory, steps, batch, optimizer, schedule, logging, numerics) plus the data,
    model and pretraining-only options below."""

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

    # ------------------------------------------------------------------ pretraining only
    run_name: str | None = None
    """Free-form name recorded in config.yaml and the model card."""
    lamb_bias_correction: bool = True
    """LAMB only: Adam bias correction of the moments (GAU-alpha's recipe uses false)."""
    min_lr_ratio: float = 0.0
    """linear/cosine: the multiplier reached at the last step (0.1 = decay to 10% of the peak)."""
    lr_milestones: dict[int, float] = field(default_factory=lambda: dict(GAU_ALPHA_MILESTONES))
    """piecewise: {step: multiplier}, linearly interpolated, held after the last (default: GAU-alpha's)."""
    num_generation_samples: int = 2
    """CLM only: continuations sampled from held-out prompts at each evaluation."""
    generation_max_new_tokens: int = 32
    """CLM only: length of each sampled continuation."""
    tf32: bool | None = None
    """CUDA only: allow TF32 matmuls."""
    full_determinism: bool = False
    """torch.use_deterministic_algorithms(True) (CPU runs are already deterministic for the ops we use)."""
    torch_compile: bool = False
    """Compile the model with torch.compile."""
    fsdp: Literal["", "full_shard", "full_shard auto_wrap"] = ""
    """full_shard: shard parameters, gradients and optimizer state (FSDP2 fully_shard per layer) under torchrun."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"--min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
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


def check_argv(argv: list[str]) -> None:
    """Validate raw ``lmforge pretrain`` arguments before parsing; may raise ``ValueError``.

    1. A known-unsupported HF flag (``UNSUPPORTED_HF_FLAGS``) is an error that says why.
    2. Bare boolean flags as HF's ``HfArgumentParser`` accepts them (``--fp16 --do_train``) are normalised
       *in place* to ``--fp16 true``, because jsonargparse requires a value for booleans. The CLI parses the
       same list object afterwards, so the FLASHQuad/``run_mlm_wwm.py`` commands run unchanged.
    """
    for token in argv:
        name = token[2:].split("=", 1)[0].replace("-", "_") if token.startswith("--") else None
        if name in UNSUPPORTED_HF_FLAGS:
            raise ValueError(f"--{name} is not supported by lmforge pretrain: {UNSUPPORTED_HF_FLAGS[name]}")
    normalise_bool_flags(argv, PretrainArgs)
