"""What a model source holds (``LoadedModel``) and one reader per kind of source, for ``lmforge.models.loading``
(which says the resolution order): the registry, an lmforge checkpoint or run, an lmforge export, a Hugging Face
directory, a JunnYu GAU-alpha/FLASH directory and a lucidrains ``FLASHTransformer`` state dict. ``transformers`` is
never imported: an HF directory is config.json + tensors + our converters."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lmforge.models.model_files import (
    TOKENIZER_FILES,
    _is_checkpoint_dir,
    _tokenizer_dir,
    load_model_info,
    load_weights,
    read_weights,
)
from lmforge.train.checkpoint import CONFIG_FILE, TOKENIZER_DIR, check_checkpoint, find_latest_checkpoint

__all__ = ["HF_TYPES", "JUNNYU_TYPES", "LM_TASKS", "LoadedModel", "check_tokenizer_fits"]

LM_TASKS = ("mlm", "clm")
# model_type -> (lmforge architecture, backbone key prefix in HF *For* checkpoints, converter functions)
HF_TYPES: dict[str, tuple[str, str, str, str]] = {
    "bert": ("bert", "bert.", "from_hf_config", "from_hf_state_dict"),
    "roformer": ("bert", "roformer.", "from_hf_config", "from_hf_state_dict"),
    "gpt2": ("gpt", "transformer.", "from_hf_config", "from_hf_state_dict"),
    "llama": ("gpt", "model.", "from_llama_config", "from_llama_state_dict"),
    "canine": ("canine", "canine.", "from_hf_config", "from_hf_state_dict"),
    "reformer": ("reformer", "reformer.", "from_hf_config", "from_hf_state_dict"),
}
# JunnYu ports: model_type -> (lmforge architecture, key prefix, config reader in the converter)
JUNNYU_TYPES: dict[str, tuple[str, str, str]] = {
    "gau_alpha": ("gau-alpha", "gau_alpha.", "from_junnyu_config"),
    "flash_quad": ("flash-quad", "flash_quad.", "from_junnyu_quad_config"),
    "flash": ("flash", "flash.", "from_junnyu_flash_config"),
}


@dataclass
class LoadedModel:
    """What ``load_model`` resolved: the architecture, its config and the weights, not yet built.

    ``weights`` are in the naming of ``task``'s model (``backbone``: the bare backbone; ``mlm``/``clm``/
    ``finetune-*``: ``backbone.*`` + ``head.*``); None = random init. ``fresh_head``: the weights are the
    backbone's only and ``model`` gets a newly initialised ``task`` head (continued pretraining from a backbone).
    """

    source: str
    kind: str  # registry | run | checkpoint | export | hf | junnyu | lucidrains
    description: str  # the line printed when loading
    arch: str
    task: str
    config: Any
    weights: dict[str, Tensor] | None = None
    fresh_head: bool = False
    info: dict[str, Any] = field(default_factory=dict)  # {"model", "task", "config"[, "head"]}
    path: Path | None = None  # the directory or file read (a run's newest checkpoint for runs)
    checkpoint: Path | None = None  # the lmforge checkpoint directory, when the source is one
    tokenizer_dir: Path | None = None  # where the tokenizer files are (None: CANINE's codepoints, or none)
    tokenizer: Any = None  # the checked tokenizer, when load_model(..., with_tokenizer=True) loaded it

    @property
    def head(self) -> dict[str, Any] | None:
        """A fine-tuned checkpoint's head config (``config.json`` ``"head"``), else None."""
        return self.info.get("head")

    @cached_property
    def model(self) -> nn.Module:
        """The model of ``task`` with the weights loaded, in eval mode (built once)."""
        return self.build().eval()

    def build(self) -> nn.Module:
        """A new model of ``task`` with the weights loaded (train mode; seed first for a random init or head)."""
        from lmforge.models.footprint import check_memory
        from lmforge.models.registry import build_model

        # a config that cannot fit (num_hidden_layers 1e9, vocab_size 1e12) is one line, not an out-of-memory crash
        check_memory(self.arch, self.config, "backbone" if self.task.startswith("finetune-") else self.task)
        if self.task.startswith("finetune-"):
            from lmforge.heads.classification import TaskModel, backbone_output_size
            from lmforge.tasks.registry import build_head

            backbone = build_model(self.arch, config=self.config)
            model = TaskModel(backbone, build_head(self.info["head"], backbone_output_size(backbone)))
        else:
            model = build_model(self.arch, task=self.task, config=self.config)
        if self.weights is not None:
            target = model.backbone if self.fresh_head else model
            try:
                target.load_state_dict(self.weights, strict=True)
            except RuntimeError as error:  # shapes/keys vs the config (e.g. a --model_overrides that resizes)
                lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                reason = lines[1] if len(lines) > 1 else lines[0]  # the first offending key, not the preamble
                raise ValueError(f"the weights of {self.source} do not fit its config: {reason}") from None
        return model

    def backbone_weights(self) -> dict[str, Tensor] | None:
        if self.weights is None or self.task == "backbone" or self.fresh_head:
            return self.weights
        return {k.removeprefix("backbone."): v for k, v in self.weights.items() if k.startswith("backbone.")}

    def load_tokenizer(self, override: str | Path | None = None) -> Any:
        """The tokenizer (``override`` dir, else the source's own; CANINE: codepoints), checked against the model."""
        from lmforge.data.tokenizer import build_codepoint_tokenizer, load_tokenizer

        directory = Path(override) if override is not None else self.tokenizer_dir
        if directory is None and self.kind == "registry":
            raise ValueError(
                f"{self.source!r} is an architecture name (random weights, no tokenizer); pass a run, checkpoint, "
                "export or Hugging Face directory"
            )
        if directory is not None:
            tokenizer = load_tokenizer(directory)
        elif self.arch == "canine":
            tokenizer = build_codepoint_tokenizer()
        else:
            raise ValueError(f"{self.source} has no tokenizer files (tokenizer/ or {', '.join(TOKENIZER_FILES)})")
        check_tokenizer_fits(self.config, tokenizer, what=self.source)
        return tokenizer


