"""``lmforge evaluate clue --model FINETUNED_RUN [RUN ...] --data_dir DIR [--split dev|test] [--package true]``:
metrics or predictions of fine-tuned models (``lmforge finetune``) on a CLUE split, without training code paths.

The task, tokenizer and preprocessing settings (``max_seq_length``, doc stride, pooling, ...) come from the run's
``config.yaml`` and checkpoint, so the examples are encoded exactly as during fine-tuning; ``--max_seq_length``
overrides. The label set of the data must be the one the head was trained with (a mismatch is an error naming both).
``--split dev`` prints the metrics and writes ``eval_dev_metrics.json`` (never fine-tuning's ``dev_metrics.json``;
the majority baseline uses the run's majority training label from ``report.json``, as fine-tuning did);
``--split test`` writes ``{task}_predict.json`` in the CLUE leaderboard format to ``--output_dir`` (default: the
run directory).

``--model`` takes several runs, or a directory whose subdirectories are runs; each is evaluated on its own
``--data_dir`` (``--data_dir`` is refused with several runs) and writes into ``--output_dir/RUN_NAME`` (default:
the run directory). ``--package true`` (with ``--split test``) also zips
every run's prediction file, renamed as CLUE's submission instructions ask (``LEADERBOARD_FILES``), into
``clue_submit.zip`` in ``--output_dir`` (default: the current directory); one run per task.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["LEADERBOARD_FILES", "ClueEvalArgs", "evaluate_clue", "find_runs", "leaderboard_name"]

# The member names of a CLUE leaderboard zip (CLUEbenchmark/CLUE's submission instructions, 2021-09-04 update:
# "<task><version>_predict.json" for the tasks whose test set changed in CLUE 1.1, "<task>_predict.json" for the
# others; OCNLI's leaderboard is the one trained on its 50k set). "{v}" is "11" (CLUE 1.1) or "10" (CLUE 1.0).
LEADERBOARD_FILES = {
    "afqmc": "afqmc_predict.json",
    "tnews": "tnews{v}_predict.json",
    "iflytek": "iflytek_predict.json",
    "ocnli": "ocnli_50k_predict.json",
    "cmnli": "cmnli_predict.json",
    "cluewsc2020": "cluewsc{v}_predict.json",
    "csl": "csl_predict.json",
    "cmrc2018": "cmrc2018_predict.json",
    "c3": "c3{v}_predict.json",
    "chid": "chid{v}_predict.json",
    "cluener": "cluener_predict.json",
}
PACKAGE_FILE = "clue_submit.zip"


@dataclass(kw_only=True)
class ClueEvalArgs:
    model: list[str] | str | None = None
    """Fine-tuning run directories or checkpoints (resolved by ``lmforge.models.loading``), or a directory of runs."""
    data_dir: str | None = None
    """Directory with the task's dev/test files (default: the --data_dir of the fine-tuning run)."""
    split: Literal["dev", "test"] = "dev"
    """dev: metrics; test: the leaderboard prediction file."""
    task: str | None = None
    """Task name (default: the fine-tuned checkpoint's)."""
    output_dir: str | None = None
    """Where eval_{split}_metrics.json / {task}_predict.json go (default: the run directory), and the package."""
    package: bool = False
    """With --split test: zip the prediction files of all runs, named as the CLUE leaderboard expects."""
    clue_version: Literal["1.1", "1.0"] = "1.1"
    """The leaderboard whose file names the package uses (tnews11_predict.json or tnews10_predict.json, ...)."""
    max_seq_length: int | None = None
    """Override the fine-tuning run's --max_seq_length."""
    per_device_eval_batch_size: int = 64
    """Sequences per forward pass."""
    use_cpu: bool = False
    """Evaluate on CPU even when CUDA is available."""


def leaderboard_name(task: str, *, clue_version: str = "1.1") -> str:
    """The file name CLUE's leaderboard expects for ``task``'s test predictions."""
    if task not in LEADERBOARD_FILES:
        raise ValueError(f"{task!r} is not a CLUE leaderboard task; the package takes {sorted(LEADERBOARD_FILES)}")
    if clue_version not in ("1.1", "1.0"):
        raise ValueError(f"clue_version must be '1.1' or '1.0', got {clue_version!r}")
    return LEADERBOARD_FILES[task].format(v=clue_version.replace(".", ""))


