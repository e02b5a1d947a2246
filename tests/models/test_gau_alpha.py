"""GAU-alpha: formula-level reference (JunnYu naming, loaded by our converter), golden values, padding invariance,
causality, converter errors, init, gradients and a few training steps through the ``LanguageModel`` contract."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.models.gau_alpha.config import GAUAlphaConfig
from lmforge.models.gau_alpha.convert import (
    from_junnyu_config,
    from_junnyu_state_dict,
    load_junnyu_checkpoint,
    to_junnyu_state_dict,
)
from lmforge.models.gau_alpha.model import build_mlm
from reference.gau_alpha_reference import gau_alpha_logits, junnyu_state_dict
from tolerances import TOL

GOLDEN = json.loads((Path(__file__).parents[1] / "reference" / "gau_alpha_golden.json").read_text())
SIZES = GOLDEN["sizes"]


def _config(**overrides) -> GAUAlphaConfig:
    fields = dict(
        vocab_size=SIZES["vocab"],
        hidden_size=SIZES["hidden"],
        num_hidden_layers=SIZES["layers"],
        intermediate_size=SIZES["e"],
        attention_key_size=SIZES["s"],
    )
    return GAUAlphaConfig(**(fields | overrides))


def _golden_inputs():
    return tuple(torch.tensor(GOLDEN[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))


@pytest.mark.parametrize("normalization", ["softmax_plus", "squared_relu"])
def test_matches_formula_reference_and_golden_values(normalization: str) -> None:
    cfg = _config(normalization=normalization)
    sd = junnyu_state_dict(**SIZES)
    model = build_mlm(cfg).eval()
    model.load_state_dict(from_junnyu_state_dict(sd, cfg), strict=True)
    ids, mask, types = _golden_inputs()
    with torch.no_grad():
        ours = model(ids, attention_mask=mask, token_type_ids=types).logits
        reference = gau_alpha_logits(
            sd, ids, mask, types, layers=SIZES["layers"], e=SIZES["e"], s=SIZES["s"], normalization=normalization
        )
    real = mask.bool()
    torch.testing.assert_close(ours[real], reference[real], **TOL["reference_fp32"])
    golden = GOLDEN[normalization]
    torch.testing.assert_close(ours[0, 0, :8], torch.tensor(golden["first_row"]), **TOL["reference_fp32"])
    torch.testing.assert_close(ours[0, 6, :8], torch.tensor(golden["last_real_row"]), **TOL["reference_fp32"])
    stats = torch.tensor([ours[real].mean(), ours[real].std()])
    torch.testing.assert_close(stats, torch.tensor([golden["mean"], golden["std"]]), **TOL["golden_stats"])


@pytest.mark.parametrize("normalization", ["softmax_plus", "squared_relu"])
def test_padded_equals_unpadded(normalization: str) -> None:
    model = lmforge.build_model("gau-alpha", task="mlm", preset="tiny", normalization=normalization).eval()
    ids = torch.randint(1, 128, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    mask = (padded != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(
            model(padded, attention_mask=mask).logits[:, :7], model(ids).logits, **TOL["batched_fp32"]
        )


def test_clm_does_not_leak() -> None:
    model = lmforge.build_model("gau-alpha", task="clm", preset="tiny").eval()
    ids = torch.randint(1, 128, (2, 10))
    changed = ids.clone()
    changed[:, 6:] = torch.randint(1, 128, (2, 4))
    with torch.no_grad():
        torch.testing.assert_close(model(changed).logits[:, :6], model(ids).logits[:, :6], **TOL["batched_fp32"])
    with pytest.raises(ValueError, match="bidirectional"):
        build_mlm(dataclasses.replace(_config(), is_decoder=True))


def test_converter_round_trip_and_errors(tmp_path: Path) -> None:
    cfg = _config()
    model = build_mlm(cfg)
    theirs = to_junnyu_state_dict(model.state_dict(), cfg)
    assert "gau_alpha.encoder.layer.1.gau.q_scaleoffset.weight" in theirs
    back = from_junnyu_state_dict(theirs, cfg)
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    broken = dict(theirs)
    del broken["gau_alpha.encoder.layer.0.gau.i_dense.weight"]
    broken["gau_alpha.encoder.layer.0.gau.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['gau_alpha.encoder.layer.0.gau.i_dense.weight'\]") as err:
        from_junnyu_state_dict(broken, cfg)
    assert "gau_alpha.encoder.layer.0.gau.extra" in str(err.value)
    untied = dict(
        theirs, **{"cls.predictions.decoder.weight": torch.zeros_like(theirs["cls.predictions.decoder.weight"])}
    )
    with pytest.raises(ValueError, match="ties"):
        from_junnyu_state_dict(untied, cfg)
    # a local checkpoint directory in the port's format (config.json + pytorch_model.bin)
    port_config = {
        "vocab_size": cfg.vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "intermediate_size": 64,
        "attention_key_size": 16,
        "hidden_act": "swish",
        "model_type": "gau_alpha",
    }
    (tmp_path / "config.json").write_text(json.dumps(port_config))
    torch.save(theirs, tmp_path / "pytorch_model.bin")
    loaded = load_junnyu_checkpoint(tmp_path)
    ids = torch.randint(1, cfg.vocab_size, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(ids).logits, model.eval()(ids).logits)
    assert from_junnyu_config(port_config) == dataclasses.replace(cfg, num_hidden_layers=2)


def test_roformerv2_init_and_gradients() -> None:
    cfg = lmforge.get_config("gau-alpha", preset="tiny")
    model = build_mlm(cfg)
    proj = model.backbone.layers[0].gau.proj.weight  # Keras fan = in_features = 32
    std = 1.13684723 / 32**0.5 * 2 ** (-1 / 3)
    assert proj.abs().max() <= 2 * std + 1e-6 and abs(proj.std().item() / (std * 0.8796) - 1) < 0.15
    assert torch.equal(model.backbone.layers[0].gau.scale_offset.weight, torch.ones(2, 16))
    ids = torch.randint(1, cfg.vocab_size, (2, 6))
    model(ids, labels=ids).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("task", ["mlm", "clm"])
def test_a_few_training_steps_reduce_the_loss(task: str) -> None:
    model = lmforge.build_model(
        "gau-alpha", task=task, preset="tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(1, 128, (4, 12))
    labels = ids.clone()
    if task == "mlm":
        labels[:, ::2] = -100
    losses = []
    for _ in range(8):
        loss = model(ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
