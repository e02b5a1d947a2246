"""HF run_chinese_ref.py reference files (issue 19 item 3): a known example, the round trip through our
segmentation, and one-line errors for a ref that does not fit the text."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import make_documents

from lmforge.data.chinese_ref import MAX_REF_LENGTH, apply_refs, is_chinese, read_ref_file, ref_positions
from lmforge.data.errors import PrepareError
from lmforge.data.segment import token_word_starts, word_starts
from lmforge.data.tokenizer_build import build_char_tokenizer
from lmforge.data.tokenizer_spec import codepoints


def encode(texts: list[str]):
    tokenizer = build_char_tokenizer([*texts, "我们喜欢北京天安门"], min_frequency=1)
    encoded = tokenizer.encode_batch(texts)
    return encoded, codepoints("\n".join(texts)).astype(np.int64)


def flags_with_refs(texts: list[str], refs) -> np.ndarray:
    encoded, cps = encode(texts)
    chars = apply_refs(
        word_starts(texts, segmenter="none"),
        refs,
        codepoints=cps,
        starts=encoded.starts,
        ends=encoded.ends,
        doc_tokens=encoded.doc_tokens,
        doc_chars=encoded.doc_chars,
    )
    return token_word_starts(chars, starts=encoded.starts, ends=encoded.ends)


def test_known_example() -> None:
    # [CLS] 我 们 喜 欢 北 京 [SEP]: LTP words 我们 / 喜欢 / 北京 -> run_chinese_ref.py writes [2, 4, 6]
    assert flags_with_refs(["我们喜欢北京"], [[2, 4, 6]]).tolist() == [True, False, True, False, True, False]
    assert flags_with_refs(["我们喜欢北京"], [[]]).all()  # no ref entry: every character is its own word
    assert flags_with_refs(["我们喜欢北京", "北京"], [None, [2]]).tolist()[-2:] == [True, False]


def test_round_trip_through_our_segmentation() -> None:
    texts = make_documents(40, seed=1)
    encoded, cps = encode(texts)
    ours = token_word_starts(word_starts(texts, segmenter="rjieba"), starts=encoded.starts, ends=encoded.ends)
    refs = []
    for doc in range(len(texts)):
        lo, hi = encoded.doc_tokens[doc], encoded.doc_tokens[doc + 1]
        refs.append(ref_positions(ours[lo:hi], codepoints=cps, starts=encoded.starts[lo:hi], ends=encoded.ends[lo:hi]))
    assert any(refs) and all(p < MAX_REF_LENGTH - 1 for ref in refs for p in ref)
    back = flags_with_refs(texts, refs)
    single_chinese = (encoded.ends - encoded.starts == 1) & is_chinese(cps[encoded.starts])
    np.testing.assert_array_equal(back[single_chinese], ours[single_chinese])  # HF refs describe Chinese only


def test_bad_refs_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(PrepareError, match="ref position 7 is not a single Chinese character of the 6 tokens"):
        flags_with_refs(["我们喜欢北京"], [[7]])
    with pytest.raises(PrepareError, match="ref position 0"):  # [CLS]
        flags_with_refs(["我们喜欢北京"], [[0]])
    with pytest.raises(PrepareError, match="ref position 2 is not"):  # a Latin token: another text
        flags_with_refs(["ab我们"], [[2]])
    (tmp_path / "ref.txt").write_text('[1, 2]\n\n[3]\n{"a": 1}\n', encoding="utf-8")
    refs = read_ref_file(tmp_path / "ref.txt")
    assert next(refs) == [1, 2] and next(refs) == [3]
    with pytest.raises(PrepareError, match="line 4: not a JSON list of token positions"):
        next(refs)
