"""``lmforge export``: a pretraining or fine-tuning run (or checkpoint) -> a Hugging Face directory (config.json,
model.safetensors, tokenizer files, README.md model card, and remote code where needed).

Two formats. ``native`` (``auto`` picks it whenever it exists): a class of ``transformers`` itself that computes
exactly our model (``lmforge.hf.native``): ``BertForMaskedLM``, ``RoFormerForCausalLM``, ``BertForTokenClassification``,
``CanineForQuestionAnswering``, ...; it loads without lmforge and without remote code. ``lmforge``: our wrapper
classes (``lmforge.hf.modeling``) plus their code, bundled from lmforge's sources into the directory
(``lmforge.hf.remote``; ``auto_map`` in config.json): ``AutoModelFor*.from_pretrained(DIR, trust_remote_code=True)``
works without lmforge installed, and after ``import lmforge.hf`` without ``trust_remote_code``. GAU-alpha, FLASH,
FLASH-Quad, CANINE's masked-character LM and every head without an exact HF class (mean pooling, no pooler, ...)
export this way.

Before returning, the export is reloaded (the remote code too) and its logits are compared with ours on real
positions (``--verify``), so a converter or bundler bug cannot produce a silently wrong model. The tokenizer
directory of the checkpoint is copied as is (``model_max_length`` is added).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from lmforge.data.tokenizer import META_FILE, load_tokenizer
from lmforge.hf.auto import auto_class_name
from lmforge.hf.card import model_card
from lmforge.hf.configuration import config_class_for
from lmforge.hf.export_args import ExportArgs
from lmforge.hf.modeling import model_classes_for
from lmforge.hf.native import to_native
from lmforge.hf.remote import write_remote_code
from lmforge.models.loading import LoadedModel, load_model
from lmforge.models.registry import config_to_dict, list_models

__all__ = ["ExportArgs", "export", "export_checkpoint", "export_model"]


def _load_trained(source: str | Path) -> LoadedModel:
    """Our model (``.model``, eval mode), its config.json entry (``.info``) and where it came from."""
    if not Path(source).exists() and str(source) in list_models():
        raise ValueError(f"nothing trained to export: {source!r} is an architecture name; pass a run, checkpoint or "
                         "model directory")  # fmt: skip
    return load_model(source, quiet=True)


def export(args: ExportArgs) -> Path:
    """CLI entry point: export ``args.run`` (any source the loader resolves) to ``args.output_dir``; returns it.

    The default directory is RUN/hf for a run, hf-checkpoint-N next to a checkpoint (never inside one); any other
    source (a Hugging Face, JunnYu or lucidrains checkpoint) needs ``--output_dir``."""
    transformers.utils.logging.disable_progress_bar()  # per-tensor bars of each reload: noise on the console
    loaded = _load_trained(args.run)
    if args.output_dir is not None:
        out = Path(args.output_dir)
    elif loaded.kind == "run":
        out = Path(args.run) / "hf"
    elif loaded.kind == "checkpoint":
        out = Path(args.run).parent / f"hf-{Path(args.run).name}"
    else:
        raise ValueError(f"pass --output_dir: the source is a {loaded.description}, not an lmforge run")
    path = _export_loaded(loaded, out, format=args.format, verify=args.verify, overwrite=args.overwrite)
    print(f"exported {args.run} -> {path}")
    return path


def export_checkpoint(
    run_or_checkpoint: str | Path,
    output_dir: str | Path,
    *,
    format: str = "auto",
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    """Export a run (its newest complete checkpoint), a checkpoint, or any trained model the loader resolves (an
    lmforge export, a Hugging Face / JunnYu directory, a lucidrains state dict); see the module docstring."""
    loaded = _load_trained(run_or_checkpoint)
    return _export_loaded(loaded, output_dir, format=format, verify=verify, overwrite=overwrite)


def _export_loaded(loaded: LoadedModel, output_dir: str | Path, **options: Any) -> Path:
    if loaded.weights is None or loaded.fresh_head:
        raise ValueError(f"nothing trained to export: {loaded.source} is a {loaded.description}")
    tokenizer_dir = loaded.tokenizer_dir
    if tokenizer_dir is not None and not (Path(tokenizer_dir) / META_FILE).is_file():
        # an imported tokenizer (its directory may hold weights too): written as its own files, nothing else
        saved = Path(output_dir).parent / f".{Path(output_dir).name}-tokenizer"
        shutil.rmtree(saved, ignore_errors=True)
        tokenizer_dir = load_tokenizer(tokenizer_dir).save(saved)
        try:
            return export_model(loaded.model, loaded.info, output_dir, checkpoint=loaded.checkpoint,
                                tokenizer_dir=tokenizer_dir, **options)  # fmt: skip
        finally:
            shutil.rmtree(saved, ignore_errors=True)
    return export_model(loaded.model, loaded.info, output_dir, checkpoint=loaded.checkpoint,
                        tokenizer_dir=tokenizer_dir, **options)  # fmt: skip


def _task_of(model: nn.Module, info: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(wrapper task, the head entry with what the module holds: ``use_pooler``) of a checkpoint's config.json."""
    if "head" not in info:
        if info["task"] not in ("mlm", "clm"):
            raise ValueError(f"cannot export a {info['task']!r} model: neither a language model nor fine-tuned")
        return info["task"], None
    head = dict(info["head"])
    pooler = getattr(model.head, "pooler", None)
    first = pooler or (model.head.qa_outputs if head["kind"] == "span" else model.head.classifier)
    head["hidden_size"] = first.in_features  # the backbone's output width
    if head["kind"] == "sequence_classification":
        head["use_pooler"] = pooler is not None
    return head["kind"], head


