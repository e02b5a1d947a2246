"""The model card (README.md) of an export: how to load it (the right Auto class and pipeline, with
``trust_remote_code=True`` for remote code), final metrics of the run, its training configuration and our config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lmforge
from lmforge.hf.auto import auto_class_name
from lmforge.train.metrics import read_metrics

__all__ = ["PIPELINES", "model_card"]

# task -> (pipeline tag, example call); CANINE's masked characters have no pipeline (hash-bucket logits)
PIPELINES = {
    "mlm": ("fill-mask", 'pipe("天气预报说今天的天[MASK]很好")'),
    "clm": ("text-generation", 'pipe("今天", max_new_tokens=20)'),
    "sequence_classification": ("text-classification", 'pipe("这家餐厅的菜很好吃")'),
    "token_classification": ("token-classification", 'pipe("我在北京大学读书")'),
    "span": ("question-answering", 'pipe(question="谁写了红楼梦？", context="红楼梦的作者是曹雪芹。")'),
}


def _run_dir_of(checkpoint: Path) -> Path | None:
    parent = checkpoint.parent
    return parent if (parent / "config.yaml").is_file() or (parent / "metrics.jsonl").is_file() else None


def model_card(
    *, arch: str, task: str, format: str, info: dict[str, Any], checkpoint: Path | None, hf_model: Any
) -> str:
    remote = format == "lmforge"
    pipeline_tag, example = PIPELINES[task]
    if arch == "canine" and task == "mlm":
        pipeline_tag = None
    auto = auto_class_name(task)
    trust = ", trust_remote_code=True" if remote else ""
    parameters = sum(p.numel() for p in hf_model.parameters())
    source = f"from `{checkpoint}` " if checkpoint is not None else ""
    lines = [
        "---",
        "library_name: transformers",
        *([f"pipeline_tag: {pipeline_tag}"] if pipeline_tag else []),
        "language: zh",
        f"tags: [lmforge, {arch}, {info['task']}]",
        "---",
        "",
        f"# {arch} ({info['task']}) trained with lmforge",
        "",
        f"Exported by lmforge {lmforge.__version__} {source}as `{type(hf_model).__name__}` "
        f"({parameters:,} parameters, format `{format}`).",
    ]
    if remote:
        lines += [
            "",
            "The modeling code is in this directory (`modeling_lmforge.py`, `configuration_lmforge.py`, bundled from "
            "lmforge's sources), so loading needs `trust_remote_code=True` but not lmforge; with lmforge installed, "
            "`import lmforge.hf` registers the classes and `trust_remote_code` is not needed.",
        ]
    lines += ["", "## Usage", "", "```python", f"from transformers import {auto}, pipeline", ""]
    lines += ['model_dir = "."  # this directory', f"model = {auto}.from_pretrained(model_dir{trust})"]
    if pipeline_tag:
        lines += [f'pipe = pipeline("{pipeline_tag}", model=model_dir{trust})', f"print({example})"]
    else:
        lines += [
            "# logits over CANINE's hash buckets: decode with lmforge.models.canine.pretraining.decode_codepoints"
        ]
    lines.append("```")
    run_dir = _run_dir_of(checkpoint) if checkpoint is not None else None
    if run_dir is not None:
        results = run_dir / "all_results.json"
        final = json.loads(results.read_text()) if results.is_file() else {}
        if not final:
            records = read_metrics(run_dir)
            final = {k: v for r in records for k, v in r.items()}  # the latest value of every metric
        numbers = {k: v for k, v in final.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if numbers:
            lines += ["", "## Final metrics", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in numbers.items()]
        if (run_dir / "config.yaml").is_file():
            config_text = (run_dir / "config.yaml").read_text(encoding="utf-8")
            lines += ["", "## Training configuration", "", "```yaml", config_text.rstrip(), "```"]
    config = json.dumps(info, indent=2, ensure_ascii=False)
    lines += ["", "## Model configuration (lmforge)", "", "```json", config, "```", ""]
    return "\n".join(lines)
