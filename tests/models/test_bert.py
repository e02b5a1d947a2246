"""BERT / RoFormer baseline: HF parity (both directions), padding, kernels, causality, gradients, training smoke."""

import dataclasses
import importlib
import math

import pytest
import torch

import lmforge
from lmforge.models.bert.config import PRESETS, BertConfig
from lmforge.models.bert.convert import from_hf_config, from_hf_state_dict, to_hf_config, to_hf_state_dict
from lmforge.models.bert.model import BertModel, build_clm, build_mlm
from tolerances import TOL

PRESET_NAMES = ["tiny", "roformer-tiny"]


def _cfg(preset="tiny", **overrides):
    return BertConfig(**(PRESETS[preset] | overrides))


def _batch(cfg, batch=3, length=9):
    """Token ids avoiding pad (0), a padded second/third example, and two segments."""
    input_ids = torch.randint(1, cfg.vocab_size, (batch, length))
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1, 6:] = 0
    attention_mask[2, 3:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 4:] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


def _hf_model(cfg):
    transformers = importlib.import_module("transformers")
    fields = to_hf_config(cfg)
    model_type, (architecture,) = fields.pop("model_type"), fields.pop("architectures")
    config_class = transformers.RoFormerConfig if model_type == "roformer" else transformers.BertConfig
    hf_config = config_class(**fields, attn_implementation="eager")
    return getattr(transformers, architecture)(hf_config).eval()


@pytest.mark.hf
@pytest.mark.parametrize("is_decoder", [False, True], ids=["mlm", "clm"])
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_parity_with_transformers_both_directions(preset, is_decoder):
    cfg = _cfg(preset, is_decoder=is_decoder)
    build = build_clm if is_decoder else build_mlm
    theirs = _hf_model(cfg)  # BertForMaskedLM / BertLMHeadModel / RoFormerForMaskedLM / RoFormerForCausalLM
    ours = build(cfg).eval()
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict(), cfg))  # HF -> ours
    batch = _batch(cfg)
    with torch.no_grad():
        expected = theirs(**batch).logits
        actual = ours(**batch).logits
    torch.testing.assert_close(actual, expected)  # padding rows included: both compute them the same way
    # ours -> HF: a fresh HF model loads our weights strictly and gives the same logits
    fresh = build(cfg).eval()
    back = _hf_model(cfg)
    back.load_state_dict(to_hf_state_dict(fresh.state_dict(), cfg), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(back(**batch).logits, fresh(**batch).logits)


@pytest.mark.hf
def test_exported_roformer_table_equals_hf_table():
    cfg = _cfg("roformer-tiny")
    hf_table = _hf_model(cfg).state_dict()["roformer.encoder.embed_positions.weight"]
    ours = to_hf_state_dict(build_mlm(cfg).state_dict(), cfg)["roformer.encoder.embed_positions.weight"]
    torch.testing.assert_close(ours, hf_table)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_hf_config_round_trip(preset):
    cfg = _cfg(preset, hidden_act="gelu_tanh", is_decoder=True)
    hf = to_hf_config(cfg)
    assert hf["hidden_act"] == "gelu_pytorch_tanh"
    assert from_hf_config(hf) == cfg
    with pytest.raises(ValueError, match="rotary_value"):
        from_hf_config(hf | {"rotary_value": True})


def test_state_dict_conversion_reports_bad_keys():
    cfg = _cfg()
    hf = to_hf_state_dict(build_mlm(cfg).state_dict(), cfg)
    assert from_hf_state_dict(hf | {"bert.pooler.dense.bias": torch.zeros(32)}, cfg)  # known-unused: dropped
    broken = dict(hf)
    del broken["bert.encoder.layer.1.output.dense.weight"]
    broken["bert.encoder.layer.2.output.dense.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['bert.encoder.layer.1.output.dense.weight'\]") as info:
        from_hf_state_dict(broken, cfg)
    assert "bert.encoder.layer.2.output.dense.weight" in str(info.value)
    with pytest.raises(ValueError, match="tied"):
        from_hf_state_dict(hf | {"cls.predictions.decoder.weight": torch.zeros(128, 32)}, cfg)
    with pytest.raises(ValueError, match=r"unknown keys \['extra'\]"):
        to_hf_state_dict(build_mlm(cfg).state_dict() | {"extra": torch.zeros(1)}, cfg)


def test_clobbered_roformer_table_is_rejected():
    cfg = _cfg("roformer-tiny")
    hf = to_hf_state_dict(build_mlm(cfg).state_dict(), cfg)
    with pytest.raises(ValueError, match="sinusoid table"):
        from_hf_state_dict(hf | {"roformer.encoder.embed_positions.weight": torch.randn(64, 8)}, cfg)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_padded_equals_unpadded(preset):
    cfg = _cfg(preset)
    model = build_mlm(cfg).eval()
    ids = torch.randint(1, cfg.vocab_size, (1, 6))
    padded_ids = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 4])
    with torch.no_grad():
        alone = model(ids).logits
        padded = model(padded_ids, attention_mask=mask).logits
    torch.testing.assert_close(padded[:, :6], alone, **TOL["batched_fp32_reshaped"])


