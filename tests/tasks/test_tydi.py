"""TyDi QA primary task: byte offsets of multi-byte text, answer types, windows, the 3-way loss, prediction and the
passage / minimal-answer F1 of ``tydi_eval.py`` on hand-computed cases. Fixture files are written by the tests."""

import json

import pytest
import torch
import torch.nn.functional as F

from lmforge.models.canine.config import PRESETS, CanineConfig
from lmforge.models.canine.model import CanineModel
from lmforge.tasks.tydi import (
    MINIMAL,
    NO,
    PASSAGE,
    PASSAGE_MARKER,
    QUESTION_MARKER,
    UNKNOWN,
    YES,
    ByteOffsets,
    TydiPrediction,
    TydiQAModel,
    collate,
    make_features,
    predict,
    read_tydi,
    tydi_scores,
)

# Chinese (3 bytes/char), Arabic (2), an emoji (4) and ASCII (1) in one document.
PASSAGES = ["北京是中国的首都。", "مرحبا بالعالم", "Emoji 😀 here.", "长城很长。"]
DOCUMENT = "\n".join(PASSAGES)


def _byte_span(text: str, part: str, start_char: int = 0) -> tuple[int, int]:
    start = text.index(part, start_char)
    return len(text[:start].encode()), len(text[: start + len(part)].encode())


def _record(example_id, question, annotations):
    candidates, position = [], 0
    for passage in PASSAGES:
        start, end = _byte_span(DOCUMENT, passage, position)
        candidates.append({"plaintext_start_byte": start, "plaintext_end_byte": end})
        position = DOCUMENT.index(passage, position) + len(passage)
    return {
        "example_id": example_id,
        "language": "chinese",
        "question_text": question,
        "document_plaintext": DOCUMENT,
        "passage_answer_candidates": candidates,
        "annotations": annotations,
    }


def _annotation(passage=-1, minimal=None, yes_no="NONE"):
    start, end = _byte_span(DOCUMENT, minimal) if minimal else (-1, -1)
    return {
        "passage_answer": {"candidate_index": passage},
        "minimal_answer": {"plaintext_start_byte": start, "plaintext_end_byte": end},
        "yes_no_answer": yes_no,
    }


@pytest.fixture
def tydi_file(tmp_path):
    records = [
        _record(1, "中国的首都是哪里？", [_annotation(0, "北京")]),
        _record(2, "长城长吗？", [_annotation(3, yes_no="YES")]),
        _record(3, "What is here?", [_annotation(2, "😀")]),
        _record(4, "什么？", [_annotation()]),
        _record(5, "Passage only?", [_annotation(1)]),
    ]
    path = tmp_path / "tydi.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_byte_offsets_of_multibyte_text():
    offsets = ByteOffsets("a北😀b")  # bytes: a=0, 北=1..3, 😀=4..7, b=8, end=9
    assert [offsets.to_char(b) for b in (0, 1, 4, 8, 9)] == [0, 1, 2, 3, 4]
    assert offsets.to_char(2) == 1  # inside 北
    assert [offsets.to_byte(c) for c in range(5)] == [0, 1, 4, 8, 9]
    with pytest.raises(ValueError, match="outside the text"):
        offsets.to_char(10)


