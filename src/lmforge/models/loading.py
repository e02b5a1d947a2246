"""The one model loader: every command that takes a model (pretrain, finetune, fill-mask, generate, evaluate,
export) resolves its source string here, and the loader says in one line what it chose.

Resolution order of ``load_model(source)``:

1. a registered architecture name (``lmforge models``; ``--model_preset``/``--model_overrides``): random init;
2. an lmforge run directory (its newest valid checkpoint) or ``checkpoint-STEP`` (manifest verified);
3. an lmforge export directory: format ``lmforge`` (config.json has ``lmforge_model``) or ``native`` (an HF
   directory that also carries ``lmforge_tokenizer.json``, read as 4.);
4. a Hugging Face directory (``config.json`` + ``model.safetensors``, sharded safetensors, or ``pytorch_model.bin``
   read with ``torch.load(weights_only=True)`` only) of model_type bert, roformer, gpt2, llama, canine or reformer,
   through the architecture's ``convert.py``. The head comes from the weights/``architectures``: ``*ForMaskedLM``,
   ``*LMHeadModel``/``*ForCausalLM`` load whole; ``*Model`` and fine-tuned ``*ForSequenceClassification``/
   ``*ForTokenClassification``/``*ForQuestionAnswering`` give the backbone only (their task head is dropped);
5. JunnYu GAU-alpha / FLASH-Quad / FLASH directories (model_type ``gau_alpha``/``flash_quad``/``flash``, or their
   key prefixes), through ``models/gau_alpha/convert.py`` and ``models/flash/convert.py``;
6. a lucidrains ``FLASHTransformer`` state dict file (``.pt``/``.bin`` weights only, or ``.safetensors``): sizes are
   inferred from the shapes, ``group_size``/``is_decoder``/``shift_tokens`` must come from ``--model_overrides``.

The architecture always comes from the source; a ``--model`` naming another one is an error. ``transformers`` is
never imported: an HF directory is config.json + tensors + our converters. Every user error is one ``ValueError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import pickle
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from lmforge.train.checkpoint import CONFIG_FILE, MODEL_FILE, TOKENIZER_DIR, check_checkpoint, find_latest_checkpoint

__all__ = [
    "LoadedModel",
    "check_source",
    "check_tokenizer_fits",
    "load_model",
    "load_model_info",
    "load_weights",
    "read_weights",
]

LM_TASKS = ("mlm", "clm")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("lmforge_tokenizer.json", "vocab.txt", "tokenizer.json", "vocab.json", "spiece.model")
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


# ----------------------------------------------------------------------------- reading files


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """``model.safetensors`` of an lmforge checkpoint directory (safetensors never runs code)."""
    return read_weights(Path(path) / MODEL_FILE)


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file, a ``.bin``/``.pt`` file (``torch.load(weights_only=True)`` only: a pickle
    that would run code is refused), a sharded ``*.index.json``, or of the weights file of an HF directory."""
    path = Path(path)
    if path.is_dir():
        found = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
        if found is None:
            raise ValueError(f"{path} has no weights ({', '.join(WEIGHT_FILES)})")
        path = found
    if path.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"cannot read the shard index {path}: {error!r}") from None
        return {k: v for shard in shards for k, v in read_weights(path.parent / Path(shard).name).items()}
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, SafetensorError) as error:  # truncated or damaged: nothing was loaded, nothing changed
        raise ValueError(
            f"cannot read the weights {path} (damaged or truncated?): {error}; nothing was loaded and the other files "
            f"in {path.parent} are untouched: restore this one (re-export, re-download or an earlier checkpoint)"
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a plain tensor file (loaded with weights_only=True): {first}") from None
    if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return weights


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {file}: {error}") from None


def load_model_info(path: str | Path) -> dict[str, Any]:
    """``config.json`` of an lmforge checkpoint: ``{"model", "task", "config"}`` (checked, it is untrusted)."""
    file = Path(path) / CONFIG_FILE
    info = _read_json(file)
    if not isinstance(info, dict) or not {"model", "task", "config"} <= set(info):
        raise ValueError(f"{file} is not an lmforge checkpoint config (needs model, task and config)")
    if not (isinstance(info["model"], str) and isinstance(info["task"], str) and isinstance(info["config"], dict)):
        kinds = {key: type(info[key]).__name__ for key in ("model", "task", "config")}
        raise ValueError(f"{file}: model and task must be strings and config an object, got {kinds}")
    return info


def _is_checkpoint_dir(path: Path) -> bool:
    """An lmforge checkpoint: it has a manifest, or is named ``checkpoint-N`` (a damaged one: a clear error) and is
    not a Hugging Face Trainer checkpoint (same name pattern, a ``config.json`` with a ``model_type``)."""
    if (path / "manifest.json").is_file():
        return True
    if re.fullmatch(r"checkpoint-\d+", path.name) is None:
        return False
    with contextlib.suppress(OSError, ValueError):
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        if isinstance(config, dict) and "model_type" in config:
            return False
    return True


def _tokenizer_dir(directory: Path) -> Path | None:
    return directory if any((directory / name).is_file() for name in TOKENIZER_FILES) else None


# ----------------------------------------------------------------------------- the sources


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


def check_source(source: str | Path) -> bool:
    """Whether ``source`` is a registered architecture name (True) or an existing path (False); else ValueError.
    Cheap: commands call it before any work so that a typo fails first."""
    from lmforge.models.registry import list_models

    if str(source) in list_models():
        return True
    if not Path(source).exists():
        raise ValueError(
            f"model {str(source)!r} is neither a checkpoint, run, export or Hugging Face directory (no such path) "
            f"nor a registered architecture ({', '.join(list_models())})"
        )
    return False


def _resolve(source: str, *, preset: str | None, overrides: dict[str, Any], tokenizer: Any, config_only: bool):
    path = Path(source)
    if check_source(source):
        return _registry(source, preset, overrides, tokenizer), False
    if path.is_file():
        return _lucidrains_file(path, overrides), True  # consumes the overrides itself
    if _is_checkpoint_dir(path):
        return _lmforge_checkpoint(path), False  # verified against its manifest before anything is read
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        weights = [name for name in WEIGHT_FILES if (path / name).is_file()]
        if weights:
            raise ValueError(f"{path} has weights ({weights[0]}) but no config.json: cannot tell the architecture")
        return _lmforge_checkpoint(path), False  # a run directory (or a clear error)
    hf = _read_json(config_file)
    if not isinstance(hf, dict):
        raise ValueError(f"{config_file} is not a JSON object")
    if {"model", "task", "config"} <= set(hf):
        return _lmforge_checkpoint(path), False
    if not config_only and not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(f"{path} has a config.json but no weights ({', '.join(WEIGHT_FILES)})")
    if "lmforge_model" in hf:
        return _lmforge_export(path, hf), False
    if hf.get("model_type") in HF_TYPES:
        return _hf_directory(path, hf, config_only), False
    junnyu = _junnyu_type(hf, path, config_only)
    if junnyu is not None:
        return _junnyu_directory(path, hf, junnyu, config_only), False
    supported = sorted([*HF_TYPES, *JUNNYU_TYPES])
    raise ValueError(f"{config_file}: model_type {hf.get('model_type')!r} is not supported; lmforge reads {supported}")


def load_model(
    source: str | Path,
    /,
    *,
    model: str | None = None,
    task: str | None = None,
    new_head: bool = False,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    tokenizer: Any = None,
    with_tokenizer: bool = False,
    tokenizer_dir: str | Path | None = None,
    config_only: bool = False,
    quiet: bool = False,
) -> LoadedModel:
    """Resolve ``source`` (see the module docstring), print one line saying what was chosen, return it unbuilt.

    ``model``: the architecture the user named (``--model``); another one in the source is an error.
    ``task``: the model the caller needs ("backbone", "mlm", "clm"; None = whatever the source holds). A source with
    another head is an error, unless ``new_head``: then its backbone is kept and the head is initialised anew.
    ``preset``/``overrides``: for registry names (config fields; ``overrides`` also replace fields of a loaded config).
    ``tokenizer``: sets vocab_size/pad_token_id of a random init and must fit the loaded model.
    ``with_tokenizer``: also load the source's tokenizer (or ``tokenizer_dir``'s) into ``.tokenizer``, checked
    against the model, before the line is printed (so a mismatch is the only output).
    ``config_only``: read only the config (``--config_name``): the architecture, randomly initialised.
    """
    overrides = dict(overrides or {})
    loaded, consumed = _resolve(str(source), preset=preset, overrides=overrides, tokenizer=tokenizer,
                                config_only=config_only)  # fmt: skip
    if model is not None and model != loaded.arch:
        raise ValueError(f"--model {model} conflicts with {source}, which holds a {loaded.arch} model; drop --model")
    if loaded.kind != "registry" and overrides and not consumed:
        known = {f.name for f in dataclasses.fields(loaded.config)}
        if unknown := sorted(set(overrides) - known):
            raise ValueError(
                f"unknown config fields for model {loaded.arch!r}: {unknown}; known fields: {sorted(known)}"
            )
        loaded.config = dataclasses.replace(loaded.config, **overrides)
        loaded.info = {**loaded.info, "config": dataclasses.asdict(loaded.config)}
        loaded.description += f", overrides {overrides}"
    if config_only or loaded.kind == "registry":
        loaded.weights, loaded.task = None, task or "backbone"
        loaded.info = {"model": loaded.arch, "task": loaded.task, "config": dataclasses.asdict(loaded.config)}
    elif task is not None and task != loaded.task:
        if task != "backbone" and not new_head:
            raise ValueError(f"{source} holds a {loaded.task} model ({loaded.description}); this needs a {task} model")
        loaded.weights, loaded.fresh_head = loaded.backbone_weights(), task != "backbone"
        loaded.description += f"; its backbone with a new {task} head" if loaded.fresh_head else "; its backbone"
        loaded.task = task
    if tokenizer is not None:
        check_tokenizer_fits(loaded.config, tokenizer, what=str(source))
        loaded.tokenizer = tokenizer
    elif with_tokenizer:
        loaded.tokenizer = loaded.load_tokenizer(tokenizer_dir)
    if not quiet:  # on stderr: stdout stays the command's output (predictions, generated text)
        print(f"model: {loaded.description}", file=sys.stderr, flush=True)
    return loaded
