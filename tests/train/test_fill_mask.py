"""``lmforge fill-mask``: masks placed by id, top-k per mask with probabilities, one-line user errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lmforge import cli
from lmforge.data.tokenizer import load_tokenizer
from lmforge.eval.fill_mask import format_predictions, predict_masks
from lmforge.train.checkpoint import load_model
from lmforge.train.config import PretrainArgs
from lmforge.train.pretrain import pretrain


@pytest.fixture(scope="module")
def run(mlm_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fill") / "run"
    pretrain(
        PretrainArgs(
            train_dir=str(mlm_data),
            output_dir=str(out),
            model="bert",
            model_preset="tiny",
            max_steps=2,
            save_steps=2,
            max_seq_length=32,
            per_device_train_batch_size=4,
            do_eval=False,
            disable_tqdm=True,
            report_to="none",
        )
    )
    return out


def test_predictions_match_a_manual_forward(run: Path, mlm_data: Path) -> None:
    model, tokenizer = load_model(run), load_tokenizer(mlm_data / "tokenizer")
    predictions = predict_masks(model, tokenizer, "天气[MASK]好，我[MASK]去公园", top_k=4)
    assert len(predictions) == 2 and all(len(p) == 4 for p in predictions)
    ids = [
        tokenizer.cls_token_id,
        *tokenizer.encode("天气"),
        tokenizer.mask_token_id,
        *tokenizer.encode("好，我"),
        tokenizer.mask_token_id,
        *tokenizer.encode("去公园"),
        tokenizer.sep_token_id,
    ]
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids])).logits[0], dim=-1)
    position = ids.index(tokenizer.mask_token_id)
    best = int(probs[position].argmax())
    assert predictions[0][0] == (
        tokenizer.convert_ids_to_tokens([best])[0],
        pytest.approx(float(probs[position, best])),
    )
    text = format_predictions("天气[MASK]好，我[MASK]去公园", predictions)
    assert "[MASK] #1" in text and "[MASK] #2" in text and "best:" in text


def test_cli_prints_top_k(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["fill-mask", str(run), "今天[MASK]气很好", "--top_k", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "今天[MASK]气很好" and lines[1].startswith("  [MASK] #1:") and len(lines[1].split()) == 2 + 2 * 2


def test_user_errors_are_one_line(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["fill-mask", str(run), "no mask here"], "contains no [MASK]"),
        (["fill-mask", str(run.parent / "nope"), "a[MASK]"], "neither a checkpoint"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_fill_mask_needs_a_mask_token_and_says_so() -> None:
    """A tokenizer without a mask token (GPT-2's files, most sentencepiece models) is one clear error, not a None id."""
    from types import SimpleNamespace

    from lmforge.eval.fill_mask import predict_masks

    tokenizer = SimpleNamespace(mask_token_id=None, source="vocab.json + merges.txt (GPT-2 byte-level BPE)")
    with pytest.raises(ValueError, match=r"needs a mask token but the tokenizer .*GPT-2.* has none"):
        predict_masks(None, tokenizer, "今天[MASK]好")
