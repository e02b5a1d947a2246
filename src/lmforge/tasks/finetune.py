"""``lmforge finetune TASK --model RUN_OR_HF_DIR --data_dir DIR``: fine-tune any backbone on a CLUE task.

Tasks: the CLUE classification tasks and ``classification`` (``tasks/clue.py``), ``cmrc2018``/``squad``
(``tasks/qa.py``) and ``cluener`` (``tasks/ner.py``). ``--model`` is anything ``lmforge.models.loading`` resolves: a
pretraining run or checkpoint, an exported or any Hugging Face directory (BERT, RoFormer, GPT-2, LLaMA, CANINE,
Reformer; a fine-tuned ``*For*`` checkpoint gives its backbone), a JunnYu GAU-alpha/FLASH directory, or a registered
architecture name (random init, then ``--model_preset`` and ``--tokenizer_dir`` are needed; tests and baselines).
The tokenizer comes from the same place (``--tokenizer_dir`` overrides).

Training runs through the pretraining loop (``train/loop.py``: accumulation, mixed precision, clipping,
non-finite steps, logging, checkpoints with their manifest, DDP under torchrun) over a ``FeatureLoader``
(``tasks/common.py``), so ``--resume_from_checkpoint auto`` continues a killed run exactly (bitwise on CPU). The
job adds a dev evaluation and ``--metric_for_best_model``: a checkpoint is saved whenever the dev metric improves
(and every ``--save_steps``, and at the end); ``checkpoint-STEP/config.json`` has ``"task": "finetune-TASK"`` and a
``"head"`` entry, and ``load_task_model`` rebuilds the model from it. At the end the best checkpoint (HF
``load_best_model_at_end``) is reloaded, the others are deleted, and it makes the dev report and test predictions.

Run directory: ``config.yaml``, ``env.json``, ``metrics.jsonl``, ``tensorboard/``, ``loss.png``,
``checkpoint-STEP/`` (the best), ``dev_metrics.json`` (accuracy, per-class P/R/F1, confusion matrix),
``confusion_matrix.png``, ``{task}_predict.json`` (CLUE leaderboard format), ``report.json`` (counts
read/kept/dropped per split, the label set, the majority-class baseline, the best step).

Flag names are HF ``TrainingArguments``'/``run_glue.py``'s. Deviations: ``eval_steps`` unset means "evaluate at the
end of every epoch"; ``layerwise_lr_decay`` is not an HF flag (ELECTRA's fine-tuning recipe).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lmforge.tasks.registry import SFT_TASKS  # torch-free
from lmforge.train.arguments import TrainingArguments, normalise_bool_flags  # torch-free

if TYPE_CHECKING:  # torch stays unimported until a command runs (fast --help)
    from lmforge.train.distributed import DistInfo
    from lmforge.train.loop import TrainingJob

__all__ = [
    "FinetuneArgs",
    "check_argv",
    "finetune",
    "load_backbone",
    "load_finetuned",
    "load_source",
    "load_task_model",
    "run_settings",
    "saved_finetune_args",
    "train_keeping_best",
]


@dataclass
class FinetuneArgs(TrainingArguments):
    """``TrainingArguments`` plus the task, model and task-head options below; the fields re-declared here keep
    ``lmforge finetune``'s own defaults (HF ``run_glue.py``'s, not pretraining's)."""

    task: str
    """tnews, iflytek, afqmc, ocnli, cmnli, cluewsc2020, csl, classification (any jsonl), c3, chid, cmrc2018, squad,
    cluener, tydi or sft."""
    _: KW_ONLY  # the task is the one positional argument (``lmforge finetune TASK``, ``FinetuneArgs(task, ...)``)
    model: str | None = None
    """Pretraining run/checkpoint, exported or Hugging Face directory, JunnYu directory, or an architecture name."""
    data_dir: str | None = None
    """Directory with the task's train/dev/test JSON(-lines) files (and labels.json if any)."""
    tokenizer_dir: str | None = None
    """Tokenizer directory (default: the checkpoint's tokenizer/)."""
    model_preset: str = "tiny"
    """Preset when --model is an architecture name."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields to override, as JSON (e.g. '{"hidden_dropout_prob": 0.1}')."""

    # ------------------------------------------------------------------ TrainingArguments with other defaults
    output_dir: str = "runs/finetune"
    """Run directory."""
    max_seq_length: int = 128
    """Tokens per input (including [CLS]/[SEP]); longer inputs are truncated (QA: split into windows)."""
    per_device_train_batch_size: int = 32
    """Examples per device per micro-step."""
    per_device_eval_batch_size: int = 64
    """Examples per device per evaluation batch."""
    optim: Literal["adamw_torch", "adamw", "adafactor", "lamb"] = "adamw_torch"
    """adamw_torch/adamw (torch AdamW), lamb (You et al. 2019, ours) or adafactor (torch)."""
    learning_rate: float = 2e-5
    """Peak learning rate."""
    weight_decay: float = 0.01
    """Decoupled weight decay; never applied to biases, norm weights and other 1-D tensors."""
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    """linear/cosine decay after warm-up, or constant(_with_warmup)."""
    warmup_ratio: float = 0.1
    """Warm-up as a share of the total steps."""
    logging_steps: int = 50
    """Log the mean training metrics every N steps."""
    eval_steps: int | None = None
    """Evaluate on dev every N steps (unset: at the end of every epoch)."""
    save_steps: int = 500
    """Save a resumable checkpoint every N steps (also whenever the dev metric improves, and at the end)."""
    save_total_limit: int | None = 1
    """Keep the newest N checkpoints while training, besides the best one; at the end only the best is kept."""

    # ------------------------------------------------------------------ task inputs and head
    doc_stride: int = 64
    """QA: tokens between the starts of two windows over a long context (BERT run_squad's meaning)."""
    max_query_length: int = 64
    """QA: question tokens kept."""
    n_best_size: int = 20
    """QA: candidate starts/ends searched per window."""
    max_answer_length: int = 30
    """QA: longest answer in tokens."""
    pooling: Literal["auto", "cls", "mean", "last"] = "auto"
    """Sequence classification: auto = last token for causal backbones, the mean over real tokens otherwise (MLM
    pretraining never trains [CLS]: benchmarks/quality.md); cls = BERT's [CLS]."""
    classifier_dropout: float = 0.1
    """Dropout before the task head."""

    # ------------------------------------------------------------------ fine-tuning only
    do_predict: bool = True
    """Write the test-set prediction file when the data has a test split."""
    layerwise_lr_decay: float = 1.0
    """lr of layer i = lr * decay ** (L + 1 - depth); 1 = off (ELECTRA uses 0.8)."""
    metric_for_best_model: str | None = None
    """Dev metric that picks the kept checkpoint (default: accuracy; QA em; NER f1)."""
    greater_is_better: bool | None = None
    """Whether a larger --metric_for_best_model is better (default, as HF: True unless the name ends in "loss")."""
    max_train_samples: int | None = None
    """Train on the first N training features only."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("doc_stride", "n_best_size", "max_answer_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.layerwise_lr_decay <= 1.0:
            raise ValueError(f"--layerwise_lr_decay must be in (0, 1], got {self.layerwise_lr_decay}")
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"--classifier_dropout must be in [0, 1), got {self.classifier_dropout}")


# ----------------------------------------------------------------------------- model loading


def load_source(args: FinetuneArgs, *, task: str) -> Any:
    """The ``LoadedModel`` (tokenizer loaded) of ``--model`` for ``task`` ("backbone" under a new task head, "clm"
    for SFT), resolved by ``lmforge.models.loading``; an architecture name is a random init whose vocabulary comes
    from ``--tokenizer_dir`` (tests, baselines)."""
    from lmforge.data.tokenizer import load_tokenizer
    from lmforge.models.loading import load_model
    from lmforge.models.registry import list_models

    if args.model is None:
        raise ValueError("pass --model: a pretraining run, checkpoint, export, Hugging Face directory or architecture")
    tokenizer = None
    if args.model in list_models():  # random init: the tokenizer decides the vocabulary
        if args.tokenizer_dir is None:
            raise ValueError(f"--model {args.model!r} starts from random weights and needs --tokenizer_dir")
        tokenizer = load_tokenizer(args.tokenizer_dir)
    return load_model(args.model, task=task, preset=args.model_preset, overrides=args.model_overrides,
                      tokenizer=tokenizer, with_tokenizer=True, tokenizer_dir=args.tokenizer_dir)  # fmt: skip


def load_backbone(args: FinetuneArgs) -> tuple[str, Any, Any, Any, Path | None]:
    """(arch, config, backbone with pretrained weights, tokenizer, tokenizer directory) for ``--model``
    (``load_source``: any run, checkpoint, export, HF or JunnYu directory; the task head of a fine-tuned source is
    dropped). The tokenizer directory is None for CANINE sources without tokenizer files (codepoints)."""
    loaded = load_source(args, task="backbone")
    tokenizer_dir = Path(args.tokenizer_dir) if args.tokenizer_dir is not None else loaded.tokenizer_dir
    return loaded.arch, loaded.config, loaded.build(), loaded.tokenizer, tokenizer_dir


def load_finetuned(path: str | Path) -> Any:
    """The ``LoadedModel`` (tokenizer loaded) of a fine-tuning run or checkpoint (``ValueError`` for other sources)."""
    from lmforge.models.loading import load_model

    loaded = load_model(path, with_tokenizer=True)
    if loaded.head is None or not loaded.task.startswith("finetune-") or loaded.checkpoint is None:
        raise ValueError(f"{loaded.path or path} is not a fine-tuned checkpoint (task {loaded.task!r})")
    return loaded


def load_task_model(path: str | Path) -> tuple[Any, dict[str, Any], Path]:
    """(TaskModel in eval mode, config.json, checkpoint dir) of a fine-tuning run or checkpoint."""
    loaded = load_finetuned(path)
    return loaded.model, loaded.info, loaded.checkpoint


def run_settings(checkpoint: Path) -> dict[str, Any]:
    """The fine-tuning run's ``config.yaml`` (in or next to the checkpoint), or {} when absent."""
    import yaml

    for candidate in (checkpoint / "config.yaml", checkpoint.parent / "config.yaml"):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
    return {}


