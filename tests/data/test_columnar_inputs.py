"""datasets Arrow/Parquet inputs to ``lmforge prepare`` (issue 19 item 3): a ``.parquet`` file, an ``.arrow`` IPC
stream (what ``save_to_disk`` writes), a ``save_to_disk``-like directory, a folder of parquet shards, a nested
``--text_field``, bad rows and damaged files counted; ``documents_in == documents_out + skipped + lost`` always.
Every file is written here by pyarrow: no committed binaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.data.corpus import FILE_REASONS, IngestOptions, ingest
from lmforge.data.prepare import CorpusArgs, prepare_corpus

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TEXTS = [f"第{i}篇文档：自然语言处理是人工智能的一个重要方向。" for i in range(40)]


def run(inputs, out: Path, **kwargs) -> tuple[dict, list[dict]]:
    options = IngestOptions(**{"min_doc_length": 1, **kwargs.pop("options", {})})
    report = ingest([str(i) for i in inputs], out, options=options, progress=False, shuffle=False, **kwargs)
    records = [json.loads(line) for part in report["outputs"] for line in (out / part).open("rb")]
    accounted = report["documents_out"] + sum(report["skipped"].values()) + report["documents_lost"]
    assert report["documents_in"] == accounted
    assert report["documents_out"] == len(records)
    assert set(report["files_skipped"]) <= set(FILE_REASONS)
    return report, records


def write_stream(path: Path, table, rows_per_batch: int = 10) -> Path:
    """An Arrow IPC stream, as ``datasets`` writes ``data-00000-of-00001.arrow``."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=rows_per_batch):
            writer.write_batch(batch)
    return path


def write_save_to_disk(directory: Path, table, shards: int = 2) -> Path:
    """A ``Dataset.save_to_disk`` layout: data-0000k-of-0000n.arrow + dataset_info.json + state.json."""
    directory.mkdir(parents=True)
    step = -(-table.num_rows // shards)
    names = [f"data-{k:05d}-of-{shards:05d}.arrow" for k in range(shards)]
    for k, name in enumerate(names):
        write_stream(directory / name, table.slice(k * step, step))
    (directory / "dataset_info.json").write_text(json.dumps({"features": {"text": {"dtype": "string"}}}))
    state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": "0", "_split": "train"}
    (directory / "state.json").write_text(json.dumps(state))
    return directory


def test_parquet_file_in_record_batches_with_bad_rows_counted(tmp_path: Path) -> None:
    table = pa.table({"text": [*TEXTS[:5], None, None, *TEXTS[5:10]], "id": range(12)})  # two nulls: not text
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=4)  # three row groups
    report, records = run([tmp_path / "train.parquet"], tmp_path / "out")
    assert [r["text"] for r in records] == TEXTS[:10]
    assert report["documents_in"] == 12 and report["skipped"] == {"missing_text_field": 2}
    assert report["examples"]["missing_text_field"] == [f"{tmp_path / 'train.parquet'}[{row}]" for row in (5, 6)]
    assert records[0]["source"] == f"{tmp_path / 'train.parquet'}[0]" and report["files_read"] == 1
    # a column of another type is counted per row, never a crash
    pq.write_table(pa.table({"text": list(range(3))}), tmp_path / "ints.parquet")
    report, _ = run([tmp_path / "ints.parquet"], tmp_path / "out2")
    assert report["skipped"] == {"missing_text_field": 3}


