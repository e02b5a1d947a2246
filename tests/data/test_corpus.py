"""Ingest: document rules, every kind of bad input counted (documents_in == documents_out + skipped), formats read
in place, determinism across num_proc, one-line errors, and hypothesis fuzzing with arbitrary Unicode and bytes."""

from __future__ import annotations

import builtins
import bz2
import gzip
import io
import json
import lzma
import os
import tempfile
import zipfile
from pathlib import Path

import pytest
from data_helpers import write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.data.corpus import DOCUMENT_REASONS, FILE_REASONS, IngestOptions, PrepareError, ingest


def run(inputs, out, **kwargs) -> tuple[dict, list[dict]]:
    options = IngestOptions(**{k: kwargs.pop(k) for k in list(kwargs) if k in IngestOptions.__dataclass_fields__})
    report = ingest([str(i) for i in inputs], out, options=options, progress=False, **kwargs)
    records = [json.loads(line) for part in report["outputs"] for line in read_lines(Path(out) / part)]
    assert report["documents_in"] == report["documents_out"] + sum(report["skipped"].values())
    assert report["documents_out"] == len(records)
    assert set(report["skipped"]) <= set(DOCUMENT_REASONS) and set(report["files_skipped"]) <= set(FILE_REASONS)
    return report, records


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines: JSON keeps U+2028 and U+0085 raw


def texts(records) -> list[str]:
    return [r["text"] for r in records]


def test_blank_line_documents_and_min_length(tmp_path):
    raw = tmp_path / "in.txt"
    raw.write_text("第一段第一行\n第一段第二行\n\n  \n第二段\r\n\n短\n\n\ufeff", encoding="utf-8")
    report, records = run([raw], tmp_path / "out", min_doc_length=3, shuffle=False)
    assert texts(records) == ["第一段第一行\n第一段第二行", "第二段"]
    assert report["skipped"] == {"too_short": 2}  # "短" and a stray BOM
    assert records[0]["source"].endswith("in.txt:1") and set(records[0]) == {"id", "text", "source"}


def test_one_doc_per_line_and_custom_separator(tmp_path):
    raw = tmp_path / "in.txt"
    raw.write_text("\ufeff一行一篇\n\n第二篇\n<doc>\n", encoding="utf-8")
    _, records = run([raw], tmp_path / "a", min_doc_length=1, one_doc_per_line=True, shuffle=False)
    assert texts(records) == ["一行一篇", "第二篇", "<doc>"]
    _, records = run([raw], tmp_path / "b", min_doc_length=1, doc_separator="<doc>", shuffle=False)
    assert texts(records) == ["一行一篇\n\n第二篇"]


def test_nfc_and_dedup(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ["cafe\u0301 很好", "\uf900字重复了", "相同的文档"])
    write_jsonl(tmp_path / "b.jsonl", ["café 很好", "相同的文档"], field="content")
    inputs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    report, records = run(inputs, tmp_path / "o1", min_doc_length=1, text_field="text")
    assert report["skipped"] == {"missing_text_field": 2}
    assert sorted(texts(records)) == sorted(["café 很好", "\u8c48字重复了", "相同的文档"])  # NFC
    write_jsonl(tmp_path / "b.jsonl", ["café 很好", "相同的文档"])
    report, records = run(inputs, tmp_path / "o2", min_doc_length=1)
    assert report["skipped"] == {"duplicate": 2} and len(records) == 3
    report, records = run(inputs, tmp_path / "o3", min_doc_length=1, dedup=False, normalize=False)
    assert len(records) == 5 and "cafe\u0301 很好" in texts(records)


def test_long_documents_are_cut_at_lines(tmp_path):
    raw = tmp_path / "in.txt"
    raw.write_text("\n".join(["一二三四五"] * 10), encoding="utf-8")
    report, records = run([raw], tmp_path / "out", min_doc_length=1, max_doc_chars=14, shuffle=False, dedup=False)
    assert texts(records) == ["一二三四五\n一二三四五"] * 5 and report["skipped"] == {}
    assert [r["source"].rsplit(":", 1)[1] for r in records] == ["1", "3", "5", "7", "9"]


