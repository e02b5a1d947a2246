"""Task heads (sequence classification, span QA, token tagging) on every registered backbone, and span decoding."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.heads.classification import (
    SequenceClassificationHead,
    TaskModel,
    backbone_output_size,
    default_pooling,
    is_causal_backbone,
    pool_hidden,
)
from lmforge.heads.qa import SpanHead, SpanWindow, decode_spans, split_span_logits, top_spans
from lmforge.heads.token_classification import TokenClassificationHead
from lmforge.models.registry import build_model, get_config, list_models

ARCHITECTURES = sorted(list_models())


def _backbone(name: str):
    torch.manual_seed(0)
    entry = list_models()[name]
    config = get_config(name, preset="tiny")
    return build_model(name, config=config), default_pooling(config, builders=entry.builders)


def _batch(vocab: int = 50):
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab, (3, 12), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    input_ids[1, 9:] = 0
    return input_ids, attention_mask


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_head_trains_on_every_backbone(name):
    backbone, pooling = _backbone(name)
    hidden = backbone_output_size(backbone)
    input_ids, attention_mask = _batch()
    spans = {"start_positions": torch.tensor([1, 2, 40]), "end_positions": torch.tensor([3, 2, 41])}
    heads = {
        "cls": (SequenceClassificationHead(hidden, 3, pooling=pooling), {"labels": torch.tensor([0, 2, 1])}),
        "tok": (TokenClassificationHead(hidden, 5, dropout=0.0), {"labels": torch.randint(0, 5, (3, 12))}),
        "qa": (SpanHead(hidden), spans),
    }  # fmt: skip
    for kind, (head, targets) in heads.items():
        model = TaskModel(backbone, head)
        out = model(input_ids, attention_mask=attention_mask, **targets)
        expected = {"cls": (3, 3), "tok": (3, 12, 5), "qa": (3, 12, 2)}[kind]
        assert tuple(out.logits.shape) == expected, kind
        assert torch.isfinite(out.loss), kind
        model.zero_grad()
        out.loss.backward()
        assert head.state_dict()  # the head owns parameters ...
        for pname, param in head.named_parameters():  # ... and every one of them learns
            assert param.grad is not None and param.grad.abs().sum() > 0, (kind, pname)
        assert model(input_ids, attention_mask=attention_mask).loss is None


def test_causal_backbones_pool_the_last_token_and_encoders_the_mean():
    assert default_pooling(get_config("gpt", preset="tiny"), builders=list_models()["gpt"].builders) == "last"
    # encoders: mean over real tokens, not [CLS], which MLM pretraining never trains (benchmarks/quality.md)
    for name in ("bert", "gau-alpha", "flash-quad"):
        assert default_pooling(get_config(name, preset="tiny"), builders=list_models()[name].builders) == "mean"
    assert is_causal_backbone(get_config("bert", preset="tiny", is_decoder=True))


def test_pooling_picks_the_right_rows():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)  # values = flat index
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])  # right- and left-padded
    assert pool_hidden(hidden, mask, "cls").flatten().tolist() == [0.0, 4.0]
    assert pool_hidden(hidden, mask, "last").flatten().tolist() == [2.0, 7.0]
    assert pool_hidden(hidden, mask, "mean").flatten().tolist() == [1.0, 6.0]
    with pytest.raises(ValueError, match="pooling"):
        pool_hidden(hidden, mask, "max")


def test_last_token_classification_ignores_padding_on_a_causal_backbone():
    backbone, pooling = _backbone("gpt")
    model = TaskModel(backbone, SequenceClassificationHead(backbone.config.hidden_size, 2, pooling=pooling)).eval()
    ids = torch.tensor([[7, 8, 9, 10]])
    padded = torch.tensor([[7, 8, 9, 10, 0, 0]])
    short = model(ids, attention_mask=torch.ones_like(ids)).logits
    long = model(padded, attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0]])).logits
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-4)


def test_span_head_masks_padding_and_clamps_outside_positions():
    head = SpanHead(4)
    hidden = torch.randn(1, 5, 4)
    logits = head(hidden, torch.tensor([[1, 1, 1, 0, 0]]))
    start, end = split_span_logits(logits)
    assert torch.isinf(start[0, 3:]).all() and torch.isfinite(start[0, :3]).all() and end.shape == (1, 5)
    # a position past the window is a "no answer here" target: index 0
    outside = head.loss(logits, start_positions=torch.tensor([99]), end_positions=torch.tensor([99]))
    at_zero = head.loss(logits, start_positions=torch.tensor([0]), end_positions=torch.tensor([0]))
    torch.testing.assert_close(outside, at_zero)


def test_token_loss_ignores_padding_and_unlabelled_positions():
    head = TokenClassificationHead(4, 3, dropout=0.0)
    logits = torch.zeros(1, 4, 3)
    logits[0, 0] = torch.tensor([5.0, 0.0, 0.0])
    labels = torch.tensor([[1, -100, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    expected = (-torch.log_softmax(logits[0, 0], -1)[1] + math.log(3)) / 2
    torch.testing.assert_close(head.loss(logits, labels=labels, attention_mask=mask), expected)
    empty = head.loss(logits, labels=torch.full((1, 4), -100))
    assert empty.item() == 0.0


def test_top_spans_by_hand():
    start = [0.0, 3.0, 1.0, 2.0, -1.0]
    end = [0.0, 0.5, 4.0, 1.0, 2.0]
    allowed = [False, True, True, True, True]
    spans = top_spans(start, end, allowed=allowed, n_best=3, max_answer_length=2)
    # best starts 1, 3, 2; best ends 2, 4, 3: (1,2)=7, (2,2)=5, (3,4)=4, (3,3)=3; (1,3) is 3 tokens: too long
    assert [(s.start, s.end, s.score) for s in spans] == [(1, 2, 7.0), (2, 2, 5.0), (3, 4, 4.0)]
    # a start token that another window sees with more context is skipped
    spans = top_spans(start, end, allowed=allowed, n_best=3, max_context=[True, False, True, True, True])
    assert (spans[0].start, spans[0].end) == (2, 2)


def test_decode_spans_merges_windows_and_maps_characters():
    context = "北京是中国的首都"
    # window 1 covers characters 0..4, window 2 characters 3..7 (stride overlap), token 0 is [CLS]
    w1 = SpanWindow([0, 5, 1, 0, 0, 0], [0, 0, 6, 0, 0, 0], [None, (0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])
    w2 = SpanWindow([0, 0, 0, 0, 2, 0], [0, 0, 0, 0, 0, 3], [None, (3, 4), (4, 5), (5, 6), (6, 7), (7, 8)])
    answers = decode_spans([w1, w2], context, n_best=5, max_answer_length=3)
    assert answers[0].text == "北京" and (answers[0].char_start, answers[0].char_end) == (0, 2)
    assert answers[0].score == 11.0
    assert math.isclose(sum(a.probability for a in answers), 1.0)
    assert "首都" in [a.text for a in answers]
    assert answers == sorted(answers, key=lambda a: -a.score)
    # nothing decodable (no context token) -> the empty answer
    assert decode_spans([SpanWindow([1.0], [1.0], [None])], context)[0].text == ""