def check_tokenizer_fits(config: Any, tokenizer: Any, *, what: str) -> None:
    """``ValueError`` naming both sizes when the embedding table cannot hold the tokenizer's ids."""
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is None:
        return  # CANINE: codepoints are hashed, there is no table to overflow
    if vocab_size < tokenizer.vocab_size:
        raise ValueError(f"{what} has vocab_size {vocab_size} but the tokenizer has {tokenizer.vocab_size} tokens")
    ids = getattr(tokenizer, "special_token_ids", {})
    specials = {name: i for name, i in ids.items() if i is not None and i >= vocab_size}
    if specials:
        raise ValueError(f"{what} has vocab_size {vocab_size} but the tokenizer's special ids {specials} do not fit")


def _registry(name: str, preset: str | None, overrides: dict[str, Any], tokenizer: Any) -> LoadedModel:
    from lmforge.models.registry import get_config, get_entry

    fields = {f.name for f in dataclasses.fields(get_entry(name).config_class)}
    overrides = dict(overrides)
    if tokenizer is not None:  # the tokenizer decides the vocabulary (codepoint models have none)
        if "vocab_size" in fields:
            overrides.setdefault("vocab_size", tokenizer.vocab_size)
        if "pad_token_id" in fields:
            overrides.setdefault("pad_token_id", tokenizer.pad_token_id)
    try:
        config = get_config(name, preset=preset, **overrides)
    except TypeError as error:  # a required field (vocab_size) that neither preset nor tokenizer gave
        raise ValueError(f"model {name!r}: {error}; pass a --model_preset or --model_overrides") from None
    shown = f" (preset {preset})" if preset else ""
    return LoadedModel(name, "registry", f"registered architecture {name}{shown}, random init", name, "backbone",
                       config)  # fmt: skip


