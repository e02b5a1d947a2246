"""HF run_chinese_ref.py reference files (issue 19 item 3): a known example, the round trip through our
segmentation, and one-line errors for a ref that does not fit the text; then the same through ``prepare all
--train_ref_file / --write_ref_file`` (a hand-made file, written then read back, count mismatches)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import make_documents

from lmforge.data.chinese_ref import MAX_REF_LENGTH, apply_refs, is_chinese, read_ref_file, ref_positions
from lmforge.data.errors import PrepareError
from lmforge.data.prepare import (
    PrepareAllArgs,
    ShardsArgs,
    TokenizerArgs,
    prepare_all,
    prepare_shards,
    prepare_tokenizer,
)
from lmforge.data.segment import token_word_starts, word_starts
from lmforge.data.shards import open_shards
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


# ---- the flags: prepare all --train_ref_file / --write_ref_file ---------------------------------------------------


def _prepare_lines(tmp_path: Path, name: str, lines: list[str], **kwargs) -> Path:
    text = tmp_path / f"{name}.txt"
    if not text.exists():
        text.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    settings = dict(validation_split_percentage=0.0, max_seq_length=64, progress=False)
    return prepare_all(PrepareAllArgs(input=[str(text)], output_dir=str(tmp_path / name), **settings, **kwargs))


def _documents(out: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(token ids, word-start flags) of every training document, in order."""
    shards = open_shards(out / "shards" / "train")
    spans = [shards.document_span(d) for d in range(shards.num_documents)]
    return [(shards.tokens(lo, hi), shards.word_starts(lo, hi)) for lo, hi in spans]


def test_hand_made_ref_file_drives_the_word_flags(tmp_path: Path) -> None:
    lines = ["我们喜欢北京", "北京天安门", "我们 like 北京"]
    # [CLS] 我 们 喜 欢 北 京: words 我们 / 喜欢 / 北京; 北京 / 天安门; 我们 / like (l ##i ##k ##e) / 北京
    (tmp_path / "ref.txt").write_text("[2, 4, 6]\n[2, 4, 5]\n\n[2, 8]\n", encoding="utf-8")  # blank lines skipped
    out = _prepare_lines(tmp_path, "hand", ["", *lines[:2], "  ", lines[2]], train_ref_file=str(tmp_path / "ref.txt"))
    flags = [words.tolist() for _, words in _documents(out)]
    assert flags == [
        [True, False, True, False, True, False],
        [True, False, True, False, False],
        [True, False, True, False, False, False, True, False],
    ]
    index = json.loads((out / "shards" / "train" / "index.json").read_text(encoding="utf-8"))
    assert index["build"]["train_ref_file"] == str(tmp_path / "ref.txt") and index["build"]["segmenter"] == "rjieba"
    assert index["layout"] == "document"  # each line its own sequence, as run_mlm_wwm.py


def test_written_refs_read_back_give_the_same_word_flags(tmp_path: Path) -> None:
    lines = make_documents(60, seed=5)
    lines += [lines[0], "短句。"]  # a duplicate and a short line stay: ref line k is text line k
    lines.append("".join(make_documents(20, seed=7)))  # > 510 tokens: past the ref's window the segmenter decides
    ours = _prepare_lines(tmp_path, "ours", lines, line_by_line=True, write_ref_file=str(tmp_path / "ours.ref"))
    refs = list(read_ref_file(tmp_path / "ours.ref"))
    assert len(refs) == len(lines) and any(refs)
    assert not (tmp_path / "ours.ref.tmp").exists()
    (tmp_path / "back.txt").write_text((tmp_path / "ours.txt").read_text(encoding="utf-8"), encoding="utf-8")
    back = _prepare_lines(tmp_path, "back", lines, train_ref_file=str(tmp_path / "ours.ref"))
    ours_docs, back_docs = _documents(ours), _documents(back)
    assert len(ours_docs) == len(back_docs) == len(lines)
    for (ids, words), (ids_back, words_back) in zip(ours_docs, back_docs):
        np.testing.assert_array_equal(ids_back, ids)
        np.testing.assert_array_equal(words_back, words)


def test_ref_count_mismatch_is_one_line_before_tokenizing(tmp_path: Path) -> None:
    lines = make_documents(5, seed=6)
    (tmp_path / "ref.txt").write_text("[]\n" * 4, encoding="utf-8")
    with pytest.raises(PrepareError, match=r"has 4 non-blank lines but the text has 5; ref line k must belong"):
        _prepare_lines(tmp_path, "short", lines, train_ref_file=str(tmp_path / "ref.txt"))
    assert not (tmp_path / "short" / "tokenizer").exists()
    with pytest.raises(PrepareError, match=r"--train_ref_file '/nonexistent\.ref' does not exist"):
        _prepare_lines(tmp_path, "missing", lines, train_ref_file="/nonexistent.ref")
    with pytest.raises(PrepareError, match="no use with --objective clm"):
        _prepare_lines(tmp_path, "clm", lines, train_ref_file=str(tmp_path / "ref.txt"), objective="clm")
    (tmp_path / "ref.txt").write_text("[]\n" * 5, encoding="utf-8")  # the shard stage checks its corpus too
    corpus = tmp_path / "short" / "corpus"
    tokenizer = prepare_tokenizer(TokenizerArgs(input=[str(corpus)], output_dir=str(tmp_path / "tok")))
    args = ShardsArgs(
        input=[str(corpus)], tokenizer_path=str(tokenizer), output_dir=str(tmp_path / "s"), progress=False
    )
    prepare_shards(dataclasses.replace(args, train_ref_file=str(tmp_path / "ref.txt")))
    (tmp_path / "ref.txt").write_text("[]\n" * 6, encoding="utf-8")
    with pytest.raises(PrepareError, match=r"has 6 non-blank lines but the corpus has 5 documents"):
        prepare_shards(
            dataclasses.replace(args, output_dir=str(tmp_path / "s2"), train_ref_file=str(tmp_path / "ref.txt"))
        )
