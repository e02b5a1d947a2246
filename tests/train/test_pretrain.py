"""``pretrain()`` in-process on tiny data: run directory records, determinism, options, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lmforge import cli
from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain
from tiny_args import tiny_pretrain

TINY = tiny_pretrain(model="bert", per_device_eval_batch_size=8, warmup_steps=2, max_steps=6, logging_steps=2,
                     save_steps=3, max_eval_samples=16)  # fmt: skip


def _run(data: Path, out: Path, **kw) -> dict:
    return pretrain(PretrainArgs(train_dir=str(data), output_dir=str(out), **(TINY | kw)))


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_directory_records_everything(mlm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = _run(mlm_data, run, report_to="tensorboard", eval_steps=3, save_total_limit=1)
    assert result["step"] == 6 and result["eval_predictions"] > 0
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "env.json",
        "metrics.jsonl",
        "loss.png",
        "tensorboard",
        "all_results.json",
        "checkpoint-6",
    }
    assert not (run / "checkpoint-3").exists()  # save_total_limit=1
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    env = json.loads((run / "env.json").read_text())
    assert env["versions"]["torch"] == torch.__version__.split("+")[0] or env["versions"]["torch"].startswith("2.")
    assert {"git_commit", "device", "torch_num_threads", "model_config", "parameters"} <= set(env)
    logged = [r for r in _records(run) if "train_loss" in r]
    assert [r["step"] for r in logged] == [2, 4, 6]
    assert {"learning_rate", "grad_norm", "tokens_per_s", "samples_per_s", "train_accuracy", "elapsed_s"} <= set(
        logged[0]
    )
    # samples/s (seed 003's FPS) is sequences over the same time as tokens/s; packed sequences are nearly full
    assert 0.5 * 32 < logged[0]["tokens_per_s"] / logged[0]["samples_per_s"] <= 32
    assert [r["step"] for r in _records(run) if "eval_loss" in r] == [3, 6]
    # config.yaml is the resolved PretrainArgs and runs again as --config
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["objective"] == "mlm" and saved["tokenizer_dir"].endswith("tokenizer")
    values = cli._stage_parser("pretrain", cli.STAGES["pretrain"]).parse_args(["--config", str(run / "config.yaml")])
    assert values.max_steps == 6 and values.output_dir == str(run)


def test_same_seed_same_losses(mlm_data: Path, tmp_path: Path) -> None:
    _run(mlm_data, tmp_path / "a", logging_steps=1)
    _run(mlm_data, tmp_path / "b", logging_steps=1)
    losses = [[r["train_loss"] for r in _records(tmp_path / x) if "train_loss" in r] for x in "ab"]
    assert len(losses[0]) == 6 and losses[0] == losses[1]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(mlm_data: Path, tmp_path: Path, precision: str) -> None:
    result = _run(mlm_data, tmp_path / precision, **{precision: True}, max_steps=3, save_steps=3, do_eval=False)
    assert result["step"] == 3 and result["nonfinite_steps"] <= 3


def test_clm_evaluates_perplexity_and_samples(clm_data: Path, tmp_path: Path) -> None:
    result = _run(clm_data, tmp_path / "clm", max_seq_length=24, max_steps=2, save_steps=2, generation_max_new_tokens=5)
    assert 0.0 <= result["train_accuracy"] <= 1.0 and result["samples_per_s"] > 0  # seed 003's Acc@1 and FPS
    assert result["eval_perplexity"] == pytest.approx(torch.tensor(result["eval_loss"]).exp().item(), rel=1e-6)
    assert "||" in result["eval_sample_0"] and "train_perplexity" in result


def test_num_train_epochs_sets_the_step_count(mlm_data: Path, tmp_path: Path) -> None:
    from lmforge.data.shards import open_shards

    sequences = len(open_shards(mlm_data / "shards" / "train"))
    result = _run(
        mlm_data,
        tmp_path / "epochs",
        max_steps=-1,
        num_train_epochs=0.5,
        gradient_accumulation_steps=2,
        do_eval=False,
        save_steps=1000,
    )
    assert result["step"] == -(-(sequences // 4 // 2) // 2)


def test_start_from_a_checkpoint_and_evaluate_only(mlm_data: Path, tmp_path: Path) -> None:
    trained = _run(mlm_data, tmp_path / "first", max_steps=4, save_steps=4)
    again = _run(mlm_data, tmp_path / "second", model_name_or_path=str(tmp_path / "first"), do_train=False)
    assert again["step"] == 0 and again["eval_loss"] == trained["eval_loss"]


def test_user_errors(mlm_data: Path, tmp_path: Path) -> None:
    _run(mlm_data, tmp_path / "used", max_steps=2, save_steps=2, do_eval=False)
    with pytest.raises(ValueError, match="already holds a run"):
        _run(mlm_data, tmp_path / "used", max_steps=2)
    assert _run(mlm_data, tmp_path / "used", max_steps=2, save_steps=2, overwrite_output_dir=True)["step"] == 2
    with pytest.raises(ValueError, match="holds no shards"):
        _run(tmp_path, tmp_path / "x")
    with pytest.raises(ValueError, match="does not exist"):
        _run(tmp_path / "missing", tmp_path / "y")
    with pytest.raises(ValueError, match="nor a registered architecture"):
        _run(mlm_data, tmp_path / "z", model="no-such-model")
    with pytest.raises(ValueError, match="positions"):
        _run(mlm_data, tmp_path / "w", model_overrides={"max_position_embeddings": 8})
    with pytest.raises(ValueError, match="prepared for mlm"):
        _run(mlm_data, tmp_path / "v", objective="clm")
    with pytest.raises(ValueError, match="holds packed sequences"):  # the flag cannot unpack prepared shards
        _run(mlm_data, tmp_path / "u", line_by_line=True)
    with pytest.raises(ValueError, match=r"of 32 tokens but --max_seq_length is 16: 50% of every sequence"):
        _run(mlm_data, tmp_path / "t", max_seq_length=16)  # packed sequences are never cut silently


def test_clm_blocks_longer_than_the_training_length_are_refused(clm_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"of 24 tokens .* prepare all --block_size 12"):
        _run(clm_data, tmp_path / "run", objective="clm", max_seq_length=12)


def test_moe_router_metrics_are_logged(clm_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "moe"
    _run(clm_data, run, model="gpt", model_preset="tiny-moe", objective="clm", max_seq_length=24, max_steps=2,
         save_steps=2, logging_steps=1)  # fmt: skip
    train_lines = [r for r in _records(run) if "train_loss" in r]
    assert len(train_lines) == 2
    for record in train_lines:
        assert {"aux_loss", "moe_balance_loss", "moe_z_loss"} <= set(record), sorted(record)
        assert record["aux_loss"] > 0


def test_raw_train_file_with_a_validation_file(tmp_path: Path) -> None:
    """HF's --train_file + --validation_file: the held-out file, in full, is the validation split; no hashed share of
    the training text is held out. The flag without a raw --train_file is a one-line error."""
    poems = [json.loads(line)["text"] for line in Path("data/corpus/poetry.jsonl").read_text().splitlines()[:60]]
    train, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    train.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in poems[:50]))
    valid.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in poems[50:]))
    args = TINY | {"train_dir": None, "max_steps": 1, "save_steps": 1, "do_eval": False}
    pretrain(PretrainArgs(train_file=str(train), validation_file=str(valid), output_dir=str(tmp_path / "run"), **args))
    shards = tmp_path / "run" / "data" / "shards"
    assert json.loads((shards / "validation" / "index.json").read_text())["num_documents"] == 10
    assert json.loads((shards / "train" / "index.json").read_text())["num_documents"] == 50
    with pytest.raises(ValueError, match="--validation_file goes with a raw --train_file"):
        PretrainArgs(train_dir="prepared", validation_file=str(valid))
