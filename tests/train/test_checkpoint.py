"""Checkpoints: atomic layout, manifest validation, rotation, RNG capture, loading without training code."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import lmforge
from lmforge.models.registry import config_to_dict
from lmforge.train.checkpoint import (
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    capture_rng_state,
    find_latest_checkpoint,
    list_checkpoints,
    load_model,
    load_training_state,
    resolve_checkpoint,
    restore_rng_state,
    rotate_checkpoints,
    save_checkpoint,
    verify_checkpoint,
)


def _tiny():
    model = lmforge.build_model("bert", task="mlm", preset="tiny")
    info = {"model": "bert", "task": "mlm", "config": config_to_dict(model.config)}
    return model, info


def _save(run_dir, step, model, info, **kw):
    return save_checkpoint(run_dir, step, weights=model.state_dict(), model_info=info, **kw)


def test_checkpoint_loads_without_training_code(tmp_path) -> None:
    model, info = _tiny()
    path = _save(tmp_path, 3, model, info, training_state={"step": 3})
    assert path.name == "checkpoint-3" and verify_checkpoint(path) is None
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {MODEL_FILE, "config.json", STATE_FILE}
    loaded = load_model(path)
    assert not loaded.training
    ids = torch.randint(5, 100, (2, 9))
    torch.testing.assert_close(loaded(ids).logits, model.eval()(ids).logits, rtol=0, atol=0)
    assert load_model(tmp_path).config == model.config  # a run directory resolves to its newest checkpoint


def test_training_state_loads_weights_only(tmp_path) -> None:
    model, info = _tiny()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randint(5, 100, (2, 5)), labels=torch.randint(5, 100, (2, 5))).loss.backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": capture_rng_state(), "train": {"step": 1, "window": {}}}
    path = _save(tmp_path, 1, model, info, training_state=state)
    loaded = load_training_state(path)  # torch.load(weights_only=True) inside
    assert loaded["train"]["step"] == 1 and "torch" in loaded["rng"]


def test_rng_states_round_trip() -> None:
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn())
    random.random(), np.random.rand(), torch.rand(3)
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn()) == expected


def test_incomplete_and_corrupt_checkpoints_are_skipped(tmp_path) -> None:
    model, info = _tiny()
    _save(tmp_path, 1, model, info)
    _save(tmp_path, 2, model, info)
    newest = _save(tmp_path, 3, model, info)
    (tmp_path / ".tmp-checkpoint-4-999999").mkdir()  # a save interrupted before its rename
    (tmp_path / "checkpoint-5").mkdir()  # not a checkpoint: no manifest
    assert find_latest_checkpoint(tmp_path) == newest
    weights = newest / MODEL_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, different content: only the sha256 notices
    weights.write_bytes(bytes(data))
    assert "sha256" in verify_checkpoint(newest)
    assert find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    (tmp_path / "checkpoint-2" / MODEL_FILE).write_bytes(b"truncated")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint-1"


def test_rotation_keeps_newest_and_removes_stale_temporaries(tmp_path) -> None:
    model, info = _tiny()
    for step in (10, 20, 30, 40):
        _save(tmp_path, step, model, info)
    (tmp_path / ".tmp-checkpoint-50-1").mkdir()
    rotate_checkpoints(tmp_path, 2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [30, 40]
    assert not (tmp_path / ".tmp-checkpoint-50-1").exists()


def test_resaving_a_step_replaces_it(tmp_path) -> None:
    model, info = _tiny()
    _save(tmp_path, 5, model, info, training_state={"step": 5, "version": 1})
    _save(tmp_path, 5, model, info, training_state={"step": 5, "version": 2})
    assert load_training_state(tmp_path / "checkpoint-5")["version"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-5"]


def test_resolve_checkpoint_errors_are_value_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="neither"):
        resolve_checkpoint(tmp_path / "missing")


def test_ctrl_c_during_a_save_finishes_the_checkpoint_then_interrupts(tmp_path, monkeypatch) -> None:
    """SIGINT arriving while torch.save writes the training state used to surface as a RuntimeError from inside
    torch's zip writer (a traceback, exit 1, a half-written temporary); now the checkpoint completes and verifies,
    then KeyboardInterrupt is raised, and the SIGINT handler is restored."""
    import os
    import signal

    from lmforge.train import checkpoint

    model, info = _tiny()
    write = checkpoint._write_files

    def interrupted_write(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of writing
        return write(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "_write_files", interrupted_write)
    # Python's own Ctrl-C handler, as in a terminal (a suite started with nohup or `&` inherits SIGINT ignored)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _save(tmp_path, 3, model, info, training_state={"step": 3})
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    assert verify_checkpoint(tmp_path / "checkpoint-3") is None
    assert not list(tmp_path.glob(".tmp-*"))
