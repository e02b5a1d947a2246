"""``lmforge evaluate clue --model FINETUNED_RUN --data_dir DIR [--split dev|test]``: metrics or predictions of a
fine-tuned model (``lmforge finetune``) on a CLUE split, without training code paths.

The task, tokenizer and preprocessing settings (``max_seq_length``, doc stride, pooling, ...) come from the run's
``config.yaml`` and checkpoint, so the examples are encoded exactly as during fine-tuning; ``--max_seq_length``
overrides. The label set of the data must be the one the head was trained with (a mismatch is an error naming both).
``--split dev`` prints the metrics and writes ``eval_dev_metrics.json`` (never fine-tuning's ``dev_metrics.json``;
the majority baseline uses the run's majority training label from ``report.json``, as fine-tuning did);
``--split test`` writes ``{task}_predict.json`` in the CLUE leaderboard format to ``--output_dir`` (default: the
run directory).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

__all__ = ["ClueEvalArgs", "evaluate_clue", "run_settings"]


@dataclass(kw_only=True)
class ClueEvalArgs:
    model: str | None = None
    """A fine-tuning run directory or one of its checkpoints (resolved by ``lmforge.models.loading``)."""
    data_dir: str | None = None
    """Directory with the task's dev/test files (default: the --data_dir of the fine-tuning run)."""
    split: Literal["dev", "test"] = "dev"
    """dev: metrics; test: the leaderboard prediction file."""
    task: str | None = None
    """Task name (default: the fine-tuned checkpoint's)."""
    output_dir: str | None = None
    """Where eval_{split}_metrics.json / {task}_predict.json go (default: the run directory)."""
    max_seq_length: int | None = None
    """Override the fine-tuning run's --max_seq_length."""
    per_device_eval_batch_size: int = 64
    """Sequences per forward pass."""
    use_cpu: bool = False
    """Evaluate on CPU even when CUDA is available."""


def run_settings(checkpoint: Path) -> dict[str, Any]:
    """The fine-tuning run's ``config.yaml`` (next to the checkpoint), or {} when absent."""
    import yaml

    for candidate in (checkpoint / "config.yaml", checkpoint.parent / "config.yaml"):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
    return {}


def evaluate_clue(args: ClueEvalArgs) -> dict[str, Any]:
    import torch

    from lmforge.tasks.finetune import FinetuneArgs, _build_bundle, load_finetuned, predict_logits
    from lmforge.utils import get_device

    if args.model is None:
        raise ValueError("pass --model: a fine-tuning run directory or checkpoint")
    loaded = load_finetuned(args.model)
    model, info, checkpoint = loaded.model, loaded.info, loaded.checkpoint
    task = args.task or info["task"].removeprefix("finetune-")
    known = {f.name for f in fields(FinetuneArgs)}
    settings = {k: v for k, v in run_settings(checkpoint).items() if k in known and k != "task"}
    settings |= {"do_train": False, "do_eval": args.split == "dev", "do_predict": args.split == "test"}
    if args.data_dir is not None:
        settings["data_dir"] = args.data_dir
    if args.max_seq_length is not None:
        settings["max_seq_length"] = args.max_seq_length
    if "pooling" in info["head"]:
        settings["pooling"] = info["head"]["pooling"]
    finetune_args = FinetuneArgs(task, **settings)
    tokenizer = loaded.tokenizer
    config = model.backbone.config
    trained_labels = info["head"].get("labels") if info["head"]["kind"] == "sequence_classification" else None
    run_report = checkpoint.parent / "report.json"  # the training run's majority label (its train label counts)
    majority = json.loads(run_report.read_text()).get("majority_label") if run_report.is_file() else None
    bundle = _build_bundle(finetune_args, info["model"], config, model.backbone, tokenizer, (args.split,),
                           labels=trained_labels, majority_label=majority if trained_labels else None)  # fmt: skip
    if bundle.head_config.get("labels") != info["head"].get("labels"):
        raise ValueError(
            f"the labels of {finetune_args.data_dir} {bundle.head_config.get('labels')} differ from those "
            f"{checkpoint} was trained with {info['head'].get('labels')}"
        )
    if args.split not in bundle.features:
        raise ValueError(f"{finetune_args.data_dir} has no {args.split} split")
    device = torch.device("cpu") if args.use_cpu else get_device()
    model.to(device)
    logits = predict_logits(model, bundle.features[args.split], batch_size=args.per_device_eval_batch_size,
                            pad_id=tokenizer.pad_token_id, device=device)  # fmt: skip
    metrics, predictions = bundle.score(args.split, logits)
    out = Path(args.output_dir) if args.output_dir is not None else checkpoint.parent
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"task": task, "split": args.split, "checkpoint": str(checkpoint)}
    if args.split == "test":
        result["predict_file"] = str(bundle.write_predictions(predictions, out))
        print(f"{task} test predictions ({len(logits)} inputs): {result['predict_file']}")
        return result
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    (out / f"eval_{args.split}_metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    print(f"{task} {args.split} ({checkpoint}):")
    for key, value in scalars.items():
        print(f"  {key:28s} {value:.4f}" if isinstance(value, float) else f"  {key:28s} {value}")
    return result | scalars
