"""Checkpoint integrity: every file is in a sha256 manifest; truncation and corruption are detected on load
with a clear error naming the file, and ``--resume_from_checkpoint auto`` falls back to the newest valid
checkpoint and still finishes bitwise equal to an undamaged run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from reliability_helpers import run_tiny
from safetensors.torch import load_file

import lmforge
from lmforge.models.registry import config_to_dict
from lmforge.train.checkpoint import (
    CONFIG_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    check_checkpoint,
    find_latest_checkpoint,
    load_model,
    load_training_state,
    save_checkpoint,
    verify_checkpoint,
)


def _checkpoint(tmp_path: Path, step: int = 1, *, tokenizer_dir: Path | None = None) -> Path:
    model = lmforge.build_model("bert", task="mlm", preset="tiny")
    info = {"model": "bert", "task": "mlm", "config": config_to_dict(model.config)}
    state = {"train": {"step": step}, "optimizer": {"state": {}, "param_groups": []}}
    return save_checkpoint(
        tmp_path, step, weights=model.state_dict(), model_info=info, training_state=state, tokenizer_dir=tokenizer_dir
    )


def _truncate(file: Path, keep: float = 0.5) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


def _flip_byte(file: Path, position: int = -1) -> None:
    data = bytearray(file.read_bytes())
    data[position] ^= 0x01
    file.write_bytes(bytes(data))


def test_manifest_covers_every_file(mlm_data: Path, tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, tokenizer_dir=mlm_data / "tokenizer")
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    assert set(manifest["files"]) == on_disk and any(name.startswith("tokenizer/") for name in on_disk)
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())


@pytest.mark.parametrize("name", [MODEL_FILE, STATE_FILE, CONFIG_FILE, "tokenizer/lmforge_tokenizer.json"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_file_is_detected_with_its_name(mlm_data: Path, tmp_path: Path, name: str, damage: str) -> None:
    path = _checkpoint(tmp_path, tokenizer_dir=mlm_data / "tokenizer")
    file = path / name
    {"truncate": _truncate, "flip": _flip_byte, "delete": Path.unlink}[damage](file)
    reason = verify_checkpoint(path)
    assert reason is not None and str(file) in reason
    assert {"truncate": "truncated", "flip": "corrupted", "delete": "missing"}[damage] in reason
    with pytest.raises(ValueError, match="is damaged") as error:
        check_checkpoint(path)
    assert str(file) in str(error.value)
    with pytest.raises(ValueError, match="is damaged"):
        load_model(path)  # a checkpoint directory given directly is verified too, not only `auto`


def test_corruption_inside_the_weights_without_size_change_is_caught(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    _flip_byte(path / MODEL_FILE, position=len((path / MODEL_FILE).read_bytes()) // 2)  # a weight, not the header
    with pytest.raises(ValueError, match="sha256"):
        load_model(path)


@pytest.mark.parametrize(
    "manifest",
    [
        "not json {",
        "[]",
        '{"files": []}',
        '{"files": {"model.safetensors": 12, "config.json": {}}}',
        '{"files": {"model.safetensors": {"bytes": "12", "sha256": "x"}, "config.json": {}}}',
        '{"files": {"../../etc/passwd": {"bytes": 1, "sha256": "x"}, "model.safetensors": {}, "config.json": {}}}',
    ],
)
def test_malformed_manifest_makes_the_checkpoint_invalid_not_a_crash(tmp_path: Path, manifest: str) -> None:
    older = _checkpoint(tmp_path, 1)
    newer = _checkpoint(tmp_path, 2)
    (newer / MANIFEST_FILE).write_text(manifest)
    assert verify_checkpoint(newer) is not None
    assert find_latest_checkpoint(tmp_path, quiet=True) == older


def test_truncated_training_state_is_a_clear_error(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    _truncate(path / STATE_FILE)
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_training_state(path)  # the raw file, bypassing the manifest: still a ValueError naming it


def _train_losses(run: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]


def test_auto_resume_falls_back_to_the_previous_valid_checkpoint(
    mlm_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    straight, damaged = tmp_path / "straight", tmp_path / "damaged"
    run_tiny(mlm_data, straight)
    shutil.copytree(straight, damaged)
    _flip_byte(damaged / "checkpoint-8" / MODEL_FILE)  # the newest checkpoint rots on disk
    capsys.readouterr()

    result = run_tiny(mlm_data, damaged, resume_from_checkpoint="auto")
    out = capsys.readouterr()
    assert "skipping checkpoint" in out.err and "checkpoint-8" in out.err
    assert "resuming from" in out.out and "checkpoint-4" in out.out
    assert result["step"] == 8 and verify_checkpoint(damaged / "checkpoint-8") is None  # rewritten, valid again
    assert _train_losses(damaged) == _train_losses(straight)  # steps 5-8 recomputed, bitwise the same
    a, b = (load_file(str(run / "checkpoint-8" / MODEL_FILE)) for run in (straight, damaged))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_auto_resume_with_only_damaged_checkpoints_refuses_to_start_over(mlm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_tiny(mlm_data, run, max_steps=4)
    _truncate(run / "checkpoint-4" / MODEL_FILE)
    with pytest.raises(ValueError, match=r"no checkpoint .* is valid"):
        run_tiny(mlm_data, run, max_steps=4, resume_from_checkpoint="auto")
    assert (run / "checkpoint-4").is_dir()  # nothing was deleted


def test_auto_resume_before_the_first_checkpoint_starts_fresh(mlm_data: Path, tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_tiny(mlm_data, straight, max_steps=4)
    killed.mkdir()  # what a run killed at step 2 leaves: run records and a torn first save, no checkpoint
    (killed / "metrics.jsonl").write_text('{"step": 1, "train_loss": 5.0}\n{"step": 2, "train_l')
    (killed / "config.yaml").write_text("model: bert\n")
    (killed / ".tmp-checkpoint-4-12345").mkdir()
    run_tiny(mlm_data, killed, max_steps=4, resume_from_checkpoint="auto")
    assert _train_losses(killed) == _train_losses(straight)
    assert not (killed / ".tmp-checkpoint-4-12345").exists()


def test_explicit_resume_from_a_damaged_checkpoint_names_the_file(mlm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_tiny(mlm_data, run, max_steps=4)
    _truncate(run / "checkpoint-4" / STATE_FILE)
    with pytest.raises(ValueError, match=f"cannot resume from .*{STATE_FILE}.*truncated"):
        run_tiny(mlm_data, run, max_steps=8, resume_from_checkpoint=str(run / "checkpoint-4"))
