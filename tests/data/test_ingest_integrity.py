"""Ingest never commits part of a damaged compressed file unless asked, and counts every document it saw.

Issue 19 item 1: a zip member with a flipped byte, a gzip with a bad CRC trailer and a truncated gzip used to put
most of their documents into the corpus while report.json called the files skipped. Here: the default skips such a
file whole (``damaged_file``), ``keep_partial`` keeps what was read before the failure and counts the document it
cut (``documents_lost``), ``documents_in == documents_out + sum(skipped) + documents_lost`` always, and the per-file
verdict in ``report["files"]`` agrees with what is in the output, under seeded random corruption (flip a byte,
truncate, drop bytes) of zip/gz/bz2/xz/jsonl/txt inputs. Symlinked directories are followed once, loops never.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import random
import tempfile
import zipfile
from pathlib import Path

import pytest

import lmforge.data.source_ingest as source_ingest
from lmforge.data.corpus import IngestOptions, ingest
from lmforge.data.prepare import corpus_summary


def paragraphs(tag: str, count: int) -> list[str]:
    return [f"{tag}的第{i}篇文档：自然语言处理是人工智能的一个重要方向。" for i in range(count)]


def text_bytes(docs: list[str]) -> bytes:
    return ("\n\n".join(docs) + "\n").encode("utf-8")


def jsonl_bytes(docs: list[str]) -> bytes:
    return "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")


def run(inputs, out: Path, *, keep_partial: bool = False, **kwargs) -> tuple[dict, list[dict]]:
    options = IngestOptions(min_doc_length=5, keep_partial=keep_partial, follow_symlinks=kwargs.pop("follow", True))
    kwargs = {"progress": False, "shuffle": False, "dedup": False, **kwargs}
    report = ingest([str(i) for i in inputs], out, options=options, **kwargs)
    records = [json.loads(line) for part in report["outputs"] for line in (out / part).open("rb")]
    assert report["documents_out"] == len(records)
    assert (
        report["documents_in"] == report["documents_out"] + sum(report["skipped"].values()) + report["documents_lost"]
    ), report
    assert verdicts_match_output(report, records)
    return report, records


def source_of(record: dict) -> str:
    """``path:line``, ``archive.zip::member:line`` or ``path[i]`` -> the source name used in ``report["files"]``."""
    where = record["source"]
    return where.rsplit("[", 1)[0] if where.endswith("]") else where.rsplit(":", 1)[0]


def verdicts_match_output(report: dict, records: list[dict]) -> bool:
    per_source: dict[str, int] = {}
    for record in records:
        per_source[source_of(record)] = per_source.get(source_of(record), 0) + 1
    for name, verdict in report["files"].items():
        if verdict["verdict"] == "skipped":
            assert per_source.get(name, 0) == 0, (name, verdict)  # never "skipped" for what reached the output
        else:
            assert verdict["verdict"] == "kept_partial", verdict
            assert per_source.get(name, 0) == verdict["documents_kept"] > 0, (name, verdict)
    assert len(per_source) <= report["files_read"]  # "kept from N files" counts every file with output
    partial = [v for v in report["files"].values() if v["verdict"] == "kept_partial"]
    assert report["documents_lost"] == sum(v["documents_lost"] for v in partial)
    assert sum(report["files_partial"].values()) == len(partial)
    return True


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def member_span(data: bytes, name: str) -> tuple[int, int]:
    """Byte range of a zip member's compressed data inside the archive."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    return start, start + info.compress_size


# ---- the cases of the issue --------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_partial", [False, True])
def test_gzip_with_a_bad_crc_trailer(tmp_path: Path, keep_partial: bool) -> None:
    docs = paragraphs("gzip", 3000)
    data = bytearray(gzip.compress(text_bytes(docs)))
    data[-6] ^= 0xFF  # the CRC-32 trailer: every byte of text decodes, the check fails at the very end
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt.gz").write_bytes(bytes(data))
    (tmp_path / "in" / "b.txt").write_bytes(text_bytes(paragraphs("好文件", 5)))
    report, records = run([tmp_path / "in"], tmp_path / "out", keep_partial=keep_partial)
    name = str(tmp_path / "in" / "a.txt.gz")
    verdict = report["files"][name]
    assert verdict["reason"] == "bad_compression" and "CRC check failed" in verdict["error"]
    assert report["documents_in"] == 3005  # every document of the damaged file was seen and counted
    if keep_partial:
        assert verdict["verdict"] == "kept_partial" and verdict["documents_kept"] == 3000
        assert report["documents_lost"] == 0 and len(records) == 3005  # all data came out; the trailer alone failed
        assert report["files_read"] == 2 and report["files_partial"] == {"bad_compression": 1}
    else:
        assert verdict["verdict"] == "skipped" and verdict["documents_skipped"] == 3000
        assert report["skipped"] == {"damaged_file": 3000} and len(records) == 5
        assert report["files_read"] == 1 and report["files_skipped"] == {"bad_compression": 1}


