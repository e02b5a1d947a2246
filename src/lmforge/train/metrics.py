"""Run records: ``metrics.jsonl``, TensorBoard events, ``loss.png``, ``config.yaml`` and ``env.json`` (R13).

``MetricLogger.log(step, metrics)`` appends one JSON line (the source of truth: plots and the model card read it)
and mirrors numbers to TensorBoard (``torch.utils.tensorboard.SummaryWriter``). After a resume from step k,
``MetricLogger(..., resume_step=k)`` drops the lines after k that the killed run had already written and tells
TensorBoard to purge its events after k, so both records read like one uninterrupted run (lingua's
``metrics.jsonl``; TensorBoard's ``purge_step``). Only rank 0 creates a logger.

Weights & Biases (``--report_to wandb``, or ``all`` when it is installed) is optional: ``wandb`` is imported only
when asked for, and missing it is a one-line error (``pip install wandb``) raised before any work by the argument
classes (``train.config.check_report_to``). The run id is kept in ``OUTPUT_DIR/wandb_run_id`` so a resumed run
continues the same W&B run; ``WANDB_PROJECT`` (default ``lmforge``), ``WANDB_MODE=offline`` and the other
``WANDB_*`` variables work as usual.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = ["MetricLogger", "collect_env", "plot_loss", "read_metrics", "run_logger", "write_yaml"]

WANDB_ID_FILE = "wandb_run_id"


def _clean(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf
    return value


class MetricLogger:
    """Appends ``{"step": ..., **metrics}`` to ``metrics.jsonl`` and scalars to TensorBoard."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard_dir: str | Path | None,
        resume_step: int | None = None,
        wandb_config: dict[str, Any] | None = None,
    ):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        elif resume_step is None:
            self.path.write_text("")
        self.writer = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(tensorboard_dir), purge_step=resume_step)
        self.wandb = None if wandb_config is None else _start_wandb(Path(run_dir), wandb_config, resume_step)

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        record = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                    tag = key.replace("_", "/", 1) if key.startswith(("train_", "eval_")) else f"train/{key}"
                    self.writer.add_scalar(tag, value, step)
        if self.wandb is not None:
            numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            numbers.pop("step")
            self.wandb.log(numbers, step=step)
        return record

    def log_text(self, step: int, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)
        if self.wandb is not None:
            self.wandb.log({tag: text}, step=step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _start_wandb(run_dir: Path, config: dict[str, Any], resume_step: int | None) -> Any:
    """``wandb.init`` for this run directory: a new run id, or on resume the one saved in ``wandb_run_id``."""
    try:
        import wandb
    except ImportError:
        raise ValueError("--report_to wandb needs Weights & Biases: pip install wandb") from None
    id_file = run_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if resume_step is not None and id_file.is_file() else None
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "lmforge"),
        name=config.get("run_name") or run_dir.resolve().name,
        id=run_id,
        resume="allow" if run_id else None,
        dir=str(run_dir),
        config=config,
    )
    id_file.write_text(f"{run.id}\n")
    return run


def run_logger(args: Any, run_dir: Path, *, resume_step: int | None) -> MetricLogger:
    """The logger that ``args.report_to`` asks for: tensorboard, wandb, all (TensorBoard, and W&B when installed)
    or none; ``metrics.jsonl`` always. ``args`` is a ``PretrainArgs`` or ``FinetuneArgs``."""
    tensorboard = None
    if args.report_to in ("tensorboard", "all"):
        tensorboard = Path(args.logging_dir or run_dir / "tensorboard")
    wandb = args.report_to == "wandb" or (args.report_to == "all" and importlib.util.find_spec("wandb") is not None)
    config = {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | None | list | dict)}
    return MetricLogger(
        run_dir, tensorboard_dir=tensorboard, resume_step=resume_step, wandb_config=config if wandb else None
    )


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a run directory or the file itself); a torn last line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    records = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the process was killed while writing this line
    return records


def plot_loss(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """``loss.png``: training loss (and held-out loss) against step, from ``metrics.jsonl``. None if no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    train = [(r["step"], r["train_loss"]) for r in records if isinstance(r.get("train_loss"), float)]
    evals = [(r["step"], r["eval_loss"]) for r in records if isinstance(r.get("eval_loss"), float)]
    if not train and not evals:
        return None
    out = Path(out) if out is not None else Path(run_dir) / "loss.png"
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="held-out loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def write_yaml(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def collect_env(device: torch.device, *, world_size: int = 1) -> dict[str, Any]:
    """What ran: versions, git commit (and whether the tree was dirty), device, threads, command line."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    env: dict[str, Any] = {
        "argv": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "versions": {
            p: _version(p) for p in ("lmforge", "torch", "numpy", "safetensors", "tokenizers", "transformers")
        },
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch_num_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "world_size": world_size,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env
