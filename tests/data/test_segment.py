"""Segmentation: spans tile the text, batch segmentation == per-document, token word starts."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import SENTENCES
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.data.segment import SEGMENTERS, resolve_segmenter, segment, token_word_starts, word_starts

TEXTS = [*SENTENCES, "a\r\nb  c\t\td\n\n中文\u3000测试😀 x\u200by", "", "\r", " 开头有空格", "结尾\r"]


@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_spans_tile_text(segmenter):
    for text in TEXTS:
        spans = segment(text, segmenter=segmenter)
        assert "".join(text[s:e] for s, e in spans) == text
        assert all(s < e for s, e in spans)
    assert segment("我们在北京天安门广场", segmenter=segmenter)[0] == ((0, 2) if segmenter != "none" else (0, 1))


def test_none_segmenter_groups_latin_words_only():
    spans = segment("用Python写3.14个字", segmenter="none")
    words = ["用Python写3.14个字"[s:e] for s, e in spans]
    assert words == ["用", "Python", "写", "3", ".", "14", "个", "字"]


@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_batch_equals_per_document(segmenter):
    joined = word_starts(TEXTS, segmenter=segmenter)
    offset = 0
    for text in TEXTS:
        alone = word_starts([text], segmenter=segmenter)
        np.testing.assert_array_equal(joined[offset : offset + len(text)], alone[: len(text)])
        offset += len(text) + 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("中文分词测试北京天安门 \r\n\tab1。，"), max_size=30), max_size=4))
def test_batch_equals_per_document_fuzzed(texts):
    joined = word_starts(texts, segmenter="rjieba")
    offset = 0
    for text in texts:
        flags = word_starts([text], segmenter="rjieba")[: len(text)]
        spans = segment(text, segmenter="rjieba")
        np.testing.assert_array_equal(np.flatnonzero(flags), [s for s, _ in spans])
        # whitespace words may differ at a document seam ("\r" + "\n"); no token ever starts on whitespace
        visible = np.array([not c.isspace() for c in text], dtype=bool)
        np.testing.assert_array_equal(joined[offset : offset + len(text)][visible], flags[visible])
        offset += len(text) + 1


def test_token_word_starts_groups_overlapping_tokens():
    # characters 0-1 form one word; tokens 1 and 2 share character 1 (byte-level split of one character)
    char_starts = np.array([True, False, True, True, False])
    starts = np.array([0, 1, 1, 2, 3])
    ends = np.array([1, 2, 2, 3, 5])
    assert token_word_starts(char_starts, starts=starts, ends=ends).tolist() == [True, False, False, True, True]


def test_unknown_segmenter_is_a_value_error():
    with pytest.raises(ValueError, match="unknown segmenter 'lac'"):
        resolve_segmenter("lac")


def test_rjieba_falls_back_to_jieba(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "rjieba", None)  # makes "import rjieba" raise ImportError
    assert resolve_segmenter("rjieba") == "jieba"
    assert "falling back to jieba" in capsys.readouterr().err