def test_archives_and_compression_read_in_place(tmp_path):
    body = "压缩文件里的文档。\n\n另一篇文档在这里。\n"
    (tmp_path / "in").mkdir()
    with gzip.open(tmp_path / "in" / "a.txt.gz", "wt", encoding="utf-8") as f:
        f.write(body)
    with bz2.open(tmp_path / "in" / "b.txt.bz2", "wt", encoding="utf-8") as f:
        f.write(body.replace("文档", "文章"))
    with lzma.open(tmp_path / "in" / "c.jsonl.xz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "xz 压缩的 jsonl 文档"}, ensure_ascii=False) + "\n")
    with zipfile.ZipFile(tmp_path / "in" / "d.zip", "w") as archive:
        archive.writestr("sub/e.txt", "归档里的文本文件。\n")
        archive.writestr("f.jsonl", json.dumps({"text": "归档里的 jsonl 文档"}, ensure_ascii=False) + "\n")
        archive.writestr("g.json", json.dumps([{"text": "JSON 数组里的文档"}], ensure_ascii=False))
        archive.writestr("h.txt.gz", gzip.compress("归档里压缩的文本。".encode()))
    report, records = run([tmp_path / "in"], tmp_path / "out", min_doc_length=5)
    assert len(records) == 9 and report["skipped"] == {} and report["files_skipped"] == {}
    assert any(r["source"].startswith(str(tmp_path / "in" / "d.zip") + "::sub/e.txt") for r in records)
    assert not (tmp_path / "in" / "sub").exists()  # nothing was unpacked


def make_bad_inputs(root: Path) -> None:
    root.mkdir()
    good = "好的文档一号，内容足够长。\n\n好的文档二号，内容也够长。\n"
    (root / "good.txt").write_text(good, encoding="utf-8")
    (root / "invalid_utf8.txt").write_bytes("坏的编码".encode() + b"\xff\xfe\n\n" + "后面的文档没有问题。\n".encode())
    (root / "binary.bin").write_bytes(bytes(range(256)) * 40)
    (root / "empty.txt").write_bytes(b"")
    (root / "long_line.txt").write_bytes(b"a" * 10_000_000 + "\n\n长行后面的文档还在。\n".encode())
    (root / "records.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"text": "合法的一行 JSON 文档"}, ensure_ascii=False),
                '{"text": "没有结束',
                json.dumps({"content": "字段名不对"}, ensure_ascii=False),
                json.dumps({"text": 42}),
                '{"text": "lone surrogate \\ud800 here"}',
                "",
                "[1, 2]",
                "[" * 100_000 + "]" * 100_000,
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("inner.txt", "截断的压缩包里的文档。\n" * 200)
    (root / "truncated.zip").write_bytes(archive.getvalue()[: len(archive.getvalue()) // 2])
    with zipfile.ZipFile(root / "nested.zip", "w") as zf:
        zf.writestr("inner.zip", archive.getvalue())
        zf.writestr("ok.txt", "嵌套压缩包旁边的文档。\n")
    full = gzip.compress(("截断的 gzip 文件里有很多行。\n" * 5000).encode())
    (root / "truncated.txt.gz").write_bytes(full[: len(full) // 2])
    (root / "not_gzip.txt.gz").write_text("这不是 gzip 文件\n", encoding="utf-8")
    (root / ".hidden.txt").write_text("隐藏文件\n", encoding="utf-8")
    os.symlink(root / "does-not-exist.txt", root / "broken_link.txt")
    os.mkfifo(root / "fifo.txt")


def test_bad_inputs_are_counted_never_fatal(tmp_path):
    make_bad_inputs(tmp_path / "in")
    report, records = run([tmp_path / "in"], tmp_path / "out", min_doc_length=5)
    kept = texts(records)
    for text in [
        "好的文档一号，内容足够长。",
        "后面的文档没有问题。",
        "长行后面的文档还在。",
        "合法的一行 JSON 文档",
        "嵌套压缩包旁边的文档。",
    ]:
        assert text in kept
    assert report["skipped"]["invalid_utf8"] == 2  # a bad byte, a lone surrogate escape
    assert report["skipped"]["line_too_long"] == 1
    assert report["skipped"]["malformed_json"] == 2  # a cut line, 100k nested arrays
    assert report["skipped"]["missing_text_field"] == 3  # wrong field, not a string, not an object
    assert report["skipped"]["damaged_file"] == 1  # the document of the truncated gzip, skipped with its file
    assert report["files"][str(tmp_path / "in" / "truncated.txt.gz")]["verdict"] == "skipped"
    files = report["files_skipped"]
    for reason in ["binary_file", "empty_file", "bad_archive", "bad_compression", "unsupported", "hidden_file"]:
        assert files.get(reason, 0) >= 1, reason
    assert files["bad_compression"] == 2 and files["unreadable"] == 1 and files["not_a_regular_file"] == 1
    assert any("truncated.zip" in where for where in report["examples"]["bad_archive"])
    assert any(Path(w).name == "records.jsonl:2" for w in report["examples"]["malformed_json"])
    saved = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert saved["documents_in"] == report["documents_in"] and saved["skipped"] == report["skipped"]


def test_unreadable_file(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    locked = tmp_path / "in" / "locked.txt"
    locked.write_text("看不到的文档内容\n", encoding="utf-8")
    locked.chmod(0)
    # root reads files whatever their mode: make the permission error happen for every user.
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    report, records = run([tmp_path / "in"], tmp_path / "out", num_proc=1)
    assert report["files_skipped"] == {"unreadable": 1}
    assert records == [] and report["documents_in"] == 0
    assert any("locked.txt" in where for where in report["examples"]["unreadable"])


def test_output_independent_of_num_proc_and_seeded(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(6):
        write_jsonl(tmp_path / "in" / f"f{i}.jsonl", [f"第{i}个文件的第{j}篇文档，内容。" for j in range(40)])
    outputs = {}
    for name, num_proc, seed in [("a", 1, 0), ("b", 2, 0), ("c", 1, 1)]:
        report, records = run([tmp_path / "in"], tmp_path / name, num_proc=num_proc, seed=seed, shuffle_buffer=16)
        outputs[name] = (tmp_path / name / "part-00000.jsonl").read_bytes()
        assert report["documents_out"] == 240
    assert outputs["a"] == outputs["b"]
    assert outputs["a"] != outputs["c"]
    _, records = run([tmp_path / "in"], tmp_path / "d", shuffle=False)
    assert texts(records)[:2] == ["第0个文件的第0篇文档，内容。", "第0个文件的第1篇文档，内容。"]


def test_small_parts(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [f"文档编号{i:04d}的正文内容" for i in range(200)])
    report, records = run([tmp_path / "a.jsonl"], tmp_path / "out", shard_size_mb=0.001)
    assert len(report["outputs"]) > 3 and len(records) == 200


def test_user_errors_are_prepare_errors(tmp_path):
    options = IngestOptions()
    with pytest.raises(PrepareError, match="input path does not exist: '/nonexistent/x'"):
        ingest(["/nonexistent/x"], tmp_path / "out", options=options)
    with pytest.raises(PrepareError, match="is also an input"):
        ingest([str(tmp_path)], tmp_path, options=options)
    with pytest.raises(PrepareError, match="num_proc must be >= 1, got 0"):
        ingest([str(tmp_path)], tmp_path / "out", options=options, num_proc=0)
    with pytest.raises(PrepareError, match="min_doc_length"):
        IngestOptions(min_doc_length=-1)
    assert issubclass(PrepareError, ValueError)


def test_cli_prints_one_line(tmp_path, capsys):
    from lmforge.cli import run as cli

    with pytest.raises(SystemExit) as exit_info:
        cli(["prepare", "corpus", "--input", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("lmforge prepare corpus: error: input path does not exist")


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(st.lists(st.text(max_size=60), max_size=6), st.booleans())
def test_fuzz_any_unicode(tmp_path, documents, one_per_line):
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        root = Path(tmp)
        write_jsonl(root / "in" / "docs.jsonl", documents)
        (root / "in" / "docs.txt").write_text("\n\n".join(documents), encoding="utf-8", errors="surrogatepass")
        _, records = run([root / "in"], root / "out", min_doc_length=1, one_doc_per_line=one_per_line)
        import unicodedata

        candidates = {unicodedata.normalize("NFC", d) for d in documents}
        jsonl = [r["text"] for r in records if r["source"].startswith(str(root / "in" / "docs.jsonl"))]
        assert set(jsonl) <= candidates


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(["x.txt", "x.jsonl", "x.txt.gz", "x.zip"]))
def test_fuzz_any_bytes(tmp_path, data, name):
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        (root / "in" / name).write_bytes(data)
        run([root / "in"], root / "out", min_doc_length=0)


def test_codepoint_histogram_matches_output(tmp_path):
    import numpy as np

    from lmforge.data.corpus import corpus_codepoint_counts
    from lmforge.data.tokenizer import build_char_tokenizer, codepoints

    write_jsonl(tmp_path / "a.jsonl", ["重复的文档", "第一篇 ABC", "第二篇😀", "重复的文档", "短"])
    for num_proc in (1, 2):
        out = tmp_path / f"out{num_proc}"
        report, records = run([tmp_path / "a.jsonl"], out, min_doc_length=2, num_proc=num_proc)
        assert report["skipped"] == {"duplicate": 1, "too_short": 1}
        expected = np.bincount(codepoints("".join(texts(records))), minlength=0x110000)
        np.testing.assert_array_equal(corpus_codepoint_counts(out), expected)
    from_counts = build_char_tokenizer(codepoint_counts=corpus_codepoint_counts(out), min_frequency=1)
    assert from_counts.fingerprint == build_char_tokenizer(texts(records), min_frequency=1).fingerprint
    with open(out / "part-00000.jsonl", "a", encoding="utf-8") as handle:  # edited after ingest: stale histogram
        handle.write(json.dumps({"text": "新加的"}, ensure_ascii=False) + "\n")
    assert corpus_codepoint_counts(out) is None


# VmHWM, not ru_maxrss: the latter keeps the RSS of the forked pytest process from before exec
PEAK_RSS = """
import sys
from lmforge.data.corpus import IngestOptions, ingest
ingest([sys.argv[1]], sys.argv[2], options=IngestOptions(), progress=False, shuffle_buffer=1000)
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) // 1024)
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_input(tmp_path):
    """60 MB of documents and a 32 MB line: peak RSS stays within a few MB of a 1 MB input's (Linux /proc)."""
    import subprocess
    import sys

    def peak_mb(directory: Path) -> int:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
        command = [sys.executable, "-c", PEAK_RSS, str(directory), str(directory) + "-out"]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        return int(out.stdout.split()[-1])

    paragraph = "".join(f"第{i}段：内存不应随输入增长。" for i in range(20)) + "\n\n"
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "a.txt").write_text(paragraph * 2000, encoding="utf-8")
    (tmp_path / "large").mkdir()
    with open(tmp_path / "large" / "a.txt", "w", encoding="utf-8") as handle:
        for i in range(120_000):
            handle.write(f"{i}{paragraph}")
    (tmp_path / "large" / "b.txt").write_bytes(b"x" * (32 << 20) + b"\n")
    small, large = peak_mb(tmp_path / "small"), peak_mb(tmp_path / "large")
    print(f"peak RSS: 1 MB input {small} MB, 92 MB input {large} MB")
    # what may grow: dedup's set of recent hashes (at most 2^18, ~20 MB, then 8 bytes per document)
    assert large < small + 32, (small, large)