def _lmforge_checkpoint(path: Path) -> LoadedModel:
    from lmforge.models.registry import config_from_dict

    checkpoint = path
    if _is_checkpoint_dir(path):
        check_checkpoint(path)
        kind, shown = "checkpoint", f"lmforge checkpoint {path}"
    elif (path / CONFIG_FILE).is_file():  # a hand-assembled directory without a manifest is taken as it is
        kind, shown = "checkpoint", f"lmforge checkpoint {path} (no manifest)"
    else:
        checkpoint = find_latest_checkpoint(path)
        if checkpoint is None:
            raise ValueError(f"{path} contains no complete checkpoint-STEP directory")
        kind, shown = "run", f"lmforge run {path} -> {checkpoint.name}"
    info = load_model_info(checkpoint)
    config = config_from_dict(info["model"], info["config"])
    tokenizer = checkpoint / TOKENIZER_DIR
    return LoadedModel(str(path), kind, f"{shown} ({info['model']}, {info['task']})", info["model"], info["task"],
                       config, load_weights(checkpoint), info=info, path=checkpoint, checkpoint=checkpoint,
                       tokenizer_dir=tokenizer if tokenizer.is_dir() else None)  # fmt: skip


def _lmforge_export(path: Path, hf: dict[str, Any]) -> LoadedModel:
    """Format ``lmforge``: our state dict under ``model.``. A task-head export (``lmforge_head``) gives its backbone,
    as HF ``*For*`` checkpoints do (``lmforge predict``/``evaluate clue`` read fine-tuned runs)."""
    from lmforge.models.registry import config_from_dict

    arch, task = hf["lmforge_model"], hf.get("lmforge_task", "mlm")
    if not (isinstance(arch, str) and isinstance(task, str) and isinstance(hf.get("lmforge_config"), dict)):
        raise ValueError(f"{path / CONFIG_FILE}: lmforge_model, lmforge_task and lmforge_config are malformed")
    config = config_from_dict(arch, hf["lmforge_config"])
    weights = {k.removeprefix("model."): v for k, v in read_weights(path).items()}
    shown = f"lmforge export {path} (format lmforge: {arch}, {task}"
    if task not in LM_TASKS:  # a task head (or a bare backbone): keep the backbone
        if any(k.startswith("backbone.") for k in weights):
            weights = {k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")}
        task, shown = "backbone", shown + ": backbone only"
    info = {"model": arch, "task": task, "config": hf["lmforge_config"]}
    return LoadedModel(str(path), "export", shown + ")", arch, task, config, weights, info=info, path=path,
                       tokenizer_dir=_tokenizer_dir(path))  # fmt: skip


def _architecture_name(hf: dict[str, Any]) -> str | None:
    names = hf.get("architectures")
    return names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None


def _hf_directory(path: Path, hf: dict[str, Any], config_only: bool) -> LoadedModel:
    model_type = hf["model_type"]
    arch, prefix, read_config, read_state = HF_TYPES[model_type]
    convert = importlib.import_module(f"lmforge.models.{arch}.convert")
    config = getattr(convert, read_config)(hf)
    head_class = _architecture_name(hf) or f"{model_type} weights"
    origin = "lmforge export (format native)" if (path / "lmforge_tokenizer.json").is_file() else "Hugging Face"
    shown = f"{origin} directory {path} (model_type {model_type} -> lmforge {arch}"
    if config_only:
        return LoadedModel(str(path), "hf", f"{shown}, config only: random init)", arch, "backbone", config, path=path)
    sd = read_weights(path)
    if not any(k.startswith(prefix) for k in sd):  # a bare *Model: its keys carry no prefix
        sd = {prefix + k: v for k, v in sd.items()}
    lm_head = {
        "bert": any(k.startswith("cls.predictions.") for k in sd),
        "gpt": "lm_head.weight" in sd or head_class.endswith(("LMHeadModel", "ForCausalLM")),
        "reformer": "lm_head.decoder.weight" in sd,
        "canine": False,  # HF has no CANINE pretraining head
    }[arch]
    if lm_head:
        task = "clm" if arch == "gpt" or config.is_decoder else "mlm"
        weights = getattr(convert, read_state)(sd, config)
        shown += f", {head_class} weights)"
    else:
        task = "backbone"
        weights = getattr(convert, read_state)(sd, config) if arch == "canine" else {
            k.removeprefix("backbone."): v for k, v in getattr(convert, read_state)(sd, config, head=False).items()
        }  # fmt: skip
        shown += f", {head_class} weights: backbone only)"
    info = {"model": arch, "task": task, "config": dataclasses.asdict(config)}
    tokenizer = _tokenizer_dir(path)
    return LoadedModel(str(path), "hf", shown, arch, task, config, weights, info=info, path=path,
                       tokenizer_dir=tokenizer)  # fmt: skip


def _junnyu_type(hf: dict[str, Any], path: Path, config_only: bool) -> str | None:
    if hf.get("model_type") in JUNNYU_TYPES:
        return hf["model_type"]
    if hf.get("model_type") is not None or config_only:
        return None
    keys = read_weights(path).keys()  # FLASHQuad_pytorch configs may lack model_type: detect by key prefix
    return next((t for t, (_, prefix, _) in JUNNYU_TYPES.items() if any(k.startswith(prefix) for k in keys)), None)


def _junnyu_directory(path: Path, hf: dict[str, Any], model_type: str, config_only: bool) -> LoadedModel:
    arch, prefix, read_config = JUNNYU_TYPES[model_type]
    module = "gau_alpha" if arch == "gau-alpha" else "flash"
    convert = importlib.import_module(f"lmforge.models.{module}.convert")
    config = getattr(convert, read_config)(hf)
    shown = f"JunnYu directory {path} (model_type {model_type} -> lmforge {arch}"
    if config_only:
        return LoadedModel(str(path), "junnyu", f"{shown}, config only: random init)", arch, "backbone", config)
    sd = read_weights(path)
    head_class = _architecture_name(hf) or "MaskedLM weights"
    if arch == "gau-alpha":  # its MLM head has no parameters: task heads of fine-tuned ports are dropped
        if any(k.startswith(prefix) for k in sd):
            sd = {k: v for k, v in sd.items() if k.startswith((prefix, "cls."))}
        weights = convert.from_junnyu_state_dict(sd, config)
    else:
        weights = convert.from_junnyu_state_dict(sd, config, model=arch)
    info = {"model": arch, "task": "mlm", "config": dataclasses.asdict(config)}
    return LoadedModel(str(path), "junnyu", f"{shown}, {head_class})", arch, "mlm", config, weights, info=info,
                       path=path, tokenizer_dir=_tokenizer_dir(path))  # fmt: skip


def _lucidrains_file(path: Path, overrides: dict[str, Any]) -> LoadedModel:
    from lmforge.models.flash import convert

    sd = read_weights(path)
    if not convert.is_lucidrains_state_dict(sd):
        raise ValueError(
            f"{path} is a weights file but not a lucidrains FLASHTransformer state dict (token_emb, layers.N, "
            "to_logits); other architectures load from a directory with its config.json"
        )
    config = convert.from_lucidrains_config(sd, overrides)
    weights, with_head = convert.from_lucidrains_state_dict(sd, config)
    task = ("clm" if config.is_decoder else "mlm") if with_head else "backbone"
    if not with_head:
        weights = {k.removeprefix("backbone."): v for k, v in weights.items()}
    note = task if with_head else "backbone only: to_logits is untied, lmforge's FLASH head is tied"
    shown = f"lucidrains FLASHTransformer state dict {path} (-> lmforge flash, {note})"
    info = {"model": "flash", "task": task, "config": dataclasses.asdict(config)}
    return LoadedModel(str(path), "lucidrains", shown, "flash", task, config, weights, info=info, path=path)
