"""``lmforge inspect`` on tiny runs of every architecture: table, inspect.json and inspect.png; finite statistics;
attention sparsity exactly where there are GAU/FLASH normalisers; the statistics themselves on known tensors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lmforge.cli import run
from lmforge.data.tokenizer import build_char_tokenizer
from lmforge.eval.inspect import layer_statistics, token_cosine
from lmforge.models.registry import build_model, config_to_dict, list_models
from lmforge.train.checkpoint import save_checkpoint

TEXTS = ["春夏秋冬山水花月", "金木火土风雨雷电北京上海", "他在看书"]
GAU_ARCHS = {"gau-alpha": "< 0.001", "flash-quad": "== 0", "flash": "== 0"}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    build_char_tokenizer(["".join(TEXTS)], vocab_size=200, min_frequency=1).save(path)
    return path


def _lm_run(name: str, root, tokenizer_dir) -> tuple:
    """A pretraining-style run directory with one checkpoint of a random tiny LM of ``name``."""
    from lmforge.data.tokenizer import load_tokenizer

    entry = list_models()[name]
    task = "mlm" if "mlm" in entry.builders else "clm"
    fields = {f.name for f in dataclasses.fields(entry.config_class)}
    overrides = {"vocab_size": load_tokenizer(tokenizer_dir).vocab_size} if "vocab_size" in fields else {}
    model = build_model(name, task=task, preset="tiny", **overrides)
    info = {"model": name, "task": task, "config": config_to_dict(model.config)}
    save_checkpoint(root, 2, weights=model.state_dict(), model_info=info, tokenizer_dir=tokenizer_dir)
    return root, model


@pytest.mark.parametrize("name", sorted(list_models()))
def test_inspect_writes_json_and_png_with_finite_statistics(name, tokenizer_dir, tmp_path, capsys):
    run_dir, model = _lm_run(name, tmp_path / "run", tokenizer_dir)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    result = run(["inspect", str(run_dir), "--input", str(texts), "--use_cpu", "true"])
    out = run_dir / "inspect"
    assert json.loads((out / "inspect.json").read_text()) == result
    assert (out / "inspect.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "cos prev" in printed and "layer" in printed
    layers = result["layers"]
    expected = len(model.backbone.layers) + (5 if name == "canine" else 1)
    assert len(layers) == expected and result["num_texts"] == 3
    assert layers[0]["cosine_to_previous"] is None and layers[1]["cosine_to_previous"] is not None
    for layer in layers:
        for key in ("mean_norm", "cosine_to_previous", "relative_change", "attention_sparsity"):
            value = layer[key]
            assert value is None or (isinstance(value, float) and torch.isfinite(torch.tensor(value))), (key, layer)
        if layer["cosine_to_previous"] is not None:
            assert -1.0 <= layer["cosine_to_previous"] <= 1.0 + 1e-6 and layer["relative_change"] >= 0.0
    sparsity = [layer["attention_sparsity"] for layer in layers[1:]]
    if name in GAU_ARCHS:  # every layer has a normaliser
        assert all(s is not None and 0.0 <= s <= 1.0 for s in sparsity)
        assert {layer["sparsity_rule"] for layer in layers[1:]} == {GAU_ARCHS[name]}
    elif name != "canine":
        assert all(s is None for s in sparsity)
    if name == "canine":  # characters -> molecules -> characters: no comparison across a length change
        assert layers[2]["cosine_to_previous"] is None and layers[-2]["cosine_to_previous"] is None


def test_inspect_a_fine_tuned_run_with_one_text(tokenizer_dir, tmp_path):
    """A fine-tuned checkpoint is inspected through its backbone; --output_dir is honoured."""
    from lmforge.heads.classification import SequenceClassificationHead, TaskModel

    backbone = build_model("gau-alpha", preset="tiny", vocab_size=200)
    model = TaskModel(backbone, SequenceClassificationHead(backbone.config.hidden_size, 2))
    head = {"kind": "sequence_classification", "labels": ["a", "b"], "pooling": "cls", "dropout": 0.1}
    info = {"model": "gau-alpha", "task": "finetune-classification", "config": config_to_dict(backbone.config),
            "head": head}  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "ft", 5, weights=model.state_dict(), model_info=info,
                                 tokenizer_dir=tokenizer_dir)  # fmt: skip
    result = run(["inspect", str(checkpoint), "--text", TEXTS[0], "--output_dir", str(tmp_path / "out")])
    assert (tmp_path / "out" / "inspect.json").is_file() and result["task"] == "finetune-classification"
    assert len(result["layers"]) == 3 and result["layers"][0]["num_tokens"] == len(TEXTS[0]) + 2


def test_statistics_on_known_tensors():
    h = torch.randn(2, 5, 8)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(token_cosine(h, h, keep), torch.ones(8))  # a layer with itself: cosine 1
    torch.testing.assert_close(token_cosine(h, -3 * h, keep), -torch.ones(8))
    padded = h.clone()
    padded[1, 3:] = 1e6  # padding never counts
    stats = layer_statistics((h, h, 2 * padded), keep)
    assert stats[0]["cosine"] is None and stats[0]["tokens"] == 8
    assert stats[1]["cosine"] == pytest.approx(8.0) and stats[1]["change"] == pytest.approx(0.0)
    assert stats[2]["cosine"] == pytest.approx(8.0) and stats[2]["change"] == pytest.approx(8.0)  # |2h - h| / |h|
    assert stats[2]["norm"] == pytest.approx(2 * float(h[keep].norm(dim=-1).sum()), rel=1e-5)
