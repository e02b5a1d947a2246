"""Shard-stage faults: a disk that fills up or a file-size limit while ``prepare shards`` writes. Each is one clear
``ValueError`` (``OutputWriteError``) naming the file and the cause, with every shard file of both splits deleted
(``index.json`` included, so nothing is mistaken for a dataset), and the rerun writes exactly what an
uninterrupted run writes. The corpus-stage twin is ``test_corpus_faults.py``."""

from __future__ import annotations

import errno
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lmforge.data.shards as shards
from lmforge.data.errors import OutputWriteError
from lmforge.data.prepare import ShardsArgs, TokenizerArgs, prepare_shards, prepare_tokenizer
from lmforge.data.shards import ShardWriter, open_shards

# 120 documents of ~40 characters: ~4,800 char tokens, so train's tokens file (uint16) is ~9 KB
DOCS = [f"第{i}篇文档讲的是天气和公园，今天的天气很好，我们一起去公园玩吧{i}。" for i in range(120)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A jsonl corpus and a char tokenizer built from it."""
    root = tmp_path_factory.mktemp("shard-faults")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(f'{{"text": "{doc}"}}\n' for doc in DOCS), encoding="utf-8")
    tokenizer = prepare_tokenizer(TokenizerArgs(input=[str(corpus)], output_dir=str(root / "tokenizer")))
    return corpus, tokenizer


def _args(corpus: tuple[Path, Path], out: Path) -> ShardsArgs:
    return ShardsArgs(
        input=[str(corpus[0])],
        tokenizer_path=str(corpus[1]),
        output_dir=str(out),
        segmenter="none",
        max_seq_length=32,
        validation_split_percentage=10.0,
        progress=False,
    )


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _no_shards_left(out: Path) -> None:
    assert not [p for p in out.rglob("*") if p.is_file()], sorted(out.rglob("*"))
    for split in ("train", "validation"):
        with pytest.raises(ValueError, match=r"index\.json is missing"):
            open_shards(out / split)


def _limit_file_size() -> None:
    """In the child, before exec: files of at most 2 KB; SIGXFSZ ignored, so a write past it fails with EFBIG."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_real_size_limited_output_in_a_child_process(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """A real OS error, not a mock: the child may write at most 2 KB per file (RLIMIT_FSIZE, SIGXFSZ ignored)."""
    out = tmp_path / "shards"
    command = [sys.executable, "-m", "lmforge", "prepare", "shards", "--input", str(corpus[0])]
    command += ["--tokenizer_path", str(corpus[1]), "--output_dir", str(out), "--segmenter", "none"]
    run = subprocess.run(
        [*command, "--progress", "false"], capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size
    )
    assert run.returncode != 0
    assert "file too large (EFBIG" in run.stderr, run.stderr
    assert f"{out / 'train' / 'tokens-00000.bin'}" in run.stderr and "partial shards were removed" in run.stderr
    assert "Traceback" not in run.stderr  # one clear line, not a stack trace
    _no_shards_left(out)


def test_disk_full_after_one_split_is_complete_removes_both_and_the_rerun_is_complete(
    corpus: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train/ is closed (its index.json written) when validation/ fails: both are deleted, not half a dataset."""
    reference = tmp_path / "reference"
    prepare_shards(_args(corpus, reference))
    out = tmp_path / "out"
    original = ShardWriter._save

    def save(self: ShardWriter, key: str, array: np.ndarray) -> None:
        if self.directory.name == "validation":
            self._target = self.directory / self._names[key]
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, key, array)

    with monkeypatch.context() as patch:
        patch.setattr(shards.ShardWriter, "_save", save)
        with pytest.raises(OutputWriteError, match=r"validation/docs-00000\.npy'.*disk full \(ENOSPC"):
            prepare_shards(_args(corpus, out))
    _no_shards_left(out)
    prepare_shards(_args(corpus, out))  # the disk has room again: the rerun writes what an uninterrupted run writes
    rerun, expected = _files(out), _files(reference)
    assert rerun.keys() == expected.keys() and "train/index.json" in rerun
    for name in rerun:
        if name.endswith("tokens-00000.bin") or name.endswith(".npy"):
            assert rerun[name] == expected[name], name


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_writer_error_is_a_value_error_naming_the_file_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    info = {"fingerprint": "f", "kind": "char", "cls_token_id": 2, "sep_token_id": 3, "pad_token_id": 0}
    writer = ShardWriter(tmp_path, objective="mlm", vocab_size=100, tokenizer_info=info, max_seq_length=8)
    writer.add(np.arange(5, 25), word_starts=np.ones(20, dtype=bool), doc_lengths=[12, 8])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens-00000.bin", "words-00000.bin"]

    def fail(self, data) -> int:
        raise OSError(code, "simulated")

    monkeypatch.setattr(writer, "_words", type("Broken", (), {"write": fail, "close": lambda self: None})())
    words = {errno.ENOSPC: "disk full", errno.EACCES: "permission denied"}[code]
    with pytest.raises(ValueError, match=rf"words-00000\.bin'.*{words} \({errno.errorcode[code]}"):
        writer.add(np.arange(5, 21), word_starts=np.ones(16, dtype=bool), doc_lengths=[16])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"index\.json is missing"):
        open_shards(tmp_path)