def test_arrow_stream_and_file_format(tmp_path: Path) -> None:
    table = pa.table({"text": TEXTS[:25]})
    write_stream(tmp_path / "stream.arrow", table, rows_per_batch=7)
    with pa.OSFile(str(tmp_path / "file.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table.slice(0, 5), max_chunksize=2)  # the IPC file format (ARROW1 magic) too
    report, records = run([tmp_path / "stream.arrow", tmp_path / "file.arrow"], tmp_path / "out", dedup=False)
    assert [r["text"] for r in records] == TEXTS[:25] + TEXTS[:5]
    assert report["documents_in"] == 30 and report["bytes_read"] > 0


def test_save_to_disk_directory_and_parquet_shard_folder(tmp_path: Path) -> None:
    saved = write_save_to_disk(tmp_path / "saved", pa.table({"text": TEXTS[:20], "label": range(20)}))
    write_stream(saved / "cache-1234.arrow", pa.table({"text": TEXTS[20:30]}))  # Dataset.map's cache: not data
    shards = tmp_path / "parquet" / "data"
    shards.mkdir(parents=True)
    for k in range(2):
        pq.write_table(pa.table({"text": TEXTS[20 + 10 * k : 30 + 10 * k]}), shards / f"train-{k:05d}-of-00002.parquet")
    report, records = run([saved, tmp_path / "parquet"], tmp_path / "out")
    assert [r["text"] for r in records] == TEXTS  # state.json's files in order, then the shards in sorted order
    assert report["files_read"] == 4
    assert report["files_skipped"] == {"dataset_cache": 1, "dataset_metadata": 2}  # counted, never read as text
    assert report["skipped"] == {}


def test_nested_text_field(tmp_path: Path) -> None:
    meta = [{"body": TEXTS[0]}, {"body": None}, None, {"body": TEXTS[1]}]
    paragraphs = [[{"text": TEXTS[2]}], [], [{"text": TEXTS[3]}], None]
    table = pa.table({"meta": meta, "paragraphs": paragraphs, "meta.title": ["a", "b", "c", "d"]})
    pq.write_table(table, tmp_path / "nested.parquet")
    write_stream(tmp_path / "nested.arrow", table)
    report, records = run([tmp_path / "nested.parquet"], tmp_path / "a", options={"text_field": "meta.body"})
    assert [r["text"] for r in records] == TEXTS[:2] and report["skipped"] == {"missing_text_field": 2}
    report, records = run([tmp_path / "nested.arrow"], tmp_path / "b", options={"text_field": "paragraphs.0.text"})
    assert [r["text"] for r in records] == TEXTS[2:4] and report["skipped"] == {"missing_text_field": 2}
    # a flattened column name with the dots in it wins, as for jsonl keys
    report, records = run([tmp_path / "nested.parquet"], tmp_path / "c", options={"text_field": "meta.title"})
    assert [r["text"] for r in records] == ["a", "b", "c", "d"]
    report, _ = run([tmp_path / "nested.parquet"], tmp_path / "d", options={"text_field": "missing"})
    assert report["skipped"] == {"missing_text_field": 4}


@pytest.mark.parametrize("keep_partial", [False, True])
def test_truncated_and_damaged_files_are_counted(tmp_path: Path, keep_partial: bool, capsys) -> None:
    table = pa.table({"text": TEXTS})
    data = write_stream(tmp_path / "clean.arrow", table).read_bytes()
    (tmp_path / "cut.arrow").write_bytes(data[: len(data) * 2 // 3])  # cut inside a later batch
    pq.write_table(table, tmp_path / "clean.parquet", row_group_size=10)
    data = (tmp_path / "clean.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])  # no footer: unreadable from the start
    damaged = bytearray(data)  # footer intact, the third row group's pages overwritten
    offset = pq.ParquetFile(tmp_path / "clean.parquet").metadata.row_group(2).column(0).data_page_offset
    damaged[offset : offset + 32] = b"\xff" * 32
    (tmp_path / "damaged.parquet").write_bytes(bytes(damaged))
    (tmp_path / "empty.parquet").write_bytes(b"")
    inputs = [tmp_path / n for n in ("cut.arrow", "cut.parquet", "damaged.parquet", "empty.parquet")]
    out = tmp_path / "out"
    settings = dict(min_doc_length=1, keep_partial=keep_partial, dedup=False, shuffle=False, progress=False)
    report = prepare_corpus(CorpusArgs(input=[str(i) for i in inputs], output_dir=str(out), **settings))
    console = capsys.readouterr().out
    assert console.count("\n") == 1 and "bad_parquet" in console  # one line
    files = report["files"]
    assert files[str(tmp_path / "cut.parquet")]["reason"] == "bad_parquet"
    assert files[str(tmp_path / "cut.parquet")]["verdict"] == "skipped"
    assert files[str(tmp_path / "empty.parquet")]["reason"] == "empty_file"
    cut, bad = files[str(tmp_path / "cut.arrow")], files[str(tmp_path / "damaged.parquet")]
    assert cut["reason"] == "bad_arrow" and bad["reason"] == "bad_parquet"
    records = [json.loads(line) for part in report["outputs"] for line in (out / part).open("rb")]
    sources = {r["source"].rsplit("[", 1)[0] for r in records}
    if keep_partial:
        assert cut["verdict"] == bad["verdict"] == "kept_partial"
        assert bad["documents_kept"] == 20 and bad["documents_lost"] == 20  # the footer says 40 rows
        assert report["documents_lost"] == 20 and report["documents_out"] == len(records) == 20 + cut["documents_kept"]
        assert sources == {str(tmp_path / "cut.arrow"), str(tmp_path / "damaged.parquet")}
    else:
        assert cut["verdict"] == bad["verdict"] == "skipped" and records == []
        assert bad["documents_skipped"] == 40  # 20 read, 20 never readable: all counted
        assert report["skipped"]["damaged_file"] == 40 + cut["documents_skipped"]
    assert (
        report["documents_in"] == report["documents_out"] + sum(report["skipped"].values()) + report["documents_lost"]
    )


def test_two_processes_read_columnar_inputs_like_one(tmp_path: Path) -> None:
    write_save_to_disk(tmp_path / "saved", pa.table({"text": TEXTS}), shards=3)
    one, _ = run([tmp_path / "saved"], tmp_path / "one")
    two, _ = run([tmp_path / "saved"], tmp_path / "two", num_proc=2)
    assert (tmp_path / "one" / "part-00000.jsonl").read_bytes() == (tmp_path / "two" / "part-00000.jsonl").read_bytes()
    assert one["documents_out"] == two["documents_out"] == 40


def test_missing_pyarrow_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    from lmforge.data.corpus import PrepareError

    pq.write_table(pa.table({"text": TEXTS[:2]}), tmp_path / "a.parquet")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(PrepareError, match=r"needs pyarrow: pip install 'lmforge\[arrow\]'"):
        run([tmp_path / "a.parquet"], tmp_path / "out")


MEMORY_PROBE = """
import sys, tracemalloc
import pyarrow as pa
from lmforge.data.columnar import parse_columnar
from lmforge.data.documents import IngestOptions, IngestStats

class CountingSink:  # the reader alone: documents counted and dropped
    stats = IngestStats()
    def emit(self, text, where, bad=None):
        self.stats.documents_out += text is not None

sink = CountingSink()
tracemalloc.start()
error = parse_columnar(sys.argv[1], sys.argv[2], "big", sink, IngestOptions(), lambda n: None)
assert error is None, error
print(sink.stats.documents_out, pa.default_memory_pool().max_memory(), tracemalloc.get_traced_memory()[1])
"""


@pytest.mark.parametrize("kind", ["parquet", "arrow"])
def test_memory_stays_flat(tmp_path: Path, kind: str) -> None:
    """Reading a 4x larger file takes no more Arrow or Python memory (a record batch at a time, never the whole
    file), and a 13 MB file is read in under a quarter of its size."""
    import subprocess
    import sys

    peaks = []
    for rows in (3_000, 12_000):
        table = pa.table({"text": [f"{i:08d}" + "长文档的正文。" * 50 for i in range(rows)], "other": range(rows)})
        path = tmp_path / f"{rows}.{kind}"
        if kind == "parquet":
            pq.write_table(table, path, row_group_size=500, compression="none")
        else:
            write_stream(path, table, rows_per_batch=1000)  # datasets' default writer_batch_size
        probe = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(path), kind], capture_output=True, text=True, check=True
        )
        documents, arrow_peak, python_peak = map(int, probe.stdout.split())
        assert documents == rows
        peaks.append((arrow_peak, python_peak))
    size = path.stat().st_size
    assert size > 12e6
    (small_arrow, small_python), (big_arrow, big_python) = peaks
    assert big_arrow <= 1.25 * small_arrow + (256 << 10) and big_python <= 1.25 * small_python + (256 << 10), peaks
    assert big_arrow < size / 4 and big_python < size / 4, (peaks, size)
