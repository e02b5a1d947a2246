"""The prepare stages end to end: layout, determinism across num_proc, word flags == segmentation, objectives and
tokenizer kinds, one-line errors, and a fast ``--help`` (no torch import)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from data_helpers import BUNDLED_CORPUS, REPO, write_jsonl

from lmforge.data.prepare import PrepareAllArgs, ShardsArgs, TokenizerArgs, prepare_all, prepare_shards
from lmforge.data.segment import segment
from lmforge.data.shards import check_fingerprint, open_shards
from lmforge.data.tokenizer import load_tokenizer


def test_layout(prepared):
    assert (prepared / "corpus" / "report.json").is_file() and (prepared / "prepare.json").is_file()
    for name in ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "lmforge_tokenizer.json"]:
        assert (prepared / "tokenizer" / name).is_file()
    tokenizer = load_tokenizer(prepared / "tokenizer")
    for split in ("train", "validation"):
        shards = open_shards(prepared / "shards" / split)
        check_fingerprint(shards, tokenizer)
        assert shards.index["split"] == split and shards.dtype == np.uint16
    summary = json.loads((prepared / "prepare.json").read_text())
    assert summary["tokenizer"] == tokenizer.fingerprint


def test_word_flags_follow_segmentation(prepared):
    """For the char tokenizer every token is one character: flags must be exactly rjieba's word starts."""
    tokenizer = load_tokenizer(prepared / "tokenizer")
    shards = open_shards(prepared / "shards" / "train")
    corpus = (prepared / "corpus" / "part-00000.jsonl").read_text(encoding="utf-8")
    texts = [json.loads(line)["text"] for line in corpus.split("\n")[:-1]]
    by_ids = {tuple(tokenizer.encode(t)): t for t in texts}
    for d in range(0, shards.num_documents, max(1, shards.num_documents // 20)):
        start, end = shards.document_span(d)
        text = by_ids[tuple(shards.tokens(start, end).tolist())]
        word_heads = {s for s, _ in segment(text, segmenter="rjieba")}
        expected = [int(s) in word_heads for s in tokenizer.encode_batch([text]).starts]
        assert shards.word_starts(start, end).tolist() == expected


def test_shards_identical_across_num_proc(prepared, tmp_path):
    outputs = []
    for num_proc in (1, 2):
        out = tmp_path / f"np{num_proc}"
        prepare_shards(
            ShardsArgs(
                input=[str(prepared / "corpus")],
                tokenizer_path=str(prepared / "tokenizer"),
                output_dir=str(out),
                max_seq_length=32,
                num_proc=num_proc,
                progress=False,
            )
        )
        outputs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.bin"))})
    assert outputs[0] == outputs[1] and outputs[0]


@pytest.mark.parametrize(
    ("kind", "segmenter", "objective"), [("bpe", "jieba", "clm"), ("codepoint", "none", "mlm"), ("char", "none", "clm")]
)
def test_kinds_and_objectives(tmp_path, documents, kind, segmenter, objective):
    write_jsonl(tmp_path / "raw.jsonl", documents[:80])
    out = prepare_all(
        PrepareAllArgs(
            input=str(tmp_path / "raw.jsonl"),
            output_dir=str(tmp_path / "out"),
            tokenizer=kind,
            vocab_size=400 if kind == "bpe" else None,
            segmenter=segmenter,
            objective=objective,
            block_size=64,
            max_seq_length=64,
            min_doc_length=1,
            progress=False,
        )
    )
    tokenizer = load_tokenizer(out / "tokenizer")
    train = open_shards(out / "shards" / "train")
    check_fingerprint(train, tokenizer)
    assert train.objective == objective and train.dtype == (np.uint32 if kind == "codepoint" else np.uint16)
    example = train[0]
    assert example["input_ids"].size == (64 if objective == "clm" else example["input_ids"].size)
    if objective == "clm":
        assert tokenizer.document_separator_id in train.tokens(0, train.num_tokens)
    if kind == "codepoint":  # one token per character: flags are the 'none' segmentation of the document
        text = tokenizer.decode(train.document(0))
        starts = {s for s, _ in segment(text, segmenter="none")}
        doc_flags = train.read([0])[0]["word_starts"][1:-1]
        assert doc_flags[: len(text)].tolist()[:20] == [i in starts for i in range(len(text))][:20]


def test_stage_errors_are_value_errors(prepared, tmp_path):
    base = dict(input=[str(prepared / "corpus")], tokenizer_path=str(prepared / "tokenizer"), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="validation_split_percentage"):
        prepare_shards(ShardsArgs(**base, validation_split_percentage=100.0))
    with pytest.raises(ValueError, match="unknown segmenter 'lac'"):
        prepare_shards(ShardsArgs(**base, segmenter="lac"))
    with pytest.raises(ValueError, match=r"no \.jsonl files"):
        prepare_shards(ShardsArgs(**{**base, "input": [str(tmp_path)]}))
    (tmp_path / "notes.txt").write_text("不是 JSON\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no documents with a string 'text' field"):
        prepare_shards(
            ShardsArgs(**{**base, "input": [str(tmp_path / "notes.txt")], "output_dir": str(tmp_path / "o")})
        )
    with pytest.raises(ValueError, match="exists and is not a directory"):
        prepare_shards(ShardsArgs(**{**base, "output_dir": str(tmp_path / "notes.txt")}))
    from lmforge.data.prepare import prepare_tokenizer

    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="no text to build a tokenizer from"):
        prepare_tokenizer(TokenizerArgs(input=str(tmp_path / "empty.jsonl"), output_dir=str(tmp_path / "t")))
    with pytest.raises(ValueError, match="unknown tokenizer 'wordpiece'"):
        prepare_tokenizer(
            TokenizerArgs(input=[str(prepared / "corpus")], output_dir=str(tmp_path), tokenizer="wordpiece")
        )


def test_prepare_module_does_not_import_torch():
    code = "import sys, lmforge.data.prepare; assert 'torch' not in sys.modules and 'tokenizers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "src")})


def test_prepare_all_on_bundled_corpus(tmp_path):
    out = prepare_all(PrepareAllArgs(input=str(BUNDLED_CORPUS), output_dir=str(tmp_path), num_proc=2, progress=False))
    report = json.loads((out / "corpus" / "report.json").read_text())
    assert report["documents_in"] == report["documents_out"] + sum(report["skipped"].values())
    assert report["documents_out"] > 5000
    tokenizer = load_tokenizer(out / "tokenizer")
    train, validation = open_shards(out / "shards" / "train"), open_shards(out / "shards" / "validation")
    assert 0.02 < validation.num_documents / (train.num_documents + validation.num_documents) < 0.08
    assert train.num_tokens > 800_000 and train.index["build"]["malformed_lines"] == 0
    unk = np.count_nonzero(train.tokens(0, train.num_tokens) == tokenizer.unk_token_id)
    assert unk / train.num_tokens < 3e-3  # characters seen once (min_frequency=2)


def test_byte_ranges_cover_every_line_once(tmp_path):
    from lmforge.data.prepare import _byte_ranges, _read_range

    path = write_jsonl(tmp_path / "a.jsonl", [f"第{i}行" * (i % 7) for i in range(50)])
    lines = path.read_bytes().split(b"\n")[:-1]
    for size in (1, 5, 17, 64, 10_000):
        got = [line.rstrip(b"\n") for task in _byte_ranges([path], size) for line in _read_range(*task)]
        assert got == lines, size
