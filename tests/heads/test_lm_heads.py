"""LM heads, losses and the LanguageModel wrapper, on a stand-in backbone (the contract, not an architecture)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmforge.heads.lm import (
    IGNORE_INDEX,
    CausalLMHead,
    LanguageModel,
    LMOutput,
    MaskedLMHead,
    clm_loss,
    masked_accuracy,
    mlm_loss,
)

V, D = 11, 8


class StandInBackbone(nn.Module):
    """Smallest module honouring the backbone contract."""

    def __init__(self):
        super().__init__()
        self.config = {"vocab_size": V}
        self.embed = nn.Embedding(V, D)
        self.mix = nn.Linear(D, D)

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return torch.tanh(self.mix(self.embed(input_ids)))


def test_mlm_loss_ignores_minus_100_and_handles_no_targets():
    logits = torch.randn(2, 5, V)
    labels = torch.randint(0, V, (2, 5))
    labels[0, :3] = IGNORE_INDEX
    expected = F.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(mlm_loss(logits, labels), expected)
    none = mlm_loss(logits.requires_grad_(), torch.full((2, 5), IGNORE_INDEX))
    assert none.item() == 0.0
    none.backward()
    assert torch.isfinite(logits.grad).all()


def test_clm_loss_shifts_inside():
    logits = torch.randn(2, 6, V)
    labels = torch.randint(0, V, (2, 6))
    labels[1, -1] = IGNORE_INDEX
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(clm_loss(logits, labels), expected)


def test_masked_accuracy():
    logits = torch.zeros(1, 4, V)
    logits[0, torch.arange(4), torch.tensor([1, 2, 3, 4])] = 1.0  # predictions 1, 2, 3, 4
    labels = torch.tensor([[1, 0, 3, IGNORE_INDEX]])
    assert masked_accuracy(logits, labels).item() == pytest.approx(2 / 3)
    assert masked_accuracy(logits, torch.tensor([[9, 1, 2, 3]]), shift=True).item() == 1.0
    assert masked_accuracy(logits, torch.full((1, 4), IGNORE_INDEX)).item() == 0.0


def test_tied_mlm_head_shares_the_embedding_and_stores_it_once():
    backbone = StandInBackbone()
    head = MaskedLMHead(D, V, transform=True, tied_embedding=backbone.embed)
    model = LanguageModel(backbone, head, objective="mlm")
    keys = set(model.state_dict())
    assert "backbone.embed.weight" in keys and not any(k.startswith("head.decoder.weight") for k in keys)
    assert {"head.dense.weight", "head.norm.weight", "head.norm.bias", "head.decoder.bias"} <= keys
    hidden = torch.randn(2, 3, D)
    expected = head.norm(F.gelu(head.dense(hidden))) @ backbone.embed.weight.T + head.decoder.bias
    torch.testing.assert_close(head(hidden), expected)
    head(hidden).sum().backward()
    assert backbone.embed.weight.grad is not None and backbone.embed.weight.grad.abs().sum() > 0


def test_gau_style_head_no_transform_no_bias():
    embed = nn.Embedding(V, D)
    head = MaskedLMHead(D, V, transform=False, bias=False, tied_embedding=embed)
    assert list(head.parameters()) == []
    hidden = torch.randn(2, 3, D)
    torch.testing.assert_close(head(hidden), hidden @ embed.weight.T)


def test_untied_and_scalenorm_heads():
    head = MaskedLMHead(D, V, transform=True, norm="scalenorm", activation="relu")
    assert head.decoder.weight.shape == (V, D)
    assert head(torch.randn(2, 3, D)).shape == (2, 3, V)
    with pytest.raises(ValueError, match="norm"):
        MaskedLMHead(D, V, transform=True, norm="rmsnorm")
    with pytest.raises(ValueError, match="tied embedding"):
        MaskedLMHead(D, V, transform=False, tied_embedding=nn.Embedding(V + 1, D))


def test_causal_head():
    embed = nn.Embedding(V, D)
    hidden = torch.randn(2, 3, D)
    torch.testing.assert_close(CausalLMHead(D, V, tied_embedding=embed)(hidden), hidden @ embed.weight.T)
    untied = CausalLMHead(D, V, bias=True)
    assert {name for name, _ in untied.named_parameters()} == {"decoder.weight", "decoder.bias"}


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_language_model_forward_and_loss(objective):
    backbone = StandInBackbone()
    head = CausalLMHead(D, V, tied_embedding=backbone.embed)
    model = LanguageModel(backbone, head, objective=objective)
    ids = torch.randint(0, V, (2, 5))
    out = model(ids)
    assert isinstance(out, LMOutput) and out.loss is None and out.aux_loss is None
    assert out.logits.shape == (2, 5, V) and out.hidden_states.shape == (2, 5, D)
    with_loss = model(ids, labels=ids)
    loss_fn = mlm_loss if objective == "mlm" else clm_loss
    torch.testing.assert_close(with_loss.loss, loss_fn(with_loss.logits, ids))
    assert model.config == {"vocab_size": V} and model.get_input_embeddings() is backbone.embed
    with pytest.raises(ValueError, match="objective"):
        LanguageModel(backbone, head, objective="seq2seq")


def test_initial_loss_is_log_vocab_for_uniform_logits():
    assert mlm_loss(torch.zeros(1, 4, V), torch.randint(0, V, (1, 4))).item() == pytest.approx(math.log(V))


def test_logits_at_labels_only_give_the_same_loss_gradients_and_accuracy():
    from lmforge.eval.lm import count_predictions

    backbone = StandInBackbone()
    head = MaskedLMHead(D, V, transform=True, tied_embedding=backbone.embed)
    model = LanguageModel(backbone, head, objective="mlm")
    ids = torch.randint(0, V, (3, 7))
    labels = torch.where(torch.rand(3, 7) < 0.3, ids, IGNORE_INDEX)
    labels[0, 0] = ids[0, 0]  # at least one target
    dense = model(ids, labels=labels)
    dense.loss.backward()
    dense_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    sparse = model(ids, labels=labels, logits_at_labels_only=True)
    sparse.loss.backward()
    n = int((labels != IGNORE_INDEX).sum())
    assert sparse.logits.shape == (n, V)
    torch.testing.assert_close(sparse.logits, dense.logits[labels != IGNORE_INDEX])
    torch.testing.assert_close(sparse.loss, dense.loss)
    for p, g in zip(model.parameters(), dense_grads, strict=True):
        torch.testing.assert_close(p.grad, g)
    assert count_predictions(sparse.logits, labels, objective="mlm") == count_predictions(
        dense.logits, labels, objective="mlm"
    )
    clm = LanguageModel(backbone, head, objective="clm")  # CLM ignores the option: every position is a target
    assert clm(ids, labels=ids, logits_at_labels_only=True).logits.shape == (3, 7, V)