def export_model(
    model: nn.Module,
    info: dict[str, Any],
    output_dir: str | Path,
    *,
    format: str = "auto",
    verify: bool = True,
    overwrite: bool = False,
    checkpoint: Path | None = None,
    tokenizer_dir: Path | None = None,
) -> Path:
    """Export ``model`` (a ``LanguageModel`` or ``TaskModel``) described by ``info`` (a checkpoint's config.json:
    model, task, config, head); the files of ``tokenizer_dir`` are copied, the metrics of ``checkpoint``'s run go
    into the model card."""
    if format not in ("auto", "native", "lmforge"):
        raise ValueError(f"unknown export format {format!r}; choose from auto, native, lmforge")
    arch = info["model"]
    task, head = _task_of(model, info)
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} is not empty; pass --overwrite true to replace it")
        shutil.rmtree(out)
    hf_model, why = to_native(model, arch, task, head) if format != "lmforge" else (None, "")
    if format == "native" and hf_model is None:
        raise ValueError(
            f"no native Hugging Face class computes this {arch} {task} model ({why}); use --format lmforge"
        )
    if hf_model is None:
        format = "lmforge"
        hf_config = config_class_for(arch)(
            lmforge_model=arch, lmforge_task=task, lmforge_config=config_to_dict(model.config), lmforge_head=head
        )
        hf_model = model_classes_for(arch)[task](hf_config)
        hf_model.model.load_state_dict(model.state_dict(), strict=True)
        out.mkdir(parents=True, exist_ok=True)
        hf_config.auto_map = write_remote_code(out, arch, [task, "backbone"])
        hf_config.architectures = [type(hf_model).__name__]
    else:
        format = "native"
    hf_model.save_pretrained(out)
    if tokenizer_dir is not None:
        for file in Path(tokenizer_dir).iterdir():
            if file.is_file() and not (out / file.name).exists():  # never over the model's own config or weights
                shutil.copy2(file, out / file.name)
        _set_model_max_length(out, model.config)
    card = model_card(arch=arch, task=task, format=format, info=info, checkpoint=checkpoint, hf_model=hf_model)
    (out / "README.md").write_text(card, encoding="utf-8")
    if verify:
        verify_export(model, out, task, remote=format == "lmforge")
    return out


def _set_model_max_length(out: Path, config: Any) -> None:
    path = out / "tokenizer_config.json"
    limit = getattr(config, "max_position_embeddings", None)
    if path.is_file() and limit:
        tokenizer_config = json.loads(path.read_text(encoding="utf-8"))
        tokenizer_config.setdefault("model_max_length", int(limit))
        path.write_text(json.dumps(tokenizer_config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def probe_inputs(config: Any) -> dict[str, torch.Tensor]:
    """Two fixed rows (the second padded after 8 tokens; segment 1 from token 6 where the model has segments)."""
    generator = torch.Generator().manual_seed(0)
    vocab = getattr(config, "vocab_size", None)
    low, high = (5, vocab) if vocab else (0x4E00, 0x9FA5)  # CANINE reads codepoints
    input_ids = torch.randint(low, high, (2, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if getattr(config, "type_vocab_size", 0) > 1:
        inputs["token_type_ids"] = (torch.arange(12) >= 6).long().expand(2, 12).contiguous()
    return inputs


def comparable_logits(output: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    """The logits of an HF or lmforge output on real positions (sequence logits whole; spans as (N, 2))."""
    if getattr(output, "start_logits", None) is not None:
        logits = torch.stack([output.start_logits, output.end_logits], dim=-1)
    else:
        logits = output.logits
    return logits[attention_mask.bool()] if logits.dim() == 3 else logits


@torch.no_grad()
def verify_export(model: nn.Module, out: Path, task: str, *, remote: bool, tolerance: float = 1e-5) -> None:
    """Reload ``out`` (through the remote code too when ``remote``) and compare its logits with ours on real
    positions: ``|diff| <= tolerance * (1 + |ours|)``."""
    auto = getattr(transformers, auto_class_name(task))
    inputs = probe_inputs(model.config)
    ours = comparable_logits(model.eval()(**inputs), inputs["attention_mask"])
    loaders = {"": auto}
    if remote:  # the registered lmforge classes win over auto_map in this process: load the remote class directly
        reference = json.loads((out / "config.json").read_text(encoding="utf-8"))["auto_map"][auto.__name__]
        loaders[" through its remote code"] = get_class_from_dynamic_module(reference, str(out))
    for how, loader in loaders.items():
        reloaded = loader.from_pretrained(out).eval()
        theirs = comparable_logits(reloaded(**inputs), inputs["attention_mask"])
        if theirs.shape != ours.shape:
            raise ValueError(f"the export at {out}{how} gives logits {tuple(theirs.shape)}, ours {tuple(ours.shape)}")
        difference = (ours - theirs).abs()
        if not (difference <= tolerance * (1 + ours.abs())).all():  # atol = rtol = tolerance
            worst = difference.max().item()
            raise ValueError(f"the export at {out}{how} does not reproduce our logits (max |diff| {worst:.3g})")
