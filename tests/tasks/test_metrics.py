"""Fine-tuning metrics against values computed by hand (CMRC2018 edge cases included)."""

from __future__ import annotations

import pytest

from lmforge.eval.metrics import (
    bio_entities,
    classification_report,
    cmrc2018_em,
    cmrc2018_f1,
    cmrc2018_scores,
    confusion_matrix,
    entity_f1,
    mixed_segmentation,
    plot_confusion_matrix,
    remove_punctuation,
    squad_scores,
)


def test_classification_report_by_hand():
    gold, predicted = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0]
    report = classification_report(gold, predicted, ["a", "b", "c"])
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (report["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((0.5, 1.0, 2 / 3, 1))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == pytest.approx((1.0, 2 / 3, 0.8, 3))
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)


def test_never_predicted_class_and_empty_input():
    report = classification_report([0, 1], [0, 0], ["x", "y"])
    assert report["per_class"]["y"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert classification_report([], [], ["x"])["accuracy"] == 0.0
    with pytest.raises(ValueError, match="2 gold labels but 1"):
        confusion_matrix([0, 1], [0], 2)


def test_confusion_matrix_plot(tmp_path):
    out = plot_confusion_matrix([[3, 1], [0, 2]], ["体育", "财经"], tmp_path / "cm.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mixed_segmentation_splits_cjk_and_keeps_numbers_whole():
    assert mixed_segmentation("1,000 美元") == ["1,000", "美", "元"]
    assert mixed_segmentation("《红楼梦》第3.5回", remove_punc=True) == ["红", "楼", "梦", "第", "3.5", "回"]
    assert mixed_segmentation("  GPU加速 ") == ["gpu", "加", "速"]
    assert remove_punctuation("《红楼梦》：A-B") == "红楼梦ab"


@pytest.mark.parametrize(
    ("answers", "prediction", "em", "f1"),
    [
        (["北京大学"], "北京", 0.0, 2 / 3),  # P 1, R 1/2
        (["《红楼梦》"], "红楼梦", 1.0, 1.0),  # listed punctuation is removed for EM and F1
        (["1,000 美元"], "1,000美元", 0.0, 1.0),  # same segments, but the space survives EM
        (["天安门", "北京天安门广场"], "天安门广场", 0.0, 5 / 6),  # max over golds: 0.75 vs 2*(5/7)/(12/7)
        (["中国人民"], "中人国民", 0.0, 0.25),  # longest *contiguous* common run is 1 (a bag of chars gives 1.0)
        (["等等…"], "等等", 0.0, 0.8),  # a lone "…" is not in the script's list ("……" is one entry)
        (["GPU"], "gpu", 1.0, 1.0),  # lower-cased
        (["北京"], "", 0.0, 0.0),
    ],
)
def test_cmrc2018_edge_cases(answers, prediction, em, f1):
    assert cmrc2018_em(answers, prediction) == em
    assert cmrc2018_f1(answers, prediction) == pytest.approx(f1)


def test_cmrc2018_scores_count_unanswered_questions_as_zero():
    gold = {"q1": ["北京"], "q2": ["上海"], "q3": ["广州市"]}
    scores = cmrc2018_scores(gold, {"q1": "北京", "q3": "广州"})
    assert scores["total"] == 3 and scores["skipped"] == 1
    assert scores["em"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8) / 3)  # 广州 vs 广州市: P 1, R 2/3
    assert scores["average"] == pytest.approx((scores["em"] + scores["f1"]) / 2)


def test_squad_scores_by_hand():
    gold = {"a": ["The Eiffel Tower"], "b": ["eiffel tower"]}
    scores = squad_scores(gold, {"a": "eiffel tower!", "b": "Eiffel"})
    assert scores["em"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)


def test_bio_entities():
    tags = ["B-name", "I-name", "O", "B-address", "I-address", "I-address", "O", "I-game", "I-game"]
    assert bio_entities(tags) == [("name", 0, 1), ("address", 3, 5), ("game", 7, 8)]
    assert bio_entities(["B-a", "I-b", "B-a", "B-a"]) == [("a", 0, 0), ("b", 1, 1), ("a", 2, 2), ("a", 3, 3)]
    assert bio_entities(["S-x", "B-y", "E-y", "O"]) == [("x", 0, 0), ("y", 1, 2)]
    assert bio_entities([]) == []


def test_entity_f1_by_hand():
    gold = [[("name", 0, 1), ("address", 3, 5)], []]
    predicted = [[("name", 0, 1), ("address", 3, 4)], [("game", 7, 8)]]
    scores = entity_f1(gold, predicted)
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((1 / 3, 1 / 2, 0.4))
    assert scores["per_type"]["name"]["f1"] == 1.0
    assert scores["per_type"]["address"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["per_type"]["game"]["support"] == 0