def saved_finetune_args(checkpoint: Path, task: str, **overrides: Any) -> FinetuneArgs:
    """The ``FinetuneArgs`` of ``task`` that the run of ``checkpoint`` was trained with (``run_settings``; keys that
    are not arguments, such as ``model_arch``, are left out), with ``overrides`` on top."""
    known = {f.name for f in dataclasses.fields(FinetuneArgs)} - {"task"}
    return FinetuneArgs(task, **({k: v for k, v in run_settings(checkpoint).items() if k in known} | overrides))


# ----------------------------------------------------------------------------- running


def finetune(args: FinetuneArgs) -> dict[str, Any]:
    """Train on train, keep the best checkpoint by dev metric, report dev metrics, predict test; returns the report
    (rank 0's is complete; under torchrun the other ranks train and return early)."""
    from lmforge.train.job import training_session

    with training_session(args) as info:
        if args.task in SFT_TASKS:  # trains the causal LM itself, not a task head: its own data (same job and loop)
            from lmforge.tasks.sft import finetune_sft

            return finetune_sft(args, info)
        return _finetune(args, info)


def _finetune(args: FinetuneArgs, info: DistInfo) -> dict[str, Any]:
    from lmforge.data.tokenizer import META_FILE
    from lmforge.heads.classification import TaskModel
    from lmforge.models.registry import config_to_dict
    from lmforge.tasks.common import predict_logits
    from lmforge.tasks.registry import build_task_bundle
    from lmforge.train.distributed import barrier, unwrap
    from lmforge.train.job import RUN_FILES, amp_dtype, open_run_dir, place_model, write_run_record
    from lmforge.train.metrics import plot_loss
    from lmforge.utils import seed_everything

    seed_everything(args.seed)  # backbone (random init) and head: identical on every rank and every restart
    arch, config, backbone, tokenizer, tokenizer_dir = load_backbone(args)
    splits = tuple(s for s, on in (("train", args.do_train), ("dev", args.do_eval), ("test", args.do_predict)) if on)
    bundle = build_task_bundle(args, arch=arch, config=config, backbone=backbone, tokenizer=tokenizer,
                               splits=splits or ("dev",))  # fmt: skip
    if args.max_train_samples is not None and "train" in bundle.features:
        bundle.features["train"] = bundle.features["train"][: args.max_train_samples]
    outputs = ("dev_metrics.json", "confusion_matrix.png", f"{args.task}_predict.json", "report.json")
    run_dir, resume = open_run_dir(args, info, run_files=(*RUN_FILES, *outputs))
    # CANINE from a directory without tokenizer files, or a Hugging Face directory (its weights beside the tokenizer
    # files): the run saves the tokenizer alone, and its checkpoints and exports copy that, not the model directory
    if tokenizer_dir is None or not (Path(tokenizer_dir) / META_FILE).is_file():
        tokenizer_dir = run_dir / "tokenizer"
        if info.is_main:
            shutil.rmtree(tokenizer_dir, ignore_errors=True)
            tokenizer.save(tokenizer_dir)
        barrier()
    model = place_model(TaskModel(backbone, bundle.head), args, info, resume=resume)
    model_info = {"model": arch, "task": f"finetune-{args.task}", "config": config_to_dict(config),
                  "head": bundle.head_config}  # fmt: skip
    metric_name = (args.metric_for_best_model or bundle.best_metric).removeprefix("eval_")  # HF takes both
    report: dict[str, Any] = {"task": args.task, "model": args.model, "arch": arch, **bundle.report}
    pad_id, logger = tokenizer.pad_token_id, None
    write_run_record(run_dir, {"task": args.task, **dataclasses.asdict(args), "model_arch": arch}, info)

    def score(split: str) -> tuple[dict[str, Any], Any]:  # on the bare model: every rank scores the split alike
        logits = predict_logits(unwrap(model), bundle.features[split], batch_size=args.per_device_eval_batch_size,
                                pad_id=pad_id, device=info.device, autocast_dtype=amp_dtype(args))  # fmt: skip
        return bundle.score(split, logits)

    def evaluate_dev(job: TrainingJob) -> dict[str, Any]:
        metrics = score("dev")[0]
        model.train()  # predict_logits left it in eval mode
        return {f"eval_{k}": v for k, v in metrics.items() if isinstance(v, int | float)}

    if args.do_train:
        kept, logger = train_keeping_best(
            args, info, model, bundle.features.get("train", []), pad_id=pad_id, resume=resume, run_dir=run_dir,
            objective=f"finetune {args.task}", model_info=model_info, tokenizer_dir=tokenizer_dir,
            evaluate=evaluate_dev if "dev" in bundle.features else None, metric_name=metric_name,
        )  # fmt: skip
        report |= kept
    if not info.is_main:
        return report

    if "dev" in bundle.features:
        metrics = score("dev")[0]
        (run_dir / "dev_metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
        if bundle.write_dev_extras is not None:
            bundle.write_dev_extras(metrics, run_dir)
        report["dev"] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    if "test" in bundle.features:
        report["predict_file"] = str(bundle.write_predictions(score("test")[1], run_dir))
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    if logger is not None:
        logger.close()
    plot_loss(run_dir)  # loss.png, as a pretraining run has
    _print_summary(report, file=sys.stdout)
    return report


def train_keeping_best(
    args: FinetuneArgs,
    info: DistInfo,
    model: Any,
    features: list[dict[str, Any]],
    *,
    pad_id: int,
    resume: Path | None,
    run_dir: Path,
    objective: str,
    model_info: dict[str, Any],
    tokenizer_dir: Path | None,
    evaluate: Callable[[TrainingJob], dict[str, Any]] | None,
    metric_name: str,
) -> tuple[dict[str, Any], Any]:
    """The fine-tuning run of a task head or of SFT: train ``model`` (placed by ``place_model``) on ``features``
    through ``train/job.py``'s job and the loop, ``evaluate(job)`` (``eval_``-prefixed metrics) at every evaluation
    saving a checkpoint when ``eval_{metric_name}`` improves; then keep only the best checkpoint and load it into
    ``model``. Returns the report's entries and the metric logger (rank 0; None elsewhere) for the caller to close."""
    from lmforge.tasks.common import FeatureLoader
    from lmforge.train.job import build_training_job
    from lmforge.train.loop import train  # here, not at the top: tests patch lmforge.train.loop.train
    from lmforge.train.rng import restore_rng_state

    if not features:
        raise ValueError(f"{args.data_dir}: the train split has no examples")
    loader = FeatureLoader(features, batch_size=args.per_device_train_batch_size, pad_id=pad_id, seed=args.seed,
                           rank=info.rank, world_size=info.world_size)  # fmt: skip
    job, rng_state = build_training_job(
        args, info, model, loader, resume=resume, run_dir=run_dir, objective=objective, model_info=model_info,
        tokenizer_dir=tokenizer_dir, optimizer_options={"layerwise_lr_decay": args.layerwise_lr_decay},
        eval_every_epoch=True,
    )  # fmt: skip
    if evaluate is not None:
        job.evaluate, job.metric_for_best_model = functools.partial(evaluate, job), f"eval_{metric_name}"
        higher = args.greater_is_better
        job.greater_is_better = not metric_name.endswith("loss") if higher is None else higher
    if rng_state is not None:
        restore_rng_state(rng_state)  # last: nothing may draw random numbers after this
    train(job)
    kept = keep_best_checkpoint(job, run_dir, model, info) | {"metric_for_best_model": metric_name}
    return kept, job.logger


def keep_best_checkpoint(job: Any, run_dir: Path, model: Any, info: Any) -> dict[str, int]:
    """After training: delete every checkpoint but the best by the dev metric (the last one without a dev split),
    load its weights into ``model``; returns the report's ``steps``, ``best_step`` and ``nonfinite_steps``."""
    from lmforge.train.checkpoint import list_checkpoints, load_weights
    from lmforge.train.distributed import barrier, unwrap

    keep = int(job.state.best["step"]) if job.state.best else job.state.step
    if info.is_main:
        for step, path in list_checkpoints(run_dir):
            if step != keep:
                shutil.rmtree(path)
    barrier()
    unwrap(model).load_state_dict(load_weights(run_dir / f"checkpoint-{keep}"), strict=True)
    return {"steps": job.state.step, "best_step": keep, "nonfinite_steps": job.state.nonfinite_steps}


def _print_summary(report: dict[str, Any], *, file: Any) -> None:
    dev = report.get("dev", {})
    shown = {k: v for k, v in dev.items() if k in ("accuracy", "majority_baseline_accuracy", "macro_f1", "em", "f1")}
    line = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
    print(f"finetune {report['task']}: dev {line or '-'}", file=file)
    for split, counts in report.get("counts", {}).items():
        dropped = ", ".join(f"{n} with {why}" for why, n in counts.get("dropped", {}).items()) or "none"
        unknown = counts.get("unknown_token_share", 0.0)
        note = ""
        if unknown > 0.05:
            note = f"; {100 * unknown:.1f}% of tokens are [UNK]: is this the pretraining tokenizer?"
        line = f"  {split}: {counts['examples']} examples from {counts['lines']} lines, dropped {dropped}{note}"
        print(line, file=file)
    if "predict_file" in report:
        print(f"  test predictions: {report['predict_file']}", file=file)


def check_argv(argv: list[str]) -> None:
    """Accept HF-style bare boolean flags (``--do_predict``) by inserting ``true`` in place, as pretraining does."""
    normalise_bool_flags(argv, FinetuneArgs)
