"""Packed MLM shards (the default layout): full sequences, every document exactly once and in order, word flags
aligned, specials never masked, the document layout (``--line_by_line``) bit-identical to format v1, exact resume."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pytest
import torch
from data_helpers import BUNDLED_CORPUS, write_jsonl

from lmforge.data.collate import CLMCollator, MLMCollator
from lmforge.data.loader import ShardLoader
from lmforge.data.prepare import PrepareAllArgs, prepare_all
from lmforge.data.shards import ShardWriter, open_shards
from lmforge.data.tokenizer import load_tokenizer

INFO = {"fingerprint": "f" * 16, "kind": "char", "pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3}
CLS, SEP = 2, 3
NUM_DOCUMENTS = 600  # of the bundled corpus: ~100k tokens, prepared in about a second


def bundled_documents(count: int) -> list[str]:
    texts = []
    for path in sorted(BUNDLED_CORPUS.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            texts += [json.loads(line)["text"] for _, line in zip(range(count // 2), handle)]
    return texts


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """The first documents of both bundled files, prepared as packed and as line-by-line MLM and as CLM."""
    root = tmp_path_factory.mktemp("packing")
    write_jsonl(root / "raw" / "docs.jsonl", bundled_documents(NUM_DOCUMENTS))
    out = {}
    for name, options in {
        "packed": {},
        "document": {"line_by_line": True},
        "clm": {"objective": "clm", "block_size": 128},
    }.items():
        out[name] = prepare_all(
            PrepareAllArgs(
                input=[str(root / "raw")],
                output_dir=str(root / name),
                max_seq_length=128,
                validation_split_percentage=5.0,
                progress=False,
                **options,
            )
        )
    return out


def real_token_fraction(prepared, *, batch_size: int = 8) -> float:
    shards, tokenizer = open_shards(prepared / "shards" / "train"), load_tokenizer(prepared / "tokenizer")
    if shards.objective == "mlm":
        collator = MLMCollator(tokenizer, max_seq_length=shards.sequence_length)
    else:
        collator = CLMCollator(tokenizer, max_length=shards.sequence_length)
    loader = ShardLoader(shards, batch_size=batch_size, collator=collator, seed=0)
    masks = [batch["attention_mask"] for batch in loader.iter_epoch()]
    return sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def test_real_token_fraction_on_bundled_corpus(bundled):
    packed, document = (
        open_shards(bundled["packed"] / "shards" / "train"),
        open_shards(bundled["document"] / "shards" / "train"),
    )
    assert packed.layout == "packed" and document.layout == "document" and packed.index["version"] == 2
    assert packed.num_tokens == document.num_tokens and len(packed) < len(document)
    assert real_token_fraction(bundled["packed"]) >= 0.98
    assert real_token_fraction(bundled["document"]) < 0.85  # what packing fixes (73.7% on the whole corpus)
    assert real_token_fraction(bundled["clm"]) == 1.0  # CLM blocks were always packed


def pieces_of(shards) -> tuple[list[np.ndarray], list[np.ndarray], list[int | None]]:
    """Split every packed sequence at its inner [SEP]s: the pieces, their word flags, and for each piece the
    number of the sequence it opens (None: a [SEP] precedes it inside the sequence)."""
    pieces, flags, opens = [], [], []
    for s, example in enumerate(shards.read(range(len(shards)))):
        ids, starts = example["input_ids"], example["word_starts"]
        assert ids[0] == CLS and ids[-1] == SEP and ids.size <= shards.max_seq_length
        assert starts[0] and starts[-1]
        inner = np.flatnonzero(ids[1:-1] == SEP) + 1
        assert starts[inner].all()
        bounds = [0, *inner.tolist(), ids.size - 1]
        for k, (a, b) in enumerate(itertools.pairwise(bounds)):
            assert b > a + 1, "no empty piece: separators only between documents"
            pieces.append(ids[a + 1 : b])
            flags.append(starts[a + 1 : b])
            opens.append(s if k == 0 else None)
    return pieces, flags, opens


def check_documents_once_in_order(shards, documents: list[np.ndarray], document_flags: list[np.ndarray]) -> None:
    pieces, flags, opens = pieces_of(shards)
    np.testing.assert_array_equal(np.concatenate(pieces), np.concatenate(documents))
    np.testing.assert_array_equal(np.concatenate(flags), np.concatenate(document_flags))
    document_starts = set(np.cumsum([0] + [d.size for d in documents[:-1]]).tolist())
    piece_starts = np.cumsum([0] + [p.size for p in pieces[:-1]]).tolist()
    lengths = [example["input_ids"].size for example in shards.read(range(len(shards)))]
    for start, flag, opening in zip(piece_starts, flags, opens):
        if opening is None:
            assert start in document_starts, "a [SEP] inside a sequence always precedes a new document"
        elif start not in document_starts and not flag[0]:  # a document continued inside a word: only after a
            assert lengths[opening - 1] == shards.max_seq_length  # hard cut of a word longer than a sequence
    assert document_starts <= set(piece_starts), "every document starts a piece"


@pytest.mark.parametrize("seed", range(40))
def test_documents_in_equal_documents_out(tmp_path, seed):
    rng = np.random.default_rng(seed)
    max_seq_length = int(rng.integers(3, 30))
    docs = [rng.integers(5, 1000, size=rng.integers(0, 3 * max_seq_length)) for _ in range(rng.integers(1, 40))]
    flags = [rng.random(d.size) < rng.random() for d in docs]
    writer = ShardWriter(
        tmp_path,
        objective="mlm",
        vocab_size=1000,
        tokenizer_info=INFO,
        max_seq_length=max_seq_length,
        tokens_per_file=int(rng.integers(1, 200)),
    )
    for part in np.array_split(np.arange(len(docs)), int(rng.integers(1, 5))):
        part = part.tolist()
        writer.add(
            np.concatenate([docs[i] for i in part] or [np.zeros(0, dtype=np.int64)]),
            word_starts=np.concatenate([flags[i] for i in part] or [np.zeros(0, dtype=bool)]),
            doc_lengths=np.array([docs[i].size for i in part], dtype=np.int64),
        )
    writer.close()
    shards = open_shards(tmp_path)
    kept = [i for i, d in enumerate(docs) if d.size]
    assert shards.num_documents == len(kept)
    check_documents_once_in_order(shards, [docs[i] for i in kept], [flags[i] for i in kept])


def test_bundled_documents_once_in_order_and_sequences_full(bundled):
    shards = open_shards(bundled["packed"] / "shards" / "train")
    documents = [shards.document(d) for d in range(shards.num_documents)]
    flags = [shards.word_starts(*shards.document_span(d)) for d in range(shards.num_documents)]
    check_documents_once_in_order(shards, documents, flags)
    lengths = np.array([example["input_ids"].size for example in shards.read(range(len(shards)))])
    assert lengths.mean() >= 0.98 * shards.max_seq_length  # short only by a word that did not fit


def test_packing_cuts_at_word_starts(tmp_path):
    ids = [np.arange(10, 16), np.arange(20, 30)]  # 6 + 10 tokens, sequences of 8 + [CLS]/[SEP]
    flags = [np.ones(6, dtype=bool), np.isin(np.arange(10), [0, 3, 5, 9])]
    writer = ShardWriter(tmp_path, objective="mlm", vocab_size=100, tokenizer_info=INFO, max_seq_length=10)
    writer.add(np.concatenate(ids), word_starts=np.concatenate(flags), doc_lengths=np.array([6, 10]))
    writer.close()
    shards = open_shards(tmp_path)
    # room for 1 token after [SEP] but the second document's first word has 3: the first sequence stays short
    assert [s["input_ids"].tolist() for s in shards.read(range(len(shards)))] == [
        [CLS, *range(10, 16), SEP],
        [CLS, *range(20, 25), SEP],  # 8 tokens fit, the last word start inside them is 25
        [CLS, *range(25, 30), SEP],
    ]


@pytest.mark.parametrize("mode", ["word", "token", "span"])
def test_masks_cover_whole_words_and_never_specials(bundled, mode):
    tokenizer = load_tokenizer(bundled["packed"] / "tokenizer")
    shards = open_shards(bundled["packed"] / "shards" / "train")
    collator = MLMCollator(tokenizer, mode=mode, max_seq_length=shards.max_seq_length, mlm_probability=0.3)
    examples = shards.read(range(min(64, len(shards))))
    batch = collator(examples, torch.Generator().manual_seed(0))
    specials = set(tokenizer.all_special_ids)
    for b, example in enumerate(examples):
        ids, starts = example["input_ids"], example["word_starts"]
        labels = batch["labels"][b, : ids.size].numpy()
        inputs = batch["input_ids"][b, : ids.size].numpy()
        special = np.isin(ids, list(specials))
        assert (labels[special] == -100).all() and (inputs[special] == ids[special]).all()
        assert (labels[~special & (labels != -100)] == ids[~special & (labels != -100)]).all()
        # words: a flagged token or one after a special opens a word; a word is predicted whole or not at all
        opens = starts | np.r_[True, special[:-1]]
        word = np.cumsum(opens & ~special)
        for w in np.unique(word[~special]):
            chosen = labels[(word == w) & ~special] != -100
            assert chosen.all() or not chosen.any(), f"part of word {w} masked"
    assert (batch["labels"] != -100).any()


def test_document_layout_is_format_v1(tmp_path):
    """--line_by_line writes what the v1 writer wrote (hash recorded from it, commit 78e7a04), and a v1 index
    (no layout key) still opens as one document per sequence."""
    rng = np.random.default_rng(7)
    docs = [rng.integers(5, 1000, size=rng.integers(0, 50)) for _ in range(80)]
    flags = [rng.random(d.size) < 0.5 for d in docs]
    writer = ShardWriter(
        tmp_path,
        objective="mlm",
        vocab_size=1000,
        tokenizer_info=INFO,
        max_seq_length=16,
        tokens_per_file=300,
        layout="document",
    )
    for part in np.array_split(np.arange(len(docs)), 3):
        writer.add(
            np.concatenate([docs[i] for i in part]),
            word_starts=np.concatenate([flags[i] for i in part]),
            doc_lengths=np.array([docs[i].size for i in part]),
        )
    writer.close()
    digest = hashlib.sha256()
    for path in sorted(tmp_path.glob("*-*.*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    shards = open_shards(tmp_path)
    for example in shards.read(range(len(shards))):
        digest.update(example["input_ids"].tobytes())
        digest.update(example["word_starts"].tobytes())
    assert (len(shards), digest.hexdigest()) == (
        198,
        "ad17e629e7d35a24e80d7f3c03207d10a448d12b649d4cbb4269731664f4a248",
    )
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["layout"] == "document"
    del index["layout"]
    index["version"] = 1
    (tmp_path / "index.json").write_text(json.dumps(index))
    v1 = open_shards(tmp_path)
    assert v1.layout == "document"
    for a, b in zip(v1.read(range(len(v1))), shards.read(range(len(shards)))):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])


def test_line_by_line_is_one_document_per_sequence(bundled):
    shards = open_shards(bundled["document"] / "shards" / "train")
    packed = open_shards(bundled["packed"] / "shards" / "train")
    np.testing.assert_array_equal(shards.tokens(0, shards.num_tokens), packed.tokens(0, packed.num_tokens))
    documents = shards._open(shards.files[0], "documents")
    assert len(shards.files) == 1
    for start, end in shards._open(shards.files[0], "sequences"):  # inside one document, as format v1
        assert np.searchsorted(documents, start, "right") == np.searchsorted(documents, end - 1, "right")
    for example in shards.read(range(len(shards))):
        assert (example["input_ids"][1:-1] != shards.sep_token_id).all()


def test_packed_loader_resumes_bitwise(bundled):
    tokenizer = load_tokenizer(bundled["packed"] / "tokenizer")
    shards = open_shards(bundled["packed"] / "shards" / "train")

    def loader():
        collator = MLMCollator(tokenizer, max_seq_length=shards.max_seq_length)
        return ShardLoader(shards, batch_size=16, collator=collator, seed=3)

    straight = loader()
    steps = len(straight) + 2  # across an epoch boundary
    for _ in range(steps - 3):
        next(straight)
    state = straight.state_dict()
    expected = [next(straight) for _ in range(5)]
    resumed = loader()
    resumed.load_state_dict(state)
    for a, b in zip(expected, (next(resumed) for _ in range(5))):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_layout_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown shard layout"):
        ShardWriter(tmp_path, objective="mlm", vocab_size=10, tokenizer_info=INFO, max_seq_length=8, layout="lines")
    with pytest.raises(ValueError, match="clm blocks always pack"):
        ShardWriter(tmp_path, objective="clm", vocab_size=10, tokenizer_info=INFO, block_size=8, layout="document")
    with pytest.raises(ValueError, match="--line_by_line is for mlm"):
        prepare_all(PrepareAllArgs(input=[], output_dir=str(tmp_path / "x"), objective="clm", line_by_line=True))
