"""Shards: write -> read equality, the uint16/uint32 switch, MLM windows, CLM blocks, fingerprints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmforge.data.shards import ShardWriter, check_fingerprint, open_shards, token_dtype
from lmforge.data.tokenizer import load_tokenizer

INFO = {"fingerprint": "f" * 16, "kind": "char", "pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3}


def random_documents(rng: np.random.Generator, count: int, vocab_size: int, max_length: int = 40):
    docs = [rng.integers(5, vocab_size, size=rng.integers(0, max_length)) for _ in range(count)]
    flags = [rng.random(d.size) < 0.6 for d in docs]
    for f in flags:
        if f.size:
            f[0] = True
    return docs, flags


def write(tmp_path, docs, flags, *, batches: int = 3, **kwargs):
    writer = ShardWriter(tmp_path, vocab_size=kwargs.pop("vocab_size", 100), tokenizer_info=INFO, **kwargs)
    for part in np.array_split(np.arange(len(docs)), batches):
        part = part.tolist()
        ids = np.concatenate([docs[i] for i in part]) if part else np.zeros(0, dtype=np.int64)
        starts = np.concatenate([flags[i] for i in part]) if part else np.zeros(0, dtype=bool)
        writer.add(ids, word_starts=starts, doc_lengths=np.array([docs[i].size for i in part], dtype=np.int64))
    writer.close()
    return open_shards(tmp_path)


def test_token_dtype_switch_at_65536():
    assert token_dtype(100) == np.uint16
    assert token_dtype(65536) == np.uint16  # ids 0..65535
    assert token_dtype(65537) == np.uint32
    assert token_dtype(0x110000) == np.uint32  # codepoints
    with pytest.raises(ValueError):
        token_dtype(0)


@pytest.mark.parametrize("vocab_size", [65536, 65537])
def test_largest_id_round_trips(tmp_path, vocab_size):
    ids = np.array([vocab_size - 1, 5, vocab_size - 2])
    flags = [np.ones(3, dtype=bool)]
    shards = write(tmp_path, [ids], flags, batches=1, objective="mlm", max_seq_length=8, vocab_size=vocab_size)
    assert shards.dtype == (np.uint16 if vocab_size == 65536 else np.uint32)
    assert (tmp_path / "tokens-00000.bin").stat().st_size == 3 * shards.dtype.itemsize
    np.testing.assert_array_equal(shards.document(0), ids)
    np.testing.assert_array_equal(shards[0]["input_ids"], [2, *ids, 3])


def test_id_outside_vocabulary_is_rejected(tmp_path):
    writer = ShardWriter(tmp_path, objective="mlm", vocab_size=65536, tokenizer_info=INFO, max_seq_length=8)
    with pytest.raises(ValueError, match="token id 65536 is outside the vocabulary"):
        writer.add(np.array([65536]), word_starts=np.array([True]), doc_lengths=np.array([1]))


@pytest.mark.parametrize("tokens_per_file", [7, 1 << 20])
def test_mlm_write_read_equality(tmp_path, tokens_per_file):
    rng = np.random.default_rng(0)
    docs, flags = random_documents(rng, 60, vocab_size=1000)
    shards = write(
        tmp_path,
        docs,
        flags,
        objective="mlm",
        max_seq_length=12,
        vocab_size=1000,
        tokens_per_file=tokens_per_file,
        layout="document",
    )
    nonempty = [i for i, d in enumerate(docs) if d.size]
    assert shards.num_documents == len(nonempty) and shards.index["num_empty_documents"] == len(docs) - len(nonempty)
    assert (len(shards.files) > 1) == (tokens_per_file == 7)
    for k, i in enumerate(nonempty):
        np.testing.assert_array_equal(shards.document(k), docs[i])
    # document layout: [CLS] + consecutive tokens of one document + [SEP], <= max_seq_length, cut only at word starts,
    # and together they give back every document exactly
    rebuilt, rebuilt_flags = [], []
    for example in shards.read(range(len(shards))):
        ids, starts = example["input_ids"], example["word_starts"]
        assert ids[0] == 2 and ids[-1] == 3 and 3 <= ids.size <= 12
        assert starts[1], "a sequence never begins in the middle of a word"
        rebuilt.append(ids[1:-1])
        rebuilt_flags.append(starts[1:-1])
    np.testing.assert_array_equal(np.concatenate(rebuilt), np.concatenate([docs[i] for i in nonempty]))
    np.testing.assert_array_equal(np.concatenate(rebuilt_flags), np.concatenate([flags[i] for i in nonempty]))


def test_mlm_window_cuts_at_last_word_start(tmp_path):
    ids = np.arange(5, 25)
    flags = np.zeros(20, dtype=bool)
    flags[[0, 3, 7, 12, 19]] = True
    shards = write(tmp_path, [ids], [flags], batches=1, objective="mlm", max_seq_length=10, layout="document")
    lengths = [example["input_ids"].size - 2 for example in shards.read(range(len(shards)))]
    assert lengths == [7, 5, 8]  # 8 tokens per window: cut at 7 and 12; the last 8 tokens fit
    one_word = write(tmp_path / "one", [ids], [np.arange(20) == 0], batches=1, objective="mlm", max_seq_length=10)
    assert [example["input_ids"].size - 2 for example in one_word.read(range(3))] == [8, 8, 4]  # cut hard


def test_clm_blocks(tmp_path):
    rng = np.random.default_rng(1)
    docs, flags = random_documents(rng, 50, vocab_size=1000)
    shards = write(tmp_path, docs, flags, objective="clm", block_size=16, vocab_size=1000, tokens_per_file=40)
    stream = np.concatenate([np.append(d, 3) for d in docs if d.size])  # EOS (here [SEP]) after each document
    blocks = [example["input_ids"] for example in shards.read(range(len(shards)))]
    assert all(b.size == 16 for b in blocks)
    assert len(blocks) == stream.size // 16 and shards.index["dropped_tokens"] == stream.size % 16
    np.testing.assert_array_equal(np.concatenate(blocks), stream[: len(blocks) * 16])
    assert all(f["num_tokens"] % 16 == 0 for f in shards.files)
    np.testing.assert_array_equal(shards.document(1), [d for d in docs if d.size][1])


def test_open_errors(tmp_path):
    with pytest.raises(ValueError, match=r"index\.json is missing"):
        open_shards(tmp_path)
    (tmp_path / "train").mkdir()
    write(
        tmp_path / "train", [np.array([5, 6])], [np.array([True, False])], batches=1, objective="mlm", max_seq_length=8
    )
    with pytest.raises(ValueError, match="did you mean"):
        open_shards(tmp_path)
    index = json.loads((tmp_path / "train" / "index.json").read_text())
    index["version"] = 99
    (tmp_path / "train" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="unsupported shard format"):
        open_shards(tmp_path / "train")


def test_prepared_shards_match_tokenizer(prepared):
    tokenizer = load_tokenizer(prepared / "tokenizer")
    train = open_shards(prepared / "shards" / "train")
    check_fingerprint(train, tokenizer)
    assert train.fingerprint == tokenizer.fingerprint and train.objective == "mlm" and len(train) > 0
    corpus = (prepared / "corpus" / "part-00000.jsonl").read_text(encoding="utf-8")
    texts = [json.loads(line)["text"] for line in corpus.split("\n")[:-1]]
    encoded = {tuple(tokenizer.encode(t)) for t in texts}
    for d in range(train.num_documents):
        assert tuple(train.document(d).tolist()) in encoded
    validation = open_shards(prepared / "shards" / "validation")
    assert train.num_documents + validation.num_documents == len(texts)


def test_fingerprint_mismatch_is_an_error(prepared):
    from lmforge.data.tokenizer import build_codepoint_tokenizer

    train = open_shards(prepared / "shards" / "train")
    with pytest.raises(ValueError, match="were built with tokenizer"):
        check_fingerprint(train, build_codepoint_tokenizer())
