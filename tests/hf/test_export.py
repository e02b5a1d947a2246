"""Export round trips: our checkpoint -> HF directory -> ``from_pretrained`` -> the same logits; fill-mask pipeline."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

from lmforge import cli
from lmforge.hf.export import export_checkpoint
from lmforge.train.checkpoint import load_model

pytestmark = pytest.mark.hf
transformers = importlib.import_module("transformers")


def _ids(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = torch.randint(5, vocab_size, (2, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(input_ids)
    mask[1, 7:] = 0
    return input_ids, mask


def test_native_bert_export_matches_and_runs_the_fill_mask_pipeline(mlm_run: Path, tmp_path: Path) -> None:
    out = export_checkpoint(mlm_run, tmp_path / "hf")
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "vocab.txt", "tokenizer.json"} <= files
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForMaskedLM"]

    ours = load_model(mlm_run)
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(theirs).__name__ == "BertForMaskedLM"
    input_ids, mask = _ids(ours.config.vocab_size)
    keep = mask.bool()
    torch.testing.assert_close(
        theirs(input_ids=input_ids, attention_mask=mask).logits[keep],
        ours(input_ids, attention_mask=mask).logits[keep],
        rtol=1e-5,
        atol=1e-5,
    )

    fill = transformers.pipeline("fill-mask", model=str(out), top_k=3)
    predictions = fill("今天天气[MASK]好")
    assert len(predictions) == 3 and all(0.0 <= p["score"] <= 1.0 for p in predictions)
    card = (out / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card and "Training configuration" in card and "eval_loss" in card


def test_generic_lmforge_export_loads_through_auto_classes(mlm_run: Path, tmp_path: Path) -> None:
    import lmforge.hf  # noqa: F401  registers model_type "lmforge-bert"

    out = export_checkpoint(mlm_run, tmp_path / "generic", format="lmforge")
    config = transformers.AutoConfig.from_pretrained(out)
    assert config.model_type == "lmforge-bert" and config.lmforge_task == "mlm"
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    ours = load_model(mlm_run)
    input_ids, mask = _ids(ours.config.vocab_size)
    torch.testing.assert_close(
        theirs(input_ids=input_ids, attention_mask=mask).logits,
        ours(input_ids, attention_mask=mask).logits,
        rtol=0,
        atol=0,
    )
    assert transformers.pipeline("fill-mask", model=str(out), top_k=2)("天[MASK]")[0]["token_str"]


def test_roformer_causal_lm_export(roformer_clm_run: Path, tmp_path: Path) -> None:
    out = export_checkpoint(roformer_clm_run, tmp_path / "clm")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["RoFormerForCausalLM"]
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ours = load_model(roformer_clm_run)
    input_ids = _ids(ours.config.vocab_size)[0]
    torch.testing.assert_close(theirs(input_ids=input_ids).logits, ours(input_ids).logits, rtol=1e-5, atol=1e-5)


def test_export_cli_and_its_errors(mlm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = next(mlm_run.glob("checkpoint-*"))
    out = tmp_path / "cli"
    cli.main(["export", str(checkpoint), "--output_dir", str(out)])
    assert (out / "model.safetensors").is_file() and "exported" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # not empty
        cli.main(["export", str(checkpoint), "--output_dir", str(out)])
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["export", str(tmp_path / "nothing"), "--output_dir", str(tmp_path / "x")])
    assert "is neither a" in capsys.readouterr().err


def test_our_fill_mask_agrees_with_the_hf_pipeline(mlm_run: Path, tmp_path: Path) -> None:
    from lmforge.data.tokenizer import load_tokenizer
    from lmforge.eval.fill_mask import predict_masks

    out = export_checkpoint(mlm_run, tmp_path / "agree")
    checkpoint = next(mlm_run.glob("checkpoint-*"))
    ours = predict_masks(load_model(mlm_run), load_tokenizer(checkpoint / "tokenizer"), "天气[MASK]好", top_k=3)[0]
    theirs = transformers.pipeline("fill-mask", model=str(out), top_k=3)("天气[MASK]好")
    assert [t for t, _ in ours] == [p["token_str"].replace(" ", "") for p in theirs]
    torch.testing.assert_close(torch.tensor([p for _, p in ours]), torch.tensor([p["score"] for p in theirs]))


def test_generic_causal_wrapper_generates() -> None:
    from lmforge.hf import config_class_for, model_classes_for
    from lmforge.models.registry import config_to_dict, get_config

    config = config_class_for("bert")(
        lmforge_model="bert", lmforge_task="clm", lmforge_config=config_to_dict(get_config("bert", preset="tiny"))
    )
    model = model_classes_for("bert")["clm"](config).eval()
    prompt = torch.tensor([[5, 6, 7]])
    out = model.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=False)
    expected = prompt
    for _ in range(4):  # greedy by hand
        expected = torch.cat([expected, model(expected).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, expected)
