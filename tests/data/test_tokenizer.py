"""Tokenizers: round trips, fast path == tokenizers reference, transformers loading, fingerprints, specials."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from data_helpers import BUNDLED_CORPUS, SENTENCES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.data.tokenizer import (
    CODEPOINT_SPECIALS,
    build_bpe_tokenizer,
    build_char_tokenizer,
    build_codepoint_tokenizer,
    load_tokenizer,
)

MIXED = [
    "北京天安门广场 Hello World，你好😀 [MASK] 한국어 café naïve İstanbul ＡＢＣ",
    "a\x01b\u200bc 123 3.14 " + "x" * 150,
    "",
    "\r\n\t  ",
    "qzq 中文 ǅ",
]


def assert_same_encoding(tokenizer, texts):
    fast, ref = tokenizer.encode_batch(texts), tokenizer.reference_encode_batch(texts)
    np.testing.assert_array_equal(fast.ids, ref.ids)
    np.testing.assert_array_equal(fast.starts, ref.starts)
    np.testing.assert_array_equal(fast.doc_tokens, ref.doc_tokens)


def test_char_vocab_layout(char_tokenizer):
    vocab = char_tokenizer.backend.get_vocab()
    assert [char_tokenizer.convert_ids_to_tokens([i])[0] for i in range(5)] == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]
    assert "##京" in vocab and "京" in vocab  # CJK continuation entries (bert-base-chinese layout)
    assert "##a" in vocab and "a" in vocab and "7" in vocab  # printable ASCII always present
    assert char_tokenizer.eos_token_id is None and char_tokenizer.document_separator_id == 3
    assert char_tokenizer.random_token_range == (5, char_tokenizer.vocab_size)


def test_char_vocab_respects_budget_and_frequency():
    tokenizer = build_char_tokenizer(["甲甲甲乙乙丙"], vocab_size=5 + 94 + 62 + 4, min_frequency=2, lowercase=True)
    vocab = tokenizer.backend.get_vocab()
    assert tokenizer.vocab_size <= 5 + 94 + 62 + 4
    assert "甲" in vocab and "##甲" in vocab and "乙" in vocab  # by frequency, within budget
    assert "丙" not in vocab  # below min_frequency
    no_cont = build_char_tokenizer(["甲甲甲"], vocab_size=1000, min_frequency=1, cjk_continuations=False)
    assert "##甲" not in no_cont.backend.get_vocab() and "##a" in no_cont.backend.get_vocab()


def test_char_fast_path_matches_tokenizers(char_tokenizer):
    assert char_tokenizer._table is not None
    assert_same_encoding(char_tokenizer, SENTENCES + MIXED)
    assert_same_encoding(char_tokenizer, [MIXED[0]])  # a document with a "complex" character alone
    encoded = char_tokenizer.encode_batch(MIXED)
    assert encoded.doc_tokens[2] == encoded.doc_tokens[3]  # the empty document has no tokens


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=40), max_size=4))
def test_char_fast_path_matches_tokenizers_on_any_unicode(char_tokenizer, texts):
    assert_same_encoding(char_tokenizer, texts)


def test_char_fast_path_matches_tokenizers_on_bundled_corpus(char_tokenizer):
    texts = []
    for path in sorted(BUNDLED_CORPUS.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            texts += [json.loads(line)["text"] for _, line in zip(range(150), handle)]
    assert_same_encoding(char_tokenizer, texts)


def test_char_round_trip(char_tokenizer):
    for text in [*SENTENCES[:4], "hello world, 3.14 的 abc"]:
        expected = text.lower().replace(" ", "")
        assert char_tokenizer.decode(char_tokenizer.encode(text)).replace(" ", "") == expected
    assert char_tokenizer.decode(char_tokenizer.encode("hello world")) == "hello world"
    assert char_tokenizer.decode(char_tokenizer.encode("床前明月光，疑是地上霜。")) == "床前明月光，疑是地上霜。"


def test_text_spelling_a_special_is_not_special(char_tokenizer):
    ids = char_tokenizer.encode("看[MASK]和[CLS]")
    assert char_tokenizer.mask_token_id not in ids and char_tokenizer.cls_token_id not in ids
    assert_same_encoding(char_tokenizer, ["看[MASK]和[CLS]"])


def test_char_saved_tokenizer_loads_in_transformers(char_tokenizer, tmp_path):
    transformers = importlib.import_module("transformers")
    char_tokenizer.save(tmp_path)
    for cls in (transformers.BertTokenizerFast, transformers.AutoTokenizer):
        hf = cls.from_pretrained(tmp_path)
        for text in [*SENTENCES, "Hello World 3.14"]:
            ours = [char_tokenizer.cls_token_id, *char_tokenizer.encode(text), char_tokenizer.sep_token_id]
            assert hf(text)["input_ids"] == ours
        assert hf.mask_token_id == char_tokenizer.mask_token_id and hf.pad_token_id == 0


def test_save_load_keeps_fingerprint_and_detects_edits(char_tokenizer, tmp_path):
    char_tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.fingerprint == char_tokenizer.fingerprint and loaded.kind == "char"
    assert loaded.encode(SENTENCES[2]) == char_tokenizer.encode(SENTENCES[2])
    spec = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"]["lowercase"] = not spec["normalizer"]["lowercase"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ValueError, match="modified"):
        load_tokenizer(tmp_path)
    other = build_char_tokenizer(["别的语料"], vocab_size=500, min_frequency=1)
    assert other.fingerprint != char_tokenizer.fingerprint


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError, match=r"lmforge_tokenizer\.json is missing"):
        load_tokenizer(tmp_path)


def test_bpe_round_trip_and_transformers(documents, tmp_path):
    tokenizer = build_bpe_tokenizer(documents + MIXED, vocab_size=400, min_frequency=2)
    assert tokenizer.vocab_size <= 400
    for text in SENTENCES + MIXED:
        assert tokenizer.decode(tokenizer.encode(text)) == text  # byte-level: exact
    # the pre-split keeps Han pieces at <= 2 characters
    pieces = tokenizer.backend.pre_tokenizer.pre_tokenize_str("北京天安门广场")
    assert all(len(span[1]) and span[1][1] - span[1][0] <= 2 for span in pieces)
    assert tokenizer.eos_token_id is not None and tokenizer.document_separator_id == tokenizer.eos_token_id
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).fingerprint == tokenizer.fingerprint
    transformers = importlib.import_module("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf(SENTENCES[2])["input_ids"] == tokenizer.encode(SENTENCES[2])
    assert hf.mask_token_id == tokenizer.mask_token_id and hf.pad_token_id == tokenizer.pad_token_id


def test_codepoint_tokenizer(tmp_path):
    tokenizer = build_codepoint_tokenizer()
    assert CODEPOINT_SPECIALS == {
        "pad": 0,
        "cls": 0xE000,
        "sep": 0xE001,
        "bos": 0xE002,
        "mask": 0xE003,
        "reserved": 0xE004,
    }
    assert (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id) == (
        0,
        0xE000,
        0xE001,
        0xE003,
    )
    text = "春眠不觉晓 😀 abc"
    assert tokenizer.encode(text) == [ord(c) for c in text]
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode("a\x00\ue000") == [ord("a"), 0xFFFD, 0xFFFD]  # never a special from text
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).fingerprint == tokenizer.fingerprint
    transformers = importlib.import_module("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf("你好")["input_ids"] == [0xE000, *tokenizer.encode("你好"), 0xE001]


@settings(max_examples=50, deadline=None)
@given(st.text())
def test_codepoint_round_trip_any_unicode(text):
    tokenizer = build_codepoint_tokenizer()
    specials = {chr(i) for i in (0, 0xE000, 0xE001, 0xE002, 0xE003, 0xE004)}
    assert tokenizer.decode(tokenizer.encode(text)) == "".join("\ufffd" if c in specials else c for c in text)


def test_unified_ideograph_shortcut_equals_probing(char_tokenizer):
    from lmforge.data.tokenizer import _CharTable

    probed = _CharTable(char_tokenizer.backend, char_tokenizer.backend.get_vocab(), char_tokenizer.unk_token_id)
    block = np.arange(0x4E00, 0x9FCD)
    probed.ensure(block)
    table = char_tokenizer._table
    for name in ("kind", "first", "cont"):
        np.testing.assert_array_equal(getattr(probed, name)[block], getattr(table, name)[block])
