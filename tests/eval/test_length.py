"""``lmforge evaluate length`` (and ``evaluate lm``): table shape, reproducibility, padded batches == one by one,
the same masked tokens at every length, jsonl data, CLM perplexity and one-line user errors.

The runs are tiny GAU-alpha models trained for two steps on a slice of the bundled corpus (seconds); what is tested
is the evaluation, not the model quality.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lmforge import cli
from lmforge.commands.evaluate_lm import LMEvalArgs, evaluate_lm_run
from lmforge.data.prepare import PrepareAllArgs, prepare_all
from lmforge.data.tokenizer import load_tokenizer
from lmforge.eval.length import (
    LengthArgs,
    build_windows,
    evaluate_length,
    evaluate_windows,
    load_heldout,
    load_run,
    mask_stream,
)
from lmforge.train.checkpoint import TOKENIZER_DIR, load_model
from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain
from tolerances import TOL

REPO = Path(__file__).resolve().parents[2]
LENGTHS = [8, 16, 32, 64]  # the runs train at 32


pytestmark = pytest.mark.usefixtures("one_thread")


def _corpus_slice(path: Path, per_file: int = 80) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for source in sorted((REPO / "data" / "corpus").glob("*.jsonl")):
        with open(source, encoding="utf-8") as handle:
            lines = [next(handle) for _ in range(per_file)]
        (path / source.name).write_text("".join(lines), encoding="utf-8")
    return path


def _prepare(root: Path, *, objective: str) -> Path:
    args = PrepareAllArgs(
        input=[str(_corpus_slice(root / "raw"))],
        output_dir=str(root),
        cjk_continuations=False,
        objective=objective,
        max_seq_length=32,
        block_size=32,
        validation_split_percentage=20.0,
        progress=False,
    )
    return prepare_all(args)


def _train(data: Path, out: Path, *, objective: str) -> Path:
    pretrain(
        PretrainArgs(
            train_dir=str(data),
            output_dir=str(out),
            model="gau-alpha",
            model_preset="tiny",
            objective=objective,
            max_seq_length=32,
            max_steps=2,
            save_steps=2,
            per_device_train_batch_size=4,
            learning_rate=1e-3,
            do_eval=False,
            disable_tqdm=True,
            report_to="none",
        )
    )
    return out


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("length-mlm")
    return _train(_prepare(root / "data", objective="mlm"), root / "run", objective="mlm")


@pytest.fixture(scope="module")
def clm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("length-clm")
    return _train(_prepare(root / "data", objective="clm"), root / "run", objective="clm")


def _args(run: Path, tmp_path: Path, **overrides) -> LengthArgs:
    values = dict(model=str(run), lengths=LENGTHS, output_dir=str(tmp_path), max_tokens=1500, disable_tqdm=True)
    return LengthArgs(**{**values, **overrides})


def _numbers(result: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in result["results"]]


def test_table_shape_files_and_same_predictions(
    mlm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = evaluate_length(_args(mlm_run, tmp_path, lengths=[64, 8, 32, 16, 32]))  # unsorted, one duplicate
    rows = result["results"]
    assert [r["length"] for r in rows] == LENGTHS and result["training_length"] == 32
    tokens = result["tokens"]
    for row in rows:
        assert row["sequences"] == math.ceil(tokens / (row["length"] - 2))
        assert 0.0 <= row["accuracy"] <= 1.0 and row["perplexity"] == pytest.approx(math.exp(row["loss"]))
    # the masks are decided once on the stream: every length predicts the same tokens
    assert len({r["predictions"] for r in rows}) == 1 and rows[0]["predictions"] > 0.1 * tokens
    table = (tmp_path / "length.md").read_text(encoding="utf-8")
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(LENGTHS) and all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| 32 (train) |" in table and "+0.00 pts" in table
    assert json.loads((tmp_path / "length.json").read_text())["results"][0]["length"] == 8
    assert (tmp_path / "length.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert lines[0] in printed and lines[-1] in printed


def test_reproducible_and_the_seed_matters(mlm_run: Path, tmp_path: Path) -> None:
    first = evaluate_length(_args(mlm_run, tmp_path / "a"))
    again = evaluate_length(_args(mlm_run, tmp_path / "b"))
    other = evaluate_length(_args(mlm_run, tmp_path / "c", seed=7))
    assert _numbers(first) == _numbers(again)
    assert _numbers(first) != _numbers(other)


def test_default_output_is_the_run_directory(mlm_run: Path) -> None:
    evaluate_length(_args(mlm_run, mlm_run, output_dir=None, lengths=[16]))
    assert {p.name for p in mlm_run.iterdir()} >= {"length.json", "length.md", "length.png"}


def test_padded_batches_equal_one_by_one(mlm_run: Path) -> None:
    run = load_run(str(mlm_run))
    tokenizer = load_tokenizer(run.checkpoint / TOKENIZER_DIR)
    heldout = load_heldout(None, run, tokenizer, max_tokens=400)
    ids = torch.cat([torch.as_tensor(d) for d, _ in heldout.documents])[:400]
    starts = torch.cat([torch.as_tensor(f) for _, f in heldout.documents])[:400]
    inputs, labels = mask_stream(ids.numpy(), starts.numpy(), tokenizer, probability=0.15, mode="word", seed=0)
    windows = build_windows(
        inputs, labels, length=48, objective="mlm", cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id
    )
    lengths = [w[0].numel() for w in windows]
    assert lengths[-1] < lengths[0]  # the last window is shorter, so batching pads it
    model = load_model(run.checkpoint)
    common = dict(objective="mlm", pad_token_id=tokenizer.pad_token_id, device=torch.device("cpu"))
    single = evaluate_windows(model, windows, batch_size=1, **common)
    batched = evaluate_windows(model, windows, batch_size=len(windows), **common)
    assert single["predictions"] == batched["predictions"] and single["accuracy"] == batched["accuracy"]
    torch.testing.assert_close(single["loss"], batched["loss"], **TOL["batched_fp32_reshaped"])

    # the comparison can fail: attending to the padding changes the padded example's loss
    last_ids, _ = windows[-1]
    T = lengths[0]
    padded = torch.full((1, T), tokenizer.pad_token_id)
    padded[0, : last_ids.numel()] = last_ids
    keep = torch.zeros(1, T, dtype=torch.long)
    keep[0, : last_ids.numel()] = 1
    with torch.no_grad():
        masked = model(padded, attention_mask=keep).logits[0, : last_ids.numel()]
        leaky = model(padded, attention_mask=torch.ones_like(keep)).logits[0, : last_ids.numel()]
        alone = model(last_ids[None], attention_mask=torch.ones(1, last_ids.numel(), dtype=torch.long)).logits[0]
    torch.testing.assert_close(masked, alone, **TOL["batched_fp32_reshaped"])
    assert (leaky - alone).abs().max() > 1e-3


def test_masking_is_whole_word_and_never_special(mlm_run: Path) -> None:
    run = load_run(str(mlm_run))
    tokenizer = load_tokenizer(run.checkpoint / TOKENIZER_DIR)
    heldout = load_heldout(None, run, tokenizer, max_tokens=2000)
    ids = torch.cat([torch.as_tensor(d) for d, _ in heldout.documents])
    starts = torch.cat([torch.as_tensor(f) for _, f in heldout.documents])
    ids[100] = tokenizer.sep_token_id  # a separator inside the stream is never a target (and ends a word)
    starts[100] = starts[101] = True
    _, labels = mask_stream(ids.numpy(), starts.numpy(), tokenizer, probability=0.15, mode="word", seed=3)
    targets = labels != -100
    maskable = ~torch.isin(ids, torch.tensor(sorted(tokenizer.all_special_ids)))  # [SEP], [UNK], ...
    assert not targets[~maskable].any()
    after_special = torch.cat([torch.tensor([True]), ~maskable[:-1]])
    word = torch.cumsum((maskable & (starts | after_special)).long(), 0)  # a special token also ends a word
    for w in torch.unique(word[targets]).tolist():
        assert targets[(word == w) & maskable].all()  # whole words only
    words = int(word[-1])
    chosen = len(torch.unique(word[targets]))
    assert abs(chosen / words - 0.15) < 4 * math.sqrt(0.15 * 0.85 / words)


def test_jsonl_data(mlm_run: Path, tmp_path: Path) -> None:
    lines = (REPO / "data" / "corpus" / "poetry.jsonl").read_text(encoding="utf-8").splitlines()[-40:]
    data = tmp_path / "heldout.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = evaluate_length(_args(mlm_run, tmp_path, data=str(data), lengths=[16, 32]))
    assert result["data"] == str(data) and result["tokens"] == 1500 and len(result["results"]) == 2


def test_clm_reports_perplexity(clm_run: Path, tmp_path: Path) -> None:
    result = evaluate_length(_args(clm_run, tmp_path, lengths=[8, 32]))
    assert result["objective"] == "clm" and result["mlm_probability"] is None
    for row in result["results"]:
        assert row["predictions"] == result["tokens"] - row["sequences"]  # every token but a window's first
        assert row["perplexity"] == pytest.approx(math.exp(row["loss"]))
    assert "perplexity vs training length" in (tmp_path / "length.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lengths": []}, "--lengths is empty"),
        ({"lengths": [2, 16]}, "must be >= 3"),
        ({"batch_size": 0}, "--batch_size must be >= 1"),
        ({"max_tokens": 100, "lengths": [16, 512]}, "length 512 needs at least 510"),
        ({"data": "/no/such/file.jsonl"}, "does not exist"),
        ({"wwm_mode": "span"}, "--wwm_mode must be"),
        ({"mlm_probability": 1.5}, "--mlm_probability must be"),
    ],
)
def test_bad_arguments_raise_value_error(mlm_run: Path, tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_length(_args(mlm_run, tmp_path, **overrides))


def test_cli_comma_lengths_and_one_line_errors(mlm_run: Path, tmp_path: Path, capsys) -> None:
    options = ["--lengths", "16,32", "--max_tokens", "600", "--output_dir", str(tmp_path), "--disable_tqdm", "true"]
    cli.main(["evaluate", "length", "--model", str(mlm_run), *options])
    out = capsys.readouterr().out
    assert "| 16 |" in out and "| 32 (train) |" in out
    for argv, message in (
        (["--model", str(tmp_path / "nope"), "--lengths", "16"], "neither a checkpoint"),
        (["--model", str(mlm_run), "--lengths", "16,x"], "integers separated by commas"),
        (["--model", str(mlm_run), "--lengths", "16", "--max_tokens", "0"], "--max_tokens must be >= 1"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["evaluate", "length", *argv])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and err.count("\n") == 0 and message in err


def test_evaluate_lm_is_reproducible(mlm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = evaluate_lm_run(LMEvalArgs(model=str(mlm_run), output_dir=str(tmp_path)))
    again = evaluate_lm_run(LMEvalArgs(model=str(mlm_run), output_dir=str(tmp_path)))
    assert first == again and first["eval_predictions"] > 0 and 0 <= first["eval_accuracy"] <= 1
    assert json.loads((tmp_path / "eval_results.json").read_text()) == again
    assert "eval_accuracy" in capsys.readouterr().out
    other = evaluate_lm_run(LMEvalArgs(model=str(mlm_run), output_dir=str(tmp_path), seed=5))
    assert other["eval_loss"] != first["eval_loss"]


def test_held_out_split_is_never_the_training_split(mlm_run: Path) -> None:
    from lmforge.eval.length import _split_dir

    shards = mlm_run.parent / "data" / "shards"
    for source in (shards.parent, shards, shards / "train", shards / "validation"):
        assert _split_dir(source, "validation") == shards / "validation"
    assert _split_dir(shards / "train", "validation", explicit=True) == shards / "train"  # --data names a split
    assert load_run(str(mlm_run)).train_config["train_dir"] == str(shards.parent)
