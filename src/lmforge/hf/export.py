"""``lmforge export``: a run or checkpoint -> a Hugging Face directory (config.json, model.safetensors, tokenizer
files, README.md model card).

Two formats. ``native`` (the default when ``lmforge.models.<arch>.convert`` provides ``to_hf_config`` and
``to_hf_state_dict``): the architecture's HF twin, e.g. ``BertForMaskedLM`` or ``RoFormerForMaskedLM``, built from
the converted config and weights and written with ``save_pretrained``, so ``transformers.pipeline("fill-mask",
model=DIR)`` works without lmforge installed. ``lmforge``: the generic wrapper of ``lmforge.hf.modeling`` (for
architectures without a twin; loading needs ``import lmforge.hf``). The export is reloaded and its logits are
compared with ours before returning (``--verify``), so a converter bug cannot produce a silently wrong model.

The tokenizer directory of the checkpoint is copied as is: ``lmforge prepare`` already writes ``vocab.txt`` /
``tokenizer.json`` / ``tokenizer_config.json`` that ``AutoTokenizer`` reads (``model_max_length`` is added).
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

import lmforge
from lmforge.hf.configuration import config_class_for
from lmforge.hf.export_args import ExportArgs
from lmforge.hf.modeling import model_classes_for
from lmforge.models.registry import config_to_dict
from lmforge.train.checkpoint import TOKENIZER_DIR, load_model, load_model_info, resolve_checkpoint
from lmforge.train.metrics import read_metrics

__all__ = ["ExportArgs", "export", "export_checkpoint"]


def _converter(arch: str):
    try:
        module = importlib.import_module(f"lmforge.models.{arch}.convert")
    except ModuleNotFoundError:
        return None
    return module if hasattr(module, "to_hf_config") and hasattr(module, "to_hf_state_dict") else None


def _run_dir_of(checkpoint: Path) -> Path | None:
    parent = checkpoint.parent
    return parent if (parent / "config.yaml").is_file() or (parent / "metrics.jsonl").is_file() else None


def export(args: ExportArgs) -> Path:
    """CLI entry point: export ``args.run`` to ``args.output_dir`` (default RUN/hf, or RUN/../hf-checkpoint-N for a
    checkpoint); returns the directory."""
    run = Path(args.run)
    is_checkpoint = (run / "config.json").is_file() and (run / "model.safetensors").is_file()
    default = run.parent / f"hf-{run.name}" if is_checkpoint else run / "hf"  # never inside a checkpoint
    out = Path(args.output_dir) if args.output_dir else default
    path = export_checkpoint(args.run, out, format=args.format, verify=args.verify, overwrite=args.overwrite)
    print(f"exported {resolve_checkpoint(args.run)} -> {path}")
    return path


def export_checkpoint(
    run_or_checkpoint: str | Path,
    output_dir: str | Path,
    *,
    format: str = "auto",
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    checkpoint = resolve_checkpoint(run_or_checkpoint)
    info = load_model_info(checkpoint)
    arch, task = info["model"], info["task"]
    if task not in ("mlm", "clm"):
        raise ValueError(f"only mlm and clm models can be exported for now, {checkpoint} is {task!r}")
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} is not empty; pass --overwrite true to replace it")
        shutil.rmtree(out)
    converter = _converter(arch)
    if format == "auto":
        format = "native" if converter is not None else "lmforge"
    if format == "native" and converter is None:
        raise ValueError(f"architecture {arch!r} has no Hugging Face twin; use --format lmforge")
    if format not in ("native", "lmforge"):
        raise ValueError(f"unknown export format {format!r}; choose from auto, native, lmforge")

    model = load_model(checkpoint)
    if format == "native":
        hf_fields = converter.to_hf_config(model.config)
        hf_config = AutoConfig.for_model(**hf_fields)
        hf_model = getattr(transformers, hf_fields["architectures"][0])(hf_config)
        hf_model.load_state_dict(converter.to_hf_state_dict(model.state_dict(), model.config), strict=True)
    else:
        hf_class = model_classes_for(arch)[task]
        hf_config = config_class_for(arch)(
            lmforge_model=arch,
            lmforge_task=task,
            lmforge_config=config_to_dict(model.config),
            architectures=[hf_class.__name__],
        )
        hf_model = hf_class(hf_config)
        hf_model.model.load_state_dict(model.state_dict(), strict=True)
    hf_model.save_pretrained(out)

    tokenizer_dir = checkpoint / TOKENIZER_DIR
    if tokenizer_dir.is_dir():
        for file in tokenizer_dir.iterdir():
            if file.is_file():
                shutil.copy2(file, out / file.name)
        _set_model_max_length(out, model.config)
    run_dir = _run_dir_of(checkpoint)
    (out / "README.md").write_text(_model_card(arch, task, format, checkpoint, run_dir, hf_model), encoding="utf-8")
    if verify:
        _verify(model, out, task)
    return out


def _set_model_max_length(out: Path, config: Any) -> None:
    path = out / "tokenizer_config.json"
    limit = getattr(config, "max_position_embeddings", None)
    if path.is_file() and limit:
        tokenizer_config = json.loads(path.read_text(encoding="utf-8"))
        tokenizer_config.setdefault("model_max_length", int(limit))
        path.write_text(json.dumps(tokenizer_config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


@torch.no_grad()
def _verify(model: torch.nn.Module, out: Path, task: str) -> None:
    auto = AutoModelForMaskedLM if task == "mlm" else AutoModelForCausalLM
    reloaded = auto.from_pretrained(out).eval()
    generator = torch.Generator().manual_seed(0)
    vocab_size = model.config.vocab_size
    input_ids = torch.randint(5, vocab_size, (2, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0
    ours = model(input_ids, attention_mask=attention_mask).logits
    theirs = reloaded(input_ids=input_ids, attention_mask=attention_mask).logits
    keep = attention_mask.bool()
    difference = (ours[keep] - theirs[keep]).abs().max().item()
    if difference > 1e-4:
        raise ValueError(f"the export at {out} does not reproduce our logits (max |diff| {difference:.3g})")


def _model_card(arch: str, task: str, format: str, checkpoint: Path, run_dir: Path | None, hf_model: Any) -> str:
    pipeline_tag = "fill-mask" if task == "mlm" else "text-generation"
    auto = "AutoModelForMaskedLM" if task == "mlm" else "AutoModelForCausalLM"
    parameters = sum(p.numel() for p in hf_model.parameters())
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {pipeline_tag}",
        "language: zh",
        f"tags: [lmforge, {arch}, {task}]",
        "---",
        "",
        f"# {arch} ({task.upper()}) trained with lmforge",
        "",
        f"Exported by lmforge {lmforge.__version__} from `{checkpoint}` as `{type(hf_model).__name__}` "
        f"({parameters:,} parameters, format `{format}`).",
        "",
        "## Usage",
        "",
        "```python",
        *(
            ["import lmforge.hf  # registers the lmforge architectures with transformers"]
            if format == "lmforge"
            else []
        ),
        f"from transformers import AutoTokenizer, {auto}, pipeline",
        "",
        'model_dir = "."  # this directory',
        f'pipe = pipeline("{pipeline_tag}", model=model_dir)',
        *(['print(pipe("天气预报说今天的天[MASK]很好"))'] if task == "mlm" else ['print(pipe("今天"))']),
        "```",
    ]
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
    info = load_model_info(checkpoint)
    lines += ["", "## Model configuration (lmforge)", "", "```json", json.dumps(info, indent=2), "```", ""]
    return "\n".join(lines)