@pytest.mark.parametrize("keep_partial", [False, True])
def test_truncated_gzip(tmp_path: Path, keep_partial: bool) -> None:
    full = gzip.compress(text_bytes(paragraphs("截断", 4000)))
    (tmp_path / "a.txt.gz").write_bytes(full[: len(full) // 2])
    report, records = run([tmp_path / "a.txt.gz"], tmp_path / "out", keep_partial=keep_partial)
    verdict = report["files"][str(tmp_path / "a.txt.gz")]
    assert verdict["reason"] == "bad_compression" and "EOFError" in verdict["error"]
    if keep_partial:
        assert verdict["verdict"] == "kept_partial" and 0 < len(records) < 4000
        assert report["documents_lost"] == verdict["documents_lost"] == 1  # the paragraph the break cut
        assert report["documents_in"] == len(records) + 1
        assert all(r["text"] in paragraphs("截断", 4000) for r in records)  # no cut document in the output
    else:
        assert verdict["verdict"] == "skipped" and records == []
        assert report["skipped"]["damaged_file"] == report["documents_in"] > 0 and report["documents_lost"] == 0


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("keep_partial", [False, True])
def test_zip_member_with_one_flipped_byte(tmp_path: Path, keep_partial: bool, compression: int) -> None:
    bad, good = paragraphs("坏成员", 2000), paragraphs("好成员", 7)
    data = bytearray(zip_bytes({"bad.txt": text_bytes(bad), "good.jsonl": jsonl_bytes(good)}, compression))
    start, end = member_span(bytes(data), "bad.txt")
    data[(start + end) // 2] ^= 0x55
    (tmp_path / "a.zip").write_bytes(bytes(data))
    report, records = run([tmp_path / "a.zip"], tmp_path / "out", keep_partial=keep_partial)
    member = f"{tmp_path / 'a.zip'}::bad.txt"
    verdict = report["files"][member]
    assert verdict["reason"] == "bad_archive" and f"{tmp_path / 'a.zip'}::good.jsonl" not in report["files"]
    assert [r["text"] for r in records if "good.jsonl" in r["source"]] == good
    if keep_partial:
        assert verdict["verdict"] == "kept_partial"
    else:
        assert verdict["verdict"] == "skipped" and len(records) == 7
    if compression == zipfile.ZIP_STORED:  # nothing to decompress: the CRC alone finds the flip, after all data
        assert "Bad CRC-32" in verdict["error"] and report["documents_in"] == 2007


def test_a_skipped_document_does_not_make_its_later_copy_a_duplicate(tmp_path: Path) -> None:
    """Documents of a file skipped whole never enter the de-duplication set: a copy in a later file is kept."""
    docs = paragraphs("重复", 50)
    data = bytearray(gzip.compress(text_bytes(docs)))
    data[-6] ^= 0xFF
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt.gz").write_bytes(bytes(data))
    (tmp_path / "in" / "b.txt").write_bytes(text_bytes(docs))
    report, records = run([tmp_path / "in"], tmp_path / "out", dedup=True)
    assert [r["text"] for r in records] == docs and "duplicate" not in report["skipped"]


def test_the_summary_line_says_which(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lmforge.cli import run as cli

    full = gzip.compress(text_bytes(paragraphs("摘要", 1000)))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt.gz").write_bytes(full[: len(full) // 2])
    (tmp_path / "in" / "b.txt").write_bytes(text_bytes(paragraphs("好文件", 3)))
    common = ["prepare", "corpus", "--input", str(tmp_path / "in"), "--progress", "false"]
    cli([*common, "--output_dir", str(tmp_path / "skip")])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "from 1 files" in line and "skipped files: bad_compression 1" in line
    assert "skipped whole: none of them is in the output" in line and "kept partially" not in line
    cli([*common, "--output_dir", str(tmp_path / "keep"), "--keep_partial", "true"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads((tmp_path / "keep" / "report.json").read_text(encoding="utf-8"))
    kept = report["documents_out"] - 3
    assert "from 2 files" in line and "skipped files: none" in line
    expected = f"kept partially: 1 files (bad_compression 1) with {kept} documents kept (before de-duplication), 1"
    assert expected + " documents lost" in line
    assert corpus_summary(report, str(tmp_path / "keep")) == line


def test_a_large_member_spills_to_disk_with_the_same_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spool of a compressed source is bounded in memory (SPOOL_MEMORY_BYTES) and spills to a temporary file."""
    members = {"a.txt": text_bytes(paragraphs("溢出", 3000)), "b.txt": text_bytes(["短的成员文档。"])}
    data = bytearray(zip_bytes(members))
    (tmp_path / "a.zip").write_bytes(bytes(data))
    start, _ = member_span(bytes(data), "b.txt")
    data[start + 2] ^= 0xFF
    (tmp_path / "b.zip").write_bytes(bytes(data))
    spilled: list[int] = []  # the memory limit of every spool that went to disk

    class RecordingSpool(tempfile.SpooledTemporaryFile):
        def rollover(self) -> None:
            if not self._rolled:
                spilled.append(self._max_size)
            super().rollover()

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", RecordingSpool)
    reference = {}
    for spool_bytes in (source_ingest.SPOOL_MEMORY_BYTES, 4096):
        monkeypatch.setattr(source_ingest, "SPOOL_MEMORY_BYTES", spool_bytes)  # where ingest_source looks it up
        for name in ("a.zip", "b.zip"):
            report, records = run([tmp_path / name], tmp_path / f"out-{spool_bytes}-{name}", keep_partial=False)
            reference.setdefault(name, (records, report["skipped"]))
            assert (records, report["skipped"]) == reference[name]
    assert spilled and set(spilled) == {4096}  # the default limit holds these members in memory; 4096 spills
    assert len(reference["a.zip"][0]) == 3001 and len(reference["b.zip"][0]) == 3000  # b.txt skipped whole


# ---- seeded random corruption ------------------------------------------------------------------------------------

FORMATS = ["zip-deflated", "zip-stored", "txt.gz", "jsonl.gz", "txt.bz2", "jsonl.xz", "jsonl", "txt"]
DAMAGES = ["flip", "truncate", "drop"]


def encode(kind: str, docs: list[str]) -> tuple[str, bytes]:
    inner = jsonl_bytes(docs) if "jsonl" in kind else text_bytes(docs)
    if kind.startswith("zip"):
        stored = kind == "zip-stored"
        members = {"m.txt": text_bytes(docs), "n.jsonl": jsonl_bytes(docs[::-1])}
        return "zip", zip_bytes(members, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    compress = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}.get(kind.rsplit(".", 1)[-1])
    return kind, compress(inner) if compress else inner


def damage(data: bytes, how: str, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
    if how == "truncate":
        return data[:at]
    return data[:at] + data[at + rng.randint(1, 64) :]


CASES = [(kind, how, seed) for seed in range(3) for kind in FORMATS for how in DAMAGES]


@pytest.mark.parametrize("keep_partial", [False, True])
def test_random_corruption_keeps_the_accounts_and_the_verdicts(tmp_path: Path, keep_partial: bool) -> None:
    """72 seeded damages (3 seeds x 8 formats x flip/truncate/drop), one damaged and one clean copy each."""
    failed_sources = 0
    for kind, how, seed in CASES:
        rng = random.Random(f"{kind}/{how}/{seed}")
        root = tmp_path / f"{kind}-{how}-{seed}"
        root.mkdir()
        docs = paragraphs(f"{kind}{how}{seed}", rng.randint(200, 600))
        suffix, data = encode(kind, docs)
        (root / f"damaged.{suffix}").write_bytes(damage(data, how, rng))
        (root / f"clean.{suffix}").write_bytes(encode(kind, paragraphs(f"clean{kind}{how}{seed}", 40))[1])
        report, records = run([root], tmp_path / "out" / root.name, keep_partial=keep_partial)  # checks both rules
        clean = [r for r in records if source_of(r).startswith(str(root / "clean."))]
        assert len(clean) == (80 if kind.startswith("zip") else 40), (kind, how, seed)
        failed = [v for v in report["files"].values() if v["reason"] in ("bad_archive", "bad_compression")]
        failed_sources += len(failed)
        if not keep_partial:
            assert all(v["verdict"] == "skipped" for v in failed), (kind, how, seed, failed)
            assert report["documents_lost"] == 0
        assert all(v.get("documents_lost", 0) <= 1 for v in report["files"].values())  # at most the cut one
    assert failed_sources >= 40  # the damage really hit the compressed inputs, not only the uncompressed ones


def test_random_corruption_reports_the_same_with_two_processes(tmp_path: Path) -> None:
    rng = random.Random(7)
    for kind in FORMATS:
        suffix, data = encode(kind, paragraphs(kind, 300))
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{kind}.{suffix}").write_bytes(damage(data, rng.choice(DAMAGES), rng))
    results = [run([tmp_path / "in"], tmp_path / f"out{n}", keep_partial=True, num_proc=n) for n in (1, 2)]
    (one, records_one), (two, records_two) = results
    assert records_one == records_two
    for key in ("documents_in", "documents_lost", "skipped", "files", "files_read", "files_partial"):
        assert one[key] == two[key], key


# ---- symlinked directories ----------------------------------------------------------------------------------------


def test_symlinked_directories_are_followed_once_and_loops_never(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "in" / "sub" / "a.txt").write_bytes(text_bytes(paragraphs("本地", 2)))
    (tmp_path / "elsewhere" / "b.txt").write_bytes(text_bytes(paragraphs("链接", 3)))
    os.symlink("..", tmp_path / "in" / "loop")  # in/loop -> tmp_path, which holds in/ itself
    os.symlink("..", tmp_path / "in" / "sub" / "up")  # in/sub/up -> in
    os.symlink(tmp_path / "elsewhere", tmp_path / "in" / "linked")
    os.symlink(tmp_path / "elsewhere", tmp_path / "in" / "linked_again")
    report, records = run([tmp_path / "in"], tmp_path / "out")
    assert sorted(r["text"] for r in records) == sorted(paragraphs("本地", 2) + paragraphs("链接", 3))
    assert report["files_skipped"] == {"symlink_loop": 2, "duplicate_input": 1}
    assert report["files"][str(tmp_path / "in" / "loop")]["reason"] == "symlink_loop"
    assert report["files"][str(tmp_path / "in" / "sub" / "up")]["reason"] == "symlink_loop"
    assert any(r["source"].startswith(str(tmp_path / "in" / "linked" / "b.txt")) for r in records)

    report, records = run([tmp_path / "in"], tmp_path / "out-nofollow", follow=False)
    assert sorted(r["text"] for r in records) == paragraphs("本地", 2)
    assert report["files"][str(tmp_path / "in" / "linked")]["reason"] == "symlinked_directory"
    assert report["files_skipped"]["symlinked_directory"] == 1


# ---- memory ---------------------------------------------------------------------------------------------------------

PEAK_RSS = """
import sys
from lmforge.data.corpus import IngestOptions, ingest
ingest([sys.argv[1]], sys.argv[2], options=IngestOptions(), progress=False, shuffle_buffer=1000)
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) // 1024)
"""


@pytest.mark.slow
def test_memory_stays_flat_for_a_large_compressed_member(tmp_path: Path) -> None:
    """A 90 MB gzip member waits for its CRC in a spool of at most 16 MB in memory (then a temporary file): peak RSS
    stays within a few MB of a 1 MB member's (Linux /proc)."""
    import subprocess
    import sys

    def peak_mb(path: Path) -> int:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
        command = [sys.executable, "-c", PEAK_RSS, str(path), str(path) + "-out"]
        return int(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.split()[-1])

    paragraph = "".join(f"第{i}段：内存不应随输入增长。" for i in range(20)) + "\n\n"
    with gzip.open(tmp_path / "small.txt.gz", "wt", encoding="utf-8", compresslevel=1) as handle:
        handle.write(paragraph * 2000)
    with gzip.open(tmp_path / "large.txt.gz", "wt", encoding="utf-8", compresslevel=1) as handle:
        for i in range(120_000):
            handle.write(f"{i}{paragraph}")
    small, large = peak_mb(tmp_path / "small.txt.gz"), peak_mb(tmp_path / "large.txt.gz")
    print(f"peak RSS: 1 MB gzip member {small} MB, 92 MB gzip member {large} MB")
    # what may grow: the spool (16 MB) and dedup's set of recent hashes (at most 2^18, ~20 MB)
    assert large < small + 48, (small, large)