def _is_run(path: Path) -> bool:
    return (path / "config.json").is_file() or any(path.glob("checkpoint-*/config.json"))


def find_runs(paths: list[str]) -> list[str]:
    """Each path that is a run or checkpoint, or else the runs directly under it (sorted by name)."""
    runs: list[str] = []
    for path in map(Path, paths):
        if not path.is_dir() or _is_run(path):
            runs.append(str(path))  # loading says what is wrong with it
            continue
        inside = sorted(str(child) for child in path.iterdir() if child.is_dir() and _is_run(child))
        if not inside:
            raise ValueError(f"{path} is neither a fine-tuning run nor a directory of runs")
        runs += inside
    return runs


def evaluate_clue(args: ClueEvalArgs) -> dict[str, Any]:
    """One run: its metrics (dev) or prediction file (test); several runs: ``{"runs": [...]}``; ``--package``:
    ``"package"`` is the zip and ``"members"`` maps each member to its run."""
    if args.model is None or not args.model:
        raise ValueError("pass --model: fine-tuning run directories or checkpoints, or a directory of runs")
    runs = find_runs([args.model] if isinstance(args.model, str) else list(args.model))
    if args.package and args.split != "test":
        raise ValueError(f"--package writes the test predictions: pass --split test (got --split {args.split})")
    if len(runs) > 1 and (args.data_dir is not None or args.task is not None):
        raise ValueError(f"--data_dir and --task apply to one run; {len(runs)} runs each use their own: {runs}")
    # several runs: each one's files in a subdirectory of --output_dir named after it (eval_dev_metrics.json x N)
    base = Path(args.output_dir) if args.output_dir is not None else None
    outs = [base if base is None or len(runs) == 1 else base / Path(run).name for run in runs]
    results = [_evaluate_run(run, args, out) for run, out in zip(runs, outs, strict=True)]
    if not args.package:
        return results[0] if len(results) == 1 else {"runs": results}
    members: dict[str, str] = {}
    for result in results:
        name = leaderboard_name(result["task"], clue_version=args.clue_version)
        if name in members:
            raise ValueError(f"two runs of {result['task']}: {members[name]} and {result['checkpoint']}; pass one")
        members[name] = result["checkpoint"]
    out = Path(args.output_dir) if args.output_dir is not None else Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    package = out / PACKAGE_FILE
    with zipfile.ZipFile(package, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for result, name in zip(results, members, strict=True):
            archive.write(result["predict_file"], arcname=name)  # at the root of the zip, as CLUE reads it
    print(f"CLUE {args.clue_version} leaderboard package ({len(members)} tasks): {package}")
    for name, checkpoint in members.items():
        print(f"  {name:28s} {checkpoint}")
    return {"package": str(package), "members": members, "runs": results}


def _evaluate_run(path: str, args: ClueEvalArgs, out: Path | None) -> dict[str, Any]:
    import torch

    from lmforge.tasks.common import predict_logits
    from lmforge.tasks.finetune import load_finetuned, saved_finetune_args
    from lmforge.tasks.registry import build_task_bundle
    from lmforge.utils import get_device

    loaded = load_finetuned(path)
    model, info, checkpoint = loaded.model, loaded.info, loaded.checkpoint
    task = args.task or info["task"].removeprefix("finetune-")
    settings = {"do_train": False, "do_eval": args.split == "dev", "do_predict": args.split == "test"}
    if args.data_dir is not None:
        settings["data_dir"] = args.data_dir
    if args.max_seq_length is not None:
        settings["max_seq_length"] = args.max_seq_length
    if "pooling" in info["head"]:
        settings["pooling"] = info["head"]["pooling"]
    finetune_args = saved_finetune_args(checkpoint, task, **settings)
    tokenizer = loaded.tokenizer
    config = model.backbone.config
    trained_labels = info["head"].get("labels") if info["head"]["kind"] == "sequence_classification" else None
    run_report = checkpoint.parent / "report.json"  # the training run's majority label (its train label counts)
    majority = json.loads(run_report.read_text()).get("majority_label") if run_report.is_file() else None
    bundle = build_task_bundle(finetune_args, arch=info["model"], config=config, backbone=model.backbone,
                               tokenizer=tokenizer, splits=(args.split,), labels=trained_labels,
                               majority_label=majority if trained_labels else None)  # fmt: skip
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
    out = out if out is not None else checkpoint.parent
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
