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

Code: ``model_files.py`` reads weights and configs, ``sources.py`` holds ``LoadedModel`` and one reader per kind of
source; this module resolves a source string to one of them. Every name stays importable from here.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from lmforge.models.model_files import (
    TOKENIZER_FILES,
    WEIGHT_FILES,
    _is_checkpoint_dir,
    _read_json,
    load_model_info,
    load_weights,
    read_weights,
)
from lmforge.models.sources import (
    HF_TYPES,
    JUNNYU_TYPES,
    LM_TASKS,
    LoadedModel,
    _hf_directory,
    _junnyu_directory,
    _junnyu_type,
    _lmforge_checkpoint,
    _lmforge_export,
    _lucidrains_file,
    _registry,
    check_tokenizer_fits,
)
from lmforge.train.checkpoint import CONFIG_FILE

__all__ = [
    "HF_TYPES",
    "JUNNYU_TYPES",
    "LM_TASKS",
    "TOKENIZER_FILES",
    "WEIGHT_FILES",
    "LoadedModel",
    "check_source",
    "check_tokenizer_fits",
    "load_model",
    "load_model_info",
    "load_weights",
    "read_weights",
]


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
