"""Untrusted files: a checkpoint, training state, shard or run config crafted to run code never runs it, and
config/tokenizer files with unexpected fields or types are rejected with a message naming the file and field.

Every payload below would create ``PWNED`` (a marker file) if it were ever unpickled or constructed; each test
asserts the clear error *and* that the marker does not exist.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import lmforge
from lmforge import cli
from lmforge.data.shards import open_shards
from lmforge.data.tokenizer import META_FILE, load_tokenizer
from lmforge.models.registry import config_from_dict, config_to_dict
from lmforge.train.checkpoint import (
    CONFIG_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    _sha256,
    load_model,
    load_model_info,
    load_training_state,
    save_checkpoint,
)
from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain


class Payload:
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _checkpoint(run_dir: Path, step: int = 4) -> Path:
    model = lmforge.build_model("bert", task="mlm", preset="tiny")
    info = {"model": "bert", "task": "mlm", "config": config_to_dict(model.config)}
    return save_checkpoint(run_dir, step, weights=model.state_dict(), model_info=info, training_state={"x": 1})


def _reseal(path: Path) -> None:
    """Rewrite the manifest so the tampered files pass the integrity check: only the loader stands in the way."""
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    for name in manifest["files"]:
        file = path / name
        manifest["files"][name] = {"bytes": file.stat().st_size, "sha256": _sha256(file)}
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_training_state_is_refused_not_executed(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "PWNED"
    path = _checkpoint(tmp_path / "run")
    with open(path / STATE_FILE, "wb") as f:
        (torch.save if writer == "torch.save" else pickle.dump)({"train": Payload(marker)}, f)
    _reseal(path)
    with pytest.raises(ValueError, match="it was not executed") as error:
        load_training_state(path)
    assert "weights_only=False" in str(error.value) and "Do not" in str(error.value)
    assert not marker.exists()


def test_resuming_a_run_from_a_malicious_state_stops_before_running_it(mlm_data: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    args = dict(model="bert", model_preset="tiny", max_seq_length=32, per_device_train_batch_size=4, max_steps=2)
    args |= dict(save_steps=2, do_eval=False, disable_tqdm=True, report_to="none")
    pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), **args))
    torch.save({"train": Payload(marker)}, run / "checkpoint-2" / STATE_FILE)
    _reseal(run / "checkpoint-2")
    with pytest.raises(ValueError, match="not a plain training state"):
        pretrain(PretrainArgs(train_dir=str(mlm_data), output_dir=str(run), resume_from_checkpoint="auto", **args))
    assert not marker.exists()


def test_pickle_in_place_of_the_weights_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    path = _checkpoint(tmp_path / "run")
    with open(path / MODEL_FILE, "wb") as f:
        pickle.dump({"weight": Payload(marker)}, f)
    _reseal(path)
    with pytest.raises(ValueError, match="cannot read the weights"):
        load_model(path)
    assert not marker.exists()


def test_pickled_object_array_in_a_shard_is_refused(mlm_data: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    data = tmp_path / "data"
    shutil.copytree(mlm_data, data)
    split = data / "shards" / "train"
    (npy,) = sorted(split.glob("seqs-*.npy"))
    np.save(npy, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"Python objects|allow_pickle"):
        open_shards(split).read([0])
    assert not marker.exists()


def test_yaml_run_config_cannot_construct_objects(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    config = tmp_path / "run.yaml"
    config.write_text(f'model: bert\nrun_name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--config", str(config), "--output_dir", str(tmp_path / "out")])
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [("model: bert\nbogus_field: 3\n", "bogus_field"), ("max_steps: many\n", "max_steps")],
)
def test_run_config_with_unexpected_fields_or_types_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture, text: str, message: str
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--config", str(config), "--output_dir", str(tmp_path / "out")])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c | {"hidden_size": "32"}, "'hidden_size' must be"),
        (lambda c: c | {"hidden_size": 32.5}, "'hidden_size' must be"),
        (lambda c: c | {"num_hidden_layers": True}, "'num_hidden_layers' must be"),
        (lambda c: c | {"layer_norm_eps": [1e-12]}, "'layer_norm_eps' must be"),
        (lambda c: c | {"position_embedding_type": "alibi"}, "'position_embedding_type' must be"),
        (lambda c: c | {"__class__": "os.system"}, "unknown fields"),
    ],
)
def test_model_config_with_unexpected_fields_or_types_is_rejected(edit, message: str) -> None:
    config = config_to_dict(lmforge.build_model("bert", task="mlm", preset="tiny").config)
    assert config_from_dict("bert", config) is not None  # the untouched dict loads
    with pytest.raises(ValueError, match=message):
        config_from_dict("bert", edit(config))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "not an lmforge checkpoint config"),
        ('{"model": "bert"}', "not an lmforge checkpoint config"),
        ('{"model": ["bert"], "task": "mlm", "config": {}}', "must be strings"),
        ('{"model": "bert", "task": "mlm", "config": "hidden_size=32"}', "must be strings and config an object"),
        ("\xff\xfe not json", "cannot read"),
    ],
)
def test_checkpoint_config_json_of_the_wrong_shape_is_rejected(tmp_path: Path, content: str, message: str) -> None:
    path = _checkpoint(tmp_path / "run")
    (path / CONFIG_FILE).write_text(content, encoding="latin-1")
    with pytest.raises(ValueError, match=message):
        load_model_info(path)


def _tokenizer_copy(mlm_data: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "tokenizer"
    shutil.copytree(mlm_data / "tokenizer", directory)
    return directory


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m | {"post_load_hook": "os.system"}, "unexpected fields"),
        (lambda m: m | {"vocab_size": "200"}, "'vocab_size' must be a JSON int"),
        (lambda m: m | {"special_tokens": ["[PAD]"]}, "'special_tokens' must be a JSON dict"),
        (lambda m: m | {"special_tokens": m["special_tokens"] | {"pad": 0}}, r"special_tokens\['pad'\] must be a str"),
        (lambda m: m | {"options": None}, "'options' must be a JSON dict"),
        (lambda m: [m], "must hold a JSON object"),
    ],
)
def test_tokenizer_meta_with_unexpected_fields_or_types_is_rejected(
    mlm_data: Path, tmp_path: Path, edit, message: str
) -> None:
    directory = _tokenizer_copy(mlm_data, tmp_path)
    meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    load_tokenizer(directory)  # the untouched copy loads
    (directory / META_FILE).write_text(json.dumps(edit(meta)), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_tokenizer(directory)


@pytest.mark.parametrize("content", [b"", b"{not json", b"\x80\x81", b'{"model": 5}'])
def test_broken_tokenizer_files_are_value_errors(mlm_data: Path, tmp_path: Path, content: bytes) -> None:
    directory = _tokenizer_copy(mlm_data, tmp_path)
    (directory / "tokenizer.json").write_bytes(content)
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        load_tokenizer(directory)
    (directory / META_FILE).write_bytes(content)
    with pytest.raises(ValueError, match=META_FILE):
        load_tokenizer(directory)
