"""Reading the files of a model source, for ``lmforge.models.loading``: weights (safetensors, sharded, or
``torch.load(weights_only=True)`` only), an lmforge checkpoint's ``config.json``, and telling an lmforge checkpoint
directory and a tokenizer directory by their files."""

from __future__ import annotations

import contextlib
import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from lmforge.train.checkpoint import CONFIG_FILE, MODEL_FILE

__all__ = ["TOKENIZER_FILES", "WEIGHT_FILES", "load_model_info", "load_weights", "read_weights"]

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("lmforge_tokenizer.json", "vocab.txt", "tokenizer.json", "vocab.json", "spiece.model")


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
