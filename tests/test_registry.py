"""The model registry: presets, overrides, unknown names and fields are clear errors."""

from __future__ import annotations

import dataclasses

import pytest

import lmforge
from lmforge.models import registry


def test_every_architecture_has_a_tiny_preset_that_builds_and_runs() -> None:
    import torch

    for name, entry in lmforge.list_models().items():
        assert "tiny" in entry.presets, name
        config = lmforge.get_config(name, preset="tiny")
        assert config.hidden_size <= 64 and config.num_hidden_layers <= 2, name
        model = lmforge.build_model(name, preset="tiny")
        # tokenizer-free models (canine) read Unicode codepoints and have no vocab_size
        ids = torch.randint(0, getattr(config, "vocab_size", 0x110000), (2, 7))
        hidden = model(ids)
        # a backbone whose width differs from hidden_size says so (reformer: two reversible streams, 2 * hidden)
        assert hidden.shape == (2, 7, getattr(model, "output_size", config.hidden_size)), name


def test_overrides_and_round_trip() -> None:
    config = lmforge.get_config("bert", preset="tiny", num_hidden_layers=1)
    assert config.num_hidden_layers == 1
    again = registry.config_from_dict("bert", registry.config_to_dict(config))
    assert dataclasses.asdict(again) == dataclasses.asdict(config)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: lmforge.get_config("nope"), "unknown model 'nope'"),
        (lambda: lmforge.get_config("bert", preset="huge-xl"), "unknown preset 'huge-xl'"),
        (lambda: lmforge.get_config("bert", preset="tiny", n_layer=3), "unknown config fields"),
        (lambda: lmforge.build_model("bert", task="translate", preset="tiny"), "no 'translate' builder"),
        (lambda: registry.config_from_dict("bert", {"vocab_size": 10, "evil": 1}), "unknown fields"),
    ],
)
def test_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
