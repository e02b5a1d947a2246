"""Fixtures of the export tests: a tiny trained MLM run (shared by the module), one torch thread per test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("tiny_data", Path(__file__).parents[1] / "train" / "tiny_data.py")
tiny_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_data)


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this folder runs on one torch thread (see ``one_thread`` in tests/conftest.py)."""


def _train(data: Path, out: Path, **kw) -> Path:
    from lmforge.train.config import PretrainArgs
    from lmforge.train.pretrain import pretrain

    args = dict(
        train_dir=str(data),
        output_dir=str(out),
        model="bert",
        model_preset="tiny",
        max_seq_length=32,
        per_device_train_batch_size=4,
        max_steps=3,
        save_steps=3,
        logging_steps=1,
        learning_rate=1e-3,
        max_eval_samples=8,
        disable_tqdm=True,
        report_to="none",
    )
    pretrain(PretrainArgs(**(args | kw)))
    return out


@pytest.fixture(scope="session")
def mlm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf")
    return _train(tiny_data.make_data(root / "data"), root / "run")


@pytest.fixture(scope="session")
def roformer_clm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf-clm")
    data = tiny_data.make_data(root / "data", objective="clm", sequence_length=24)
    return _train(data, root / "run", model_preset="roformer-tiny", max_seq_length=24)
