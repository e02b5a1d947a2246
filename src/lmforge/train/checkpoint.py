"""Checkpoints: ``checkpoint-STEP/`` directories written atomically, found again after crashes, loadable anywhere.

Layout of one checkpoint (R12)::

    checkpoint-STEP/
      model.safetensors     weights (fp32 as trained), no shared tensors
      config.json           {"model": registry name, "task": "mlm"|"clm", "config": {...dataclass fields...}}
      tokenizer/            a copy of the tokenizer files (load with lmforge.data.tokenizer.load_tokenizer)
      training_state.pt     optimizer, step counters, loader position and RNG states of every rank
      manifest.json         sha256 and size of every file above; written last

Loading a model from a checkpoint (or any other source) is ``lmforge.models.loading``'s job; ``load_model``,
``load_model_info`` and ``load_weights`` stay importable here and delegate to it. A checkpoint rebuilds from
``config.json`` + ``model.safetensors`` with the registry only: no training code, no pickle.
``training_state.pt`` holds only tensors and primitive containers, so it loads with
``torch.load(weights_only=True)`` (no arbitrary code execution from a checkpoint).

Atomicity: everything is written into ``.tmp-checkpoint-STEP-PID/`` (each file fsynced, then the directory), which
is renamed to ``checkpoint-STEP`` in one ``os.replace``; a crash leaves either the old state or the complete new
checkpoint, never a half-written one. Every load verifies the manifest (sizes and sha256; ``resolve_checkpoint``,
``load_model``, resume): a checkpoint damaged later (disk full, bit rot, manual edits) is an error naming the
file, and ``find_latest_checkpoint`` (``--resume_from_checkpoint auto``) skips it, saying so on stderr, and falls
back to the previous valid one. Untrusted files: the weights never go through pickle, the training state only
through torch's restricted unpickler (a crafted pickle is a ``ValueError``, never executed), and ``config.json``
is checked field by field (``registry.config_from_dict``). Tests: ``tests/reliability``.

References: HF ``Trainer._save_checkpoint``/``_rotate_checkpoints`` (names ``checkpoint-STEP``,
``save_total_limit``); torchtune's ``recipe_state.pt``; gpt-neox's RNG states in checkpoints.

The run directory lock (``train/run_lock.py``) and the RNG states (``train/rng.py``) stay importable from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import Tensor, nn

from lmforge.train.rng import capture_rng_state, restore_rng_state  # re-exported
from lmforge.train.run_lock import LOCK_FILE, RunLockedError, acquire_run_lock, release_run_lock  # re-exported

__all__ = [
    "CONFIG_FILE",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "TOKENIZER_DIR",
    "CheckpointWriteError",
    "RunLockedError",
    "acquire_run_lock",
    "capture_rng_state",
    "check_checkpoint",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_model",
    "load_model_info",
    "load_training_state",
    "load_weights",
    "release_run_lock",
    "resolve_checkpoint",
    "restore_rng_state",
    "rotate_checkpoints",
    "save_checkpoint",
    "verify_checkpoint",
]

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "training_state.pt"
MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class CheckpointWriteError(ValueError):
    """A checkpoint could not be written (disk full, ...): a ``ValueError``, so the CLI prints it as one line."""


# ----------------------------------------------------------------------------- writing


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unshared(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous CPU copies; shared storage is an error (safetensors cannot store it and our heads avoid it)."""
    out: dict[str, Tensor] = {}
    seen: dict[tuple[int, int], str] = {}
    for name, tensor in weights.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if tensor.numel() and key in seen:
            raise ValueError(f"weights {seen[key]!r} and {name!r} share memory; save one of them only")
        seen[key] = name
        out[name] = tensor.detach().to("cpu").contiguous()
    return out