@pytest.mark.parametrize("is_decoder", [False, True])
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_sdpa_equals_eager(preset, is_decoder):
    sdpa = BertModel(_cfg(preset, is_decoder=is_decoder)).eval()
    eager = BertModel(_cfg(preset, is_decoder=is_decoder, attn_implementation="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    batch = _batch(sdpa.config)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(**batch), eager(**batch), **TOL["kernel_fp32"])


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_decoder_does_not_leak_future_tokens(preset):
    cfg = _cfg(preset)
    decoder = build_clm(cfg).eval()
    assert decoder.config.is_decoder and not cfg.is_decoder  # build_clm forces causal, leaves the input alone
    encoder = build_mlm(cfg).eval()
    encoder.load_state_dict(decoder.state_dict())
    ids = torch.randint(1, cfg.vocab_size, (2, 10))
    changed = ids.clone()
    changed[:, 6:] = torch.randint(1, cfg.vocab_size, (2, 4))
    with torch.no_grad():
        before, after = decoder(ids).logits, decoder(changed).logits
        assert torch.equal(before[:, :6], after[:, :6])
        assert not torch.allclose(encoder(ids).logits[:, :6], encoder(changed).logits[:, :6])  # test has power


@pytest.mark.parametrize("build", [build_mlm, build_clm])
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_parameter_gets_a_finite_nonzero_gradient(preset, build):
    cfg = _cfg(preset)
    model = build(cfg)
    batch = _batch(cfg)
    model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_initial_clm_loss_is_log_vocab(preset):
    cfg = _cfg(preset)
    model = build_clm(cfg).eval()
    ids = torch.randint(1, cfg.vocab_size, (4, 16))
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    assert loss == pytest.approx(math.log(cfg.vocab_size), abs=0.1)


@pytest.mark.parametrize(("preset", "objective"), [("tiny", "mlm"), ("tiny", "clm"), ("roformer-tiny", "clm")])
def test_overfits_one_batch(preset, objective):
    cfg = _cfg(preset, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = (build_mlm if objective == "mlm" else build_clm)(cfg)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, cfg.vocab_size, (4, 16), generator=gen)
    if objective == "mlm":  # 30% of positions replaced by a [MASK]-like id 1 and predicted
        chosen = torch.rand(4, 16, generator=gen) < 0.3
        inputs, labels = ids.masked_fill(chosen, 1), ids.masked_fill(~chosen, -100)
    else:
        inputs, labels = ids, ids
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(50):
        loss = model(inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2


def test_rotary_has_no_length_limit_but_absolute_does():
    ids = torch.randint(1, 128, (1, 70))  # max_position_embeddings is 64
    assert build_mlm(_cfg("roformer-tiny"))(ids).logits.shape == (1, 70, 128)
    with pytest.raises(ValueError, match="exceed the learned table"):
        build_mlm(_cfg("tiny"))(ids)


def test_registry_builds_every_task_and_preset():
    model = lmforge.build_model("bert", task="mlm", preset="tiny")
    assert model.objective == "mlm" and model.config == _cfg("tiny")
    assert lmforge.build_model("bert", task="clm", preset="roformer-tiny").config.is_decoder
    assert isinstance(lmforge.build_model("bert", preset="tiny"), BertModel)
    for preset in PRESETS:  # every preset is a valid config (no model built: base is large)
        assert lmforge.get_config("bert", preset=preset).vocab_size > 0
    assert lmforge.get_config("bert", preset="roformer-base").position_embedding_type == "rotary"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(hidden_size=30), "divisible"),
        (dict(hidden_act="gelu2"), "hidden_act"),
        (dict(position_embedding_type="alibi"), "position_embedding_type"),
        (dict(attn_implementation="flash9"), "attn_implementation"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob"),
        (dict(pad_token_id=128), "pad_token_id"),
        (dict(hidden_size=24, num_attention_heads=8, position_embedding_type="rotary"), "even head size"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        _cfg("tiny", **overrides)


def test_build_mlm_rejects_a_decoder_config():
    with pytest.raises(ValueError, match="build_clm"):
        build_mlm(_cfg(is_decoder=True))


def test_untied_head_round_trips_through_hf_keys():
    cfg = dataclasses.replace(_cfg(), tie_word_embeddings=False)
    model = build_mlm(cfg)
    assert "head.decoder.weight" in model.state_dict()
    hf = to_hf_state_dict(model.state_dict(), cfg)
    assert torch.equal(hf["cls.predictions.decoder.weight"], model.head.decoder.weight)
    build_mlm(cfg).load_state_dict(from_hf_state_dict(hf, cfg), strict=True)
