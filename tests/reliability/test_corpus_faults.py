"""Corpus faults beyond bad content (tests/data covers that): inputs that change or disappear while they are
ingested, a disk that fills up, output permission errors, an ingest killed half way. Each is a clear
``PrepareError`` with no partial output left to be mistaken for a corpus, and the rerun writes exactly what an
uninterrupted ingest writes. Never a silently short output."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

import lmforge.data.corpus as corpus
import lmforge.data.source_ingest as source_ingest
from lmforge.data.corpus import IngestOptions, PrepareError, corpus_files, ingest

DOCS = ["第一篇文档的内容在这里，足够长。", "第二篇文档也有一些文字，足够长。", "第三篇文档是最后一篇，足够长。"]


def _inputs(root: Path, files: int = 3) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = root / f"input-{i}.txt"
        path.write_text("\n\n".join(f"{doc}{i}" for doc in DOCS) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def _ingest(inputs: list[Path], out: Path, **kw) -> dict:
    kw = {"progress": False, "shuffle": False, **kw}
    return ingest([str(p) for p in inputs], out, options=IngestOptions(min_doc_length=5), **kw)


def _no_corpus_left(out: Path) -> None:
    assert not list(out.glob("part-*.jsonl")) and not (out / "report.json").exists()


def _parts(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(out.glob("part-*.jsonl")))


def _on_source(monkeypatch: pytest.MonkeyPatch, index: int, action) -> None:
    """Run ``action(source)`` right after source number ``index`` (in reading order) has been parsed."""
    original = source_ingest._parse_text
    calls = {"n": 0}

    def parse(lines, name, sink, options):
        original(lines, name, sink, options)
        if calls["n"] == index:
            action(name)
        calls["n"] += 1

    monkeypatch.setattr(source_ingest, "_parse_text", parse)  # where ingest_source looks it up


def test_input_that_disappears_during_ingest_is_an_error_and_the_rerun_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = _inputs(tmp_path / "in")
    reference = tmp_path / "reference"
    _ingest(inputs, reference)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _on_source(patch, 0, lambda name: inputs[2].rename(tmp_path / "moved-away.txt"))
        with pytest.raises(PrepareError, match=r"input-2\.txt' disappeared during ingest") as error:
            _ingest(inputs, out)
    assert "partial output was removed" in str(error.value) and "rerun" in str(error.value)
    _no_corpus_left(out)
    (tmp_path / "moved-away.txt").rename(inputs[2])  # the input is back: the rerun completes, byte for byte
    _ingest(inputs, out)
    assert _parts(out) == _parts(reference) and _parts(out)


@pytest.mark.parametrize("shuffle", [False, True])
def test_input_that_changes_while_it_is_read_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shuffle: bool
) -> None:
    inputs = _inputs(tmp_path / "in")

    def append(name: str) -> None:
        with open(name, "a", encoding="utf-8") as f:
            f.write("\n\n追加的文档出现在读取的过程中。\n")

    _on_source(monkeypatch, 1, append)
    with pytest.raises(PrepareError, match="changed during ingest"):
        _ingest(inputs, tmp_path / "out", shuffle=shuffle)
    _no_corpus_left(tmp_path / "out")


@pytest.mark.parametrize("shuffle", [False, True])  # written while reading / all at the end from the buffer
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_output_write_errors_are_clear_and_leave_no_partial_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shuffle: bool, code: int
) -> None:
    inputs = _inputs(tmp_path / "in")
    original = corpus.JsonlPartWriter.write
    written = {"n": 0}

    def write(self, line: bytes) -> None:
        written["n"] += 1
        if written["n"] == 3:
            raise OSError(code, "simulated")
        original(self, line)

    monkeypatch.setattr(corpus.JsonlPartWriter, "write", write)
    words = {errno.ENOSPC: "disk full", errno.EACCES: "permission denied"}[code]
    with pytest.raises(PrepareError, match=f"failed: {words} \\({errno.errorcode[code]}") as error:
        _ingest(inputs, tmp_path / "out", shuffle=shuffle)
    assert "unreadable" not in str(error.value)  # an output failure is never blamed on an input
    _no_corpus_left(tmp_path / "out")


def test_real_size_limited_output_in_a_child_process(tmp_path: Path) -> None:
    """A real OS error, not a mock: the child may write at most 2 KB per file (RLIMIT_FSIZE, SIGXFSZ ignored)."""
    inputs = _inputs(tmp_path / "in", files=40)
    out = tmp_path / "out"
    child = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))\n"
        "from lmforge.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    command = [sys.executable, "-c", child, "prepare", "corpus", "--input", str(tmp_path / "in")]
    run = subprocess.run(
        [*command, "--output_dir", str(out), "--min_doc_length", "5", "--progress", "false"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "file too large (EFBIG" in run.stderr and "partial output was removed" in run.stderr
    assert "Traceback" not in run.stderr  # one clear line, not a stack trace
    _no_corpus_left(out)
    assert len(inputs) == 40


def test_output_directory_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PrepareError, match=r"output_dir|Not a directory|failed"):
        _ingest(inputs, tmp_path / "file" / "out")


def test_interrupted_ingest_is_refused_downstream(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    _ingest(inputs, out)
    assert corpus_files([out])  # complete: accepted
    (out / "report.json").unlink()  # what a SIGKILL before the end of ingest leaves
    with pytest.raises(PrepareError, match="interrupted 'lmforge prepare corpus'"):
        corpus_files([out])


def test_unreadable_input_is_reported_not_silently_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission errors on an input are a skipped file with its reason in the report and the summary line (the
    data stage's rule: bad input never stops a long ingest); the output holds every other file."""
    inputs = _inputs(tmp_path / "in")
    original = source_ingest._open_source

    def open_source(source, stack):
        if source.path.endswith("input-1.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", source.path)
        return original(source, stack)

    monkeypatch.setattr(source_ingest, "_open_source", open_source)
    report = _ingest(inputs, tmp_path / "out")
    assert report["files_skipped"] == {"unreadable": 1} and report["files_read"] == 2
    assert "input-1.txt" in report["examples"]["unreadable"][0]
    assert report["documents_out"] == 6


@pytest.mark.parametrize("num_proc", [1, 2])
def test_input_rewritten_between_listing_and_reading_is_an_error_in_workers_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, num_proc: int
) -> None:
    inputs = _inputs(tmp_path / "in")
    original = corpus.discover_sources

    def discover(items, *, stats):
        sources = original(items, stats=stats)
        inputs[1].write_text("完全不同的内容，长度也不一样了。\n", encoding="utf-8")  # rewritten after listing
        return sources

    monkeypatch.setattr(corpus, "discover_sources", discover)
    with pytest.raises(PrepareError, match=r"input-1\.txt' changed during ingest"):
        _ingest(inputs, tmp_path / "out", num_proc=num_proc)
    _no_corpus_left(tmp_path / "out")