def _write_files(
    tmp: Path,
    step: int,
    writing: list[Path],
    weights: Mapping[str, Tensor],
    model_info: Mapping[str, Any],
    training_state: Mapping[str, Any] | None,
    tokenizer_dir: str | Path | None,
) -> None:
    """The files of a checkpoint into ``tmp``, each fsynced, the manifest last; appends each file to ``writing``."""
    save_file(_unshared(weights), str(tmp / MODEL_FILE), metadata={"format": "pt"})
    _fsync_path(tmp / MODEL_FILE)
    writing.append(tmp / CONFIG_FILE)
    _fsync_write(tmp / CONFIG_FILE, (json.dumps(dict(model_info), indent=2, sort_keys=True) + "\n").encode())
    if training_state is not None:
        writing.append(tmp / STATE_FILE)
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(dict(training_state), f)
            f.flush()
            os.fsync(f.fileno())
    if tokenizer_dir is not None:
        writing.append(tmp / TOKENIZER_DIR)
        shutil.copytree(tokenizer_dir, tmp / TOKENIZER_DIR)
        for path in (tmp / TOKENIZER_DIR).rglob("*"):
            if path.is_file():
                _fsync_path(path)

    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {
        "format": 1,
        "step": step,
        "files": {str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files},
    }
    writing.append(tmp / MANIFEST_FILE)
    _fsync_write(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    _fsync_path(tmp)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    weights: Mapping[str, Tensor],
    model_info: Mapping[str, Any],
    training_state: Mapping[str, Any] | None = None,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Write ``run_dir/checkpoint-STEP`` atomically and return its path (an existing one is replaced).

    ``model_info`` is ``{"model": name, "task": task, "config": {...}}`` (written as config.json). Ctrl-C during the
    write is held back until the checkpoint is complete, then raised (``utils.deferred_interrupt``).
    """
    from lmforge.utils import deferred_interrupt

    with deferred_interrupt():
        return _save_checkpoint(Path(run_dir), step, weights, model_info, training_state, tokenizer_dir)


def _save_checkpoint(
    run_dir: Path,
    step: int,
    weights: Mapping[str, Tensor],
    model_info: Mapping[str, Any],
    training_state: Mapping[str, Any] | None,
    tokenizer_dir: str | Path | None,
) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"checkpoint-{step}"
    tmp = run_dir / f".tmp-checkpoint-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    writing = [tmp / MODEL_FILE]  # the file being written, for the error message
    try:
        _write_files(tmp, step, writing, weights, model_info, training_state, tokenizer_dir)
    except (OSError, SafetensorError) as error:  # disk full, quota, I/O error: one line, the old state untouched
        shutil.rmtree(tmp, ignore_errors=True)
        previous = find_latest_checkpoint(run_dir, deep=False, quiet=True)
        reason = os.strerror(error.errno) if getattr(error, "errno", None) else str(error).strip()
        intact = f"{previous} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointWriteError(
            f"cannot write {final / writing[-1].relative_to(tmp)}: {reason}; checkpoint-{step} was not saved (its "
            f"partial files are removed) and {intact}; free space and resume with --resume_from_checkpoint auto"
        ) from None

    if final.exists():  # re-saving a step (e.g. a run restarted without resume): swap, then delete the old one
        old = run_dir / f".old-checkpoint-{step}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _fsync_path(run_dir)
    return final


# ----------------------------------------------------------------------------- finding and validating


def verify_checkpoint(path: str | Path, *, deep: bool = True) -> str | None:
    """``None`` if ``path`` is a complete checkpoint, else the reason why not. ``deep`` also checks sha256.

    The manifest is untrusted input too: wrong types or names that leave the directory make it invalid.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        return f"{path} has no {MANIFEST_FILE} (incomplete or not a checkpoint)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        return f"{manifest_path} is unreadable: {error}"
    if not isinstance(files, dict):
        return f"{manifest_path} is malformed: 'files' is a {type(files).__name__}, not a mapping"
    for name in (MODEL_FILE, CONFIG_FILE):
        if name not in files:
            return f"{path} has no {name} in its manifest"
    root = path.resolve()
    for name, entry in files.items():
        file = path / name
        if not file.resolve().is_relative_to(root):
            return f"{manifest_path} names {name!r}, outside the checkpoint"
        typed = isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)
        if not typed:
            return f"{manifest_path} is malformed: the entry of {name!r} needs integer 'bytes' and string 'sha256'"
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != entry["bytes"]:
            return f"{file} has {file.stat().st_size} bytes, the manifest says {entry['bytes']} (truncated?)"
        if deep and _sha256(file) != entry["sha256"]:
            return f"{file} does not match its sha256 in the manifest (corrupted)"
    return None


