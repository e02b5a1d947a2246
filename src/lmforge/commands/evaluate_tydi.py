"""``lmforge evaluate tydi``: official-format predictions of a model fine-tuned with ``lmforge finetune tydi``, scored
as ``tydi_eval.py`` scores them; or, with ``--predictions``, any official-format prediction file scored against a
gold file.

Outputs (``--output_dir``, default the run directory): ``tydi_{split}_predictions.jsonl`` (one official prediction
per line: ``example_id``, ``passage_answer_index``/``_score``, ``minimal_answer`` byte offsets, ``_score``,
``yes_no_answer``, plus ``language``) and ``eval_{split}_metrics.json``: per language the best-threshold passage and
minimal-answer F1/P/R and the thresholds, and their macro average over languages excluding English (the
leaderboard numbers). Fine-tuning's own ``dev_metrics.json`` is never overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["TydiEvalArgs", "evaluate_tydi"]


@dataclass(kw_only=True)
class TydiEvalArgs:
    model: str | None = None
    """A ``lmforge finetune tydi`` run directory or one of its checkpoints."""
    data_dir: str | None = None
    """Directory with tydiqa-v1.0-dev.jsonl[.gz] (or dev.jsonl[.gz]); default: the fine-tuning run's --data_dir."""
    split: Literal["dev", "test"] = "dev"
    """dev: predictions and metrics; test: predictions only."""
    predictions: str | None = None
    """Score this official-format prediction file instead of running a model (needs --gold_file)."""
    gold_file: str | None = None
    """The TyDi QA jsonl[.gz] that --predictions is scored against."""
    output_dir: str | None = None
    """Where the predictions and eval_{split}_metrics.json go (default: the run directory, or --predictions')."""
    passage_non_null_threshold: int = 2
    """Annotators needed for a non-null gold passage (tydi_eval.py's flag; capped at an example's annotations)."""
    minimal_non_null_threshold: int = 2
    """Annotators needed for a non-null gold minimal answer (tydi_eval.py's span_non_null_threshold)."""
    per_device_eval_batch_size: int = 16
    """Windows per forward pass."""
    use_cpu: bool = False
    """Evaluate on CPU even when CUDA is available."""


def evaluate_tydi(args: TydiEvalArgs) -> dict[str, Any]:
    from lmforge.tasks.tydi import read_predictions, read_tydi, tydi_eval

    thresholds = {"passage_non_null_threshold": args.passage_non_null_threshold,
                  "minimal_non_null_threshold": args.minimal_non_null_threshold}  # fmt: skip
    if args.predictions is not None:
        if args.gold_file is None:
            raise ValueError("--predictions needs --gold_file: the TyDi QA jsonl it is scored against")
        metrics = tydi_eval(list(read_tydi(args.gold_file)), read_predictions(args.predictions), **thresholds)
        out = Path(args.output_dir) if args.output_dir is not None else Path(args.predictions).parent
        return _write_metrics(metrics, out, args.split, source=args.predictions)
    if args.model is None:
        raise ValueError("pass --model (a fine-tuned tydi run) or --predictions with --gold_file")
    metrics, predictions, checkpoint = _run_model(args)
    out = Path(args.output_dir) if args.output_dir is not None else checkpoint.parent
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"tydi_{args.split}_predictions.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions), encoding="utf-8")
    print(f"tydi {args.split} predictions ({len(predictions)} examples): {path}")
    if args.split == "test":
        return {"split": args.split, "predict_file": str(path)}
    metrics = tydi_eval(_gold(args, checkpoint), {str(p["example_id"]): p for p in predictions}, **thresholds)
    return _write_metrics(metrics, out, args.split, source=str(checkpoint)) | {"predict_file": str(path)}


def _gold(args: TydiEvalArgs, checkpoint: Path) -> list:
    from lmforge.tasks.finetune import run_settings
    from lmforge.tasks.tydi import find_tydi_file, read_tydi

    data_dir = Path(args.data_dir or run_settings(checkpoint).get("data_dir") or ".")
    return list(read_tydi(find_tydi_file(data_dir, args.split)))


def _run_model(args: TydiEvalArgs) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    import torch

    from lmforge.heads.classification import TaskModel, backbone_output_size
    from lmforge.models.registry import build_model
    from lmforge.tasks.common import predict_logits
    from lmforge.tasks.finetune import load_finetuned, saved_finetune_args
    from lmforge.tasks.tydi import TydiHead, build_tydi_task
    from lmforge.utils import get_device

    loaded = load_finetuned(args.model)
    if loaded.head["kind"] != "tydi":
        raise ValueError(f"{loaded.checkpoint} was fine-tuned for {loaded.task!r}, not tydi")
    overrides = {"data_dir": args.data_dir} if args.data_dir is not None else {}
    finetune_args = saved_finetune_args(loaded.checkpoint, "tydi", **overrides)
    backbone = build_model(loaded.arch, config=loaded.config)
    model = TaskModel(backbone, TydiHead(backbone_output_size(backbone), dropout=loaded.head["dropout"]))
    model.load_state_dict(loaded.weights, strict=True)
    bundle = build_tydi_task(finetune_args, tokenizer=loaded.tokenizer, hidden_size=backbone_output_size(backbone),
                             splits=(args.split,))  # fmt: skip
    if args.split not in bundle.features:
        raise ValueError(f"{finetune_args.data_dir} has no {args.split} file (tydiqa-v1.0-{args.split}.jsonl[.gz])")
    device = torch.device("cpu") if args.use_cpu else get_device()
    model.to(device)
    logits = predict_logits(model, bundle.features[args.split], batch_size=args.per_device_eval_batch_size,
                            pad_id=loaded.tokenizer.pad_token_id, device=device)  # fmt: skip
    metrics, predictions = bundle.score(args.split, logits)
    return metrics, predictions, loaded.checkpoint


def _write_metrics(metrics: dict[str, Any], out: Path, split: str, *, source: str) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"eval_{split}_metrics.json"
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    print(f"tydi {split} ({source}), best threshold per language; macro over languages excluding English:")
    for language in metrics["languages"]:
        p, m = f"{language}/passage_", f"{language}/minimal_"
        print(f"  {language:12s} passage F1 {metrics[p + 'f1']:.4f} P {metrics[p + 'precision']:.4f} "
              f"R {metrics[p + 'recall']:.4f} | minimal F1 {metrics[m + 'f1']:.4f} P {metrics[m + 'precision']:.4f} "
              f"R {metrics[m + 'recall']:.4f}")  # fmt: skip
    print(f"  {'macro':12s} passage F1 {metrics['passage_f1']:.4f} | minimal F1 {metrics['minimal_f1']:.4f}")
    print(f"  metrics: {path}")
    return {"split": split, "metrics_file": str(path)} | {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and "/" not in k
    }