def test_reader_converts_byte_offsets_and_answer_types(tydi_file):
    examples = list(read_tydi(tydi_file))
    assert [e.annotations[0].answer_type for e in examples] == [MINIMAL, YES, MINIMAL, UNKNOWN, PASSAGE]
    first, emoji = examples[0], examples[2]
    start, end = first.annotations[0].minimal
    assert first.context[start:end] == "北京"
    start, end = emoji.annotations[0].minimal
    assert emoji.context[start:end] == "😀"  # 4 bytes, one character
    assert [first.context[s:e] for s, e in first.passages] == PASSAGES
    bad = tydi_file.parent / "bad.jsonl"
    bad.write_text('{"example_id": 1}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        list(read_tydi(bad))


def test_windows_markers_and_targets(tydi_file):
    examples = list(read_tydi(tydi_file))
    (feature,) = make_features(examples[0], max_seq_length=128, doc_stride=16)
    assert feature.input_ids[:2] == [0xE000, QUESTION_MARKER] and feature.input_ids[-1] == 0xE001
    assert feature.input_ids.count(PASSAGE_MARKER) == 4
    assert feature.answer_type == MINIMAL
    assert "".join(chr(feature.input_ids[t]) for t in (feature.start_position, feature.end_position)) == "北京"
    (yes,) = make_features(examples[1], max_seq_length=128)
    assert yes.answer_type == YES  # YES/NO point at their passage
    passage = "".join(chr(c) for c in yes.input_ids[yes.start_position : yes.end_position + 1])
    assert passage == PASSAGES[3]
    # small windows: several windows, the answer only in those that hold the whole span
    windows = make_features(examples[2], max_seq_length=30, doc_stride=8)
    assert len(windows) > 2
    inside = [w for w in windows if w.answer_type == MINIMAL]
    assert inside and all(chr(w.input_ids[w.start_position]) == "😀" for w in inside)
    assert all(w.start_position == 0 and w.answer_type == UNKNOWN for w in windows if w not in inside)
    covered = {o[0] for w in windows for o in w.offsets if o is not None}
    assert covered == set(range(len(DOCUMENT)))  # the stride windows cover the whole document


def test_loss_is_the_mean_of_three_cross_entropies(tydi_file):
    cfg = CanineConfig(**PRESETS["tiny"])
    model = TydiQAModel(CanineModel(cfg), dropout=0.0).eval()
    examples = list(read_tydi(tydi_file))
    features = [f for e in examples[:3] for f in make_features(e, max_seq_length=48, doc_stride=16)]
    batch = collate(features)
    out = model(**batch)
    start, end = out.logits[..., 0], out.logits[..., 1]
    expected = (
        F.cross_entropy(start, batch["start_positions"])
        + F.cross_entropy(end, batch["end_positions"])
        + F.cross_entropy(out.answer_type_logits, batch["answer_types"])
    ) / 3
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.answer_type.weight.grad.abs().sum() > 0 and model.span.qa_outputs.weight.grad.abs().sum() > 0


def test_predict_picks_span_type_and_passage(tydi_file):
    example = next(read_tydi(tydi_file))
    features = make_features(example, max_seq_length=128)
    (feature,) = features
    logits = torch.full((1, len(feature.input_ids), 2), -10.0)
    logits[0, feature.start_position, 0] = logits[0, feature.end_position, 1] = 10.0
    types = torch.zeros(1, 5)
    types[0, MINIMAL] = 5.0
    prediction = predict(example, features, logits, types, max_answer_length=100)
    assert prediction.passage_index == 0 and example.context[slice(*prediction.minimal)] == "北京"
    types[0, UNKNOWN] = 9.0
    assert predict(example, features, logits, types).passage_index == -1  # UNKNOWN = null
    types[0, NO] = 10.0
    assert predict(example, features, logits, types).answer_type == NO


def test_scores_like_tydi_eval(tydi_file):
    examples = list(read_tydi(tydi_file))
    predictions = {
        "1": TydiPrediction("1", MINIMAL, 0, examples[0].annotations[0].minimal, 1.0),  # exact
        "2": TydiPrediction("2", NO, 3, None, 1.0),  # right passage, wrong yes/no
        "3": TydiPrediction("3", MINIMAL, 1, (examples[2].annotations[0].minimal[0], examples[2].passages[2][1]), 1.0),
        "4": TydiPrediction("4", PASSAGE, 0, None, 1.0),  # gold is null: a false positive
    }
    scores = tydi_scores(examples, predictions)
    # passage: 4 predictions, correct for 1 and 2; 4 non-null golds (1, 2, 3, 5)
    assert scores["passage_precision"] == pytest.approx(2 / 4) and scores["passage_recall"] == pytest.approx(2 / 4)
    # minimal: predictions 1, 2, 3 (4 is PASSAGE = no minimal); golds 1, 2, 3.
    # example 3: 😀 (4 bytes) predicted to the end of its passage: "😀 here." = 4 + 6 bytes -> p = 4 / 10, r = 1;
    # tydi_eval.py credits the example's partial-match F1 (0.8 / 1.4) in both precision and recall
    credit = 1 + 0 + 2 * 0.4 / 1.4
    precision = recall = credit / 3
    assert scores["minimal_precision"] == pytest.approx(precision)
    assert scores["minimal_recall"] == pytest.approx(recall)
    assert scores["minimal_f1"] == pytest.approx(2 * precision * recall / (precision + recall))