def check_checkpoint(path: str | Path) -> None:
    """``ValueError`` naming the damaged file if ``path`` fails ``verify_checkpoint``."""
    reason = verify_checkpoint(path)
    if reason is not None:
        raise ValueError(
            f"checkpoint {path} is damaged: {reason}. Use an earlier checkpoint; `--resume_from_checkpoint auto` "
            "falls back to the newest valid one by itself"
        )


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint-STEP`` directory (valid or not), oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def find_latest_checkpoint(run_dir: str | Path, *, deep: bool = True, quiet: bool = False) -> Path | None:
    """The newest checkpoint in ``run_dir`` that passes ``verify_checkpoint``; incomplete/corrupt ones are skipped,
    each with a line on stderr (unless ``quiet``) so a fallback to an older checkpoint never goes unnoticed."""
    for _, path in reversed(list_checkpoints(run_dir)):
        reason = verify_checkpoint(path, deep=deep)
        if reason is None:
            return path
        if not quiet:
            print(f"skipping checkpoint {path}: {reason}", file=sys.stderr, flush=True)
    return None


def rotate_checkpoints(
    run_dir: str | Path, keep: int | None, *, protect: int | Iterable[int] | None = None
) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (never those of the steps in ``protect``, e.g. the best so far
    and the newest healthy one), and stale temporary directories. Returns what was deleted."""
    run_dir = Path(run_dir)
    protect = {protect} if isinstance(protect, int) else set(protect or ())
    deleted = []
    for child in run_dir.glob(".tmp-checkpoint-*"):
        if child.name.rsplit("-", 1)[-1] != str(os.getpid()):
            shutil.rmtree(child, ignore_errors=True)
            deleted.append(child)
    if keep is not None:
        for step, path in list_checkpoints(run_dir)[:-keep]:
            if step not in protect:
                shutil.rmtree(path)
                deleted.append(path)
    return deleted


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory itself, or the newest valid checkpoint of a run directory. ``ValueError`` if none."""
    path = Path(path)
    if (path / MANIFEST_FILE).is_file() or (_CHECKPOINT_RE.match(path.name) and path.is_dir()):
        check_checkpoint(path)
        return path
    if (path / MODEL_FILE).is_file() and (path / CONFIG_FILE).is_file():
        return path  # a hand-assembled directory without a manifest is taken as it is
    if not path.is_dir():
        raise ValueError(f"{path} is neither a checkpoint nor a run directory")
    latest = find_latest_checkpoint(path)
    if latest is None:
        raise ValueError(f"{path} contains no complete checkpoint-STEP directory")
    return latest


# ----------------------------------------------------------------------------- loading (moved)
# Model loading lives in ``lmforge.models.loading`` (the one loader); these names stay importable from here.


def load_model_info(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint: ``{"model", "task", "config"}`` (``lmforge.models.loading``)."""
    from lmforge.models.loading import load_model_info as load_info

    return load_info(path)


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """The model of any source ``lmforge.models.loading.load_model`` resolves (a run, a checkpoint, an export, an
    HF directory, ...), built with its weights, in eval mode on ``device``; prints nothing."""
    from lmforge.models.loading import load_model as load

    return load(path, quiet=True).model.to(device)


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """``model.safetensors`` of a checkpoint (``lmforge.models.loading.load_weights``)."""
    from lmforge.models.loading import load_weights as load

    return load(path)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """``training_state.pt`` of a checkpoint, loaded with ``weights_only=True``."""
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise ValueError(f"{path} has no {STATE_FILE}: it can initialise a model but not resume a run")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message suggests weights_only=False: exactly what must never happen with an untrusted file
        lines = [line for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        first = (lines[0] if lines else type(error).__name__)[:300]
        raise ValueError(
            f"{file} is not a plain training state (tensors and containers): the restricted unpickler refused it "
            f"({first}). It may be damaged or crafted to run code; it was not executed. Do not load it with "
            "weights_only=False; resume from another checkpoint"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:  # truncated zip archive, unreadable file
        raise ValueError(f"cannot read {file} (truncated or corrupted?): {error}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{file} holds a {type(state).__name__}, not a training-state dict")
    return state
