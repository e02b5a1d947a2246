"""``output_hidden_states=True`` on every registered backbone: HF's convention (embeddings output, then each
layer's output; the last one equals the plain output), padding-invariant on real tokens, the default call unchanged,
passed through ``LanguageModel`` and ``TaskModel``, and equal to HF's tuples for BERT and CANINE.

"Layer" per architecture: a BERT/GPT block (attention + FFN), one GAU (GAU-alpha, FLASH-Quad), one mixed-chunk GAU
(FLASH), one reversible attention + feed-forward pair (Reformer): L + 1 states. CANINE: HF ``CanineModel``'s
L + 5 (initial char layer, L deep layers over molecules, final char layer, plus the inputs of the three stacks).
"""

from __future__ import annotations

import importlib

import pytest
import torch

import lmforge
from lmforge.heads.classification import SequenceClassificationHead, TaskModel, backbone_output_size
from lmforge.models.registry import list_models
from tolerances import TOL

NAMES = sorted(list_models())
# Reformer's LSH buckets depend on the padded length (other chunks, other neighbours): local attention only for
# the padding test, as tests/models/test_reformer.py does.
PADDING_OVERRIDES = {"reformer": {"attn_layers": ("local", "local")}}
EXACT = {"rtol": 0.0, "atol": 0.0}


def _backbone(name: str, **overrides):
    return lmforge.build_model(name, preset="tiny", **overrides).eval()


def _num_states(name: str, backbone) -> int:
    layers = len(backbone.layers)
    return layers + 5 if name == "canine" else layers + 1


def _ids(backbone, batch: int, length: int) -> torch.Tensor:
    high = getattr(backbone.config, "vocab_size", 0x10000)
    return torch.randint(1, high, (batch, length))


@pytest.mark.parametrize("name", NAMES)
def test_count_shapes_and_last_state_is_the_output(name):
    backbone = _backbone(name)
    ids = _ids(backbone, 2, 16)
    with torch.no_grad():
        plain = backbone(ids)
        hidden, states = backbone(ids, output_hidden_states=True)
    assert isinstance(plain, torch.Tensor)  # the default call returns the tensor, as before
    assert len(states) == _num_states(name, backbone)
    width = backbone_output_size(backbone)
    for state in states:
        assert state.shape[0] == 2 and state.shape[-1] == width and torch.isfinite(state).all()
    torch.testing.assert_close(hidden, plain, **EXACT)
    torch.testing.assert_close(states[-1], plain, **EXACT)
    if name == "canine":  # chars (T), molecules (M = T / rate), chars
        rate = backbone.config.downsampling_rate
        assert [s.shape[1] for s in states] == [16, 16] + [16 // rate] * (len(backbone.layers) + 1) + [16, 16]
    else:
        assert all(s.shape[1] == 16 for s in states)


@pytest.mark.parametrize("name", NAMES)
def test_padded_equals_unpadded_on_real_tokens(name):
    backbone = _backbone(name, **PADDING_OVERRIDES.get(name, {}))
    ids = _ids(backbone, 1, 12)  # a multiple of CANINE's downsampling rate (4): no molecule mixes in padding
    padded = torch.cat([ids, torch.zeros(1, 8, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 12), torch.zeros(1, 8)], dim=1).long()
    with torch.no_grad():
        _, alone = backbone(ids, output_hidden_states=True)
        _, batched = backbone(padded, attention_mask=mask, output_hidden_states=True)
    # CANINE's upsampling conv sees the padding characters, as HF's does (models/canine/model.py): only the states
    # before it (embeddings, initial layer, molecules) are padding-invariant.
    compared = len(alone) - 2 if name == "canine" else len(alone)
    for i in range(compared):
        real = alone[i].shape[1]
        torch.testing.assert_close(batched[i][:, :real], alone[i], **TOL["batched_fp32_reshaped"], msg=f"state {i}")


@pytest.mark.parametrize("name", NAMES)
def test_language_model_and_task_model_pass_it_through(name):
    task = "clm" if "mlm" not in lmforge.list_models()[name].builders else "mlm"
    model = lmforge.build_model(name, task=task, preset="tiny").eval()
    ids = _ids(model.backbone, 2, 16)
    with torch.no_grad():
        plain = model(ids)
        out = model(ids, output_hidden_states=True)
    assert plain.all_hidden_states is None
    torch.testing.assert_close(out.logits, plain.logits, **EXACT)
    assert len(out.all_hidden_states) == _num_states(name, model.backbone)
    torch.testing.assert_close(out.all_hidden_states[-1], plain.hidden_states, **EXACT)

    backbone = _backbone(name)
    task_model = TaskModel(backbone, SequenceClassificationHead(backbone_output_size(backbone), 3)).eval()
    with torch.no_grad():
        plain = task_model(ids, attention_mask=torch.ones_like(ids))
        out = task_model(ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    assert plain.all_hidden_states is None and len(out.all_hidden_states) == _num_states(name, backbone)
    torch.testing.assert_close(out.logits, plain.logits, **EXACT)


def test_gpt_with_cache_returns_the_states_last():
    backbone = _backbone("gpt")
    ids = _ids(backbone, 1, 6)
    with torch.no_grad():
        hidden, past, states = backbone(ids, use_cache=True, output_hidden_states=True)
    assert len(past) == len(backbone.layers) and len(states) == len(backbone.layers) + 1
    torch.testing.assert_close(states[-1], hidden, **EXACT)


@pytest.mark.hf
@pytest.mark.parametrize("name", ["bert", "canine"])
def test_states_match_transformers(name):
    """Same count, order and values as HF ``BertModel`` / ``CanineModel`` with ``output_hidden_states=True``."""
    transformers = importlib.import_module("transformers")
    convert = importlib.import_module(f"lmforge.models.{name}.convert")
    cfg = lmforge.get_config(name, preset="tiny")
    fields = convert.to_hf_config(cfg)
    del fields["model_type"], fields["architectures"]
    if name == "bert":  # the converter maps the MLM model's names
        theirs = transformers.BertForMaskedLM(transformers.BertConfig(**fields, attn_implementation="eager"))
        ours = lmforge.build_model(name, task="mlm", config=cfg)
        ids = torch.randint(1, cfg.vocab_size, (2, 9))
    else:
        theirs = transformers.CanineModel(transformers.CanineConfig(**fields))
        ours = lmforge.build_model(name, config=cfg)
        ids = torch.randint(1, 0x10000, (2, 16))
    theirs.eval()
    ours.eval().load_state_dict(convert.from_hf_state_dict(theirs.state_dict(), cfg))
    ours = getattr(ours, "backbone", ours)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        _, actual = ours(ids, attention_mask=mask, output_hidden_states=True)
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        torch.testing.assert_close(a, e, **TOL["reference_fp32"], msg=f"state {i}")


def test_reformer_states_keep_the_reversible_gradients():
    """With states, the reversible stack runs one layer per call: the same gradients as one call over all layers."""
    backbone = lmforge.build_model("reformer", preset="tiny", attn_layers=("local", "local"), hidden_dropout_prob=0.0,
                                   local_attention_probs_dropout_prob=0.0).train()  # fmt: skip
    assert backbone.config.use_reversible
    ids = _ids(backbone, 2, 16)
    grads = []
    for output_hidden_states in (False, True):
        backbone.zero_grad()
        out = backbone(ids, output_hidden_states=output_hidden_states)
        (out[0] if output_hidden_states else out).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, **TOL["batched_fp32"], msg=name)
