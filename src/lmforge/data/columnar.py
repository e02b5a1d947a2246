"""Reading ``datasets`` Arrow and Parquet inputs: ``.parquet`` files, ``.arrow`` files (the Arrow IPC stream that
``datasets.Dataset.save_to_disk`` and the ``datasets`` cache write, or the IPC file format) and directories of them
(a ``save_to_disk`` directory, a folder of parquet shards as ``load_dataset("parquet", data_dir=...)`` reads).

Text comes from ``--text_field`` through ``readers.field_value``, exactly as for jsonl: the column named
``text_field`` if there is one (a flattened name with the dots in it wins), else the column named by its first
step, each row's value of which is walked along the rest of the path (struct fields, list indices). Only that
column is read, one record batch at a time (a parquet row group is the unit ``pyarrow`` decodes; an Arrow file
is memory-mapped), converted to Python ``BATCH_ROWS`` rows at a time: memory stays flat whatever the file size.

Every row is a document seen: a row whose value is not a string (null, a number, a missing column or path) is
skipped as ``missing_text_field``, as the jsonl reader does. A file is a transaction like a compressed one
(``corpus.ingest_source``): an Arrow error while reading (a truncated stream, a corrupt page, a batch that fails
``validate(full=True)``) ends it as ``bad_parquet`` / ``bad_arrow``, and the rows a damaged parquet file still
had to give (its footer knows how many) are counted as lost. ``pyarrow`` is imported only when such a file is
read (``pip install 'lmforge[arrow]'``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.data.errors import PrepareError

if TYPE_CHECKING:
    from lmforge.data.documents import IngestOptions, _DocumentSink

COLUMNAR_SUFFIXES = {".parquet": "parquet", ".arrow": "arrow"}
BATCH_ROWS = 1024  # rows converted to Python objects at a time
DATASETS_METADATA = ("state.json", "dataset_info.json", "dataset_dict.json")  # written by save_to_disk beside the data
ARROW_FILE_MAGIC = b"ARROW1"  # the IPC file format starts with it; the stream format (save_to_disk) does not


def columnar_kind(name: str) -> str | None:
    """The kind, "parquet" or "arrow", of a file name with that suffix, else None."""
    return next((kind for suffix, kind in COLUMNAR_SUFFIXES.items() if name.lower().endswith(suffix)), None)


def require_pyarrow() -> None:
    """A one-line error when ``.parquet``/``.arrow`` inputs are given and pyarrow is missing (checked before any
    reading, without importing it: workers fork after this)."""
    if importlib.util.find_spec("pyarrow") is None:
        raise PrepareError("reading .parquet/.arrow inputs needs pyarrow: pip install 'lmforge[arrow]'")


def datasets_directory_files(directory: str, files: list[str]) -> dict[str, str]:
    """The files of a ``save_to_disk`` directory that are not its data: ``{name: reason}``. Its metadata
    (``state.json``, ``dataset_info.json``; ``dataset_dict.json`` of a DatasetDict) is ``dataset_metadata``, and
    an ``.arrow`` file that ``state.json`` does not list (a ``cache-*.arrow`` left by ``Dataset.map``) is
    ``dataset_cache``. Empty for any other directory."""
    names = set(files)
    if "dataset_dict.json" in names:
        return {"dataset_dict.json": "dataset_metadata"}
    if "state.json" not in names or not any(columnar_kind(n) == "arrow" for n in names):
        return {}
    out = {name: "dataset_metadata" for name in DATASETS_METADATA if name in names}
    try:
        state = json.loads(Path(directory, "state.json").read_text(encoding="utf-8"))
        listed = {entry["filename"] for entry in state["_data_files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return out  # not the state.json we know: every .arrow file is data
    out.update({n: "dataset_cache" for n in names if columnar_kind(n) == "arrow" and n not in listed})
    return out


def parse_columnar(
    path: str, kind: str, name: str, sink: _DocumentSink, options: IngestOptions, on_bytes: Callable[[int], None]
) -> BaseException | None:
    """Emit one document per row of ``path`` to ``sink``; returns the error that ended the file early, if any."""
    import pyarrow as pa

    from lmforge.data.readers import field_value

    size = os.path.getsize(path)
    if size == 0:
        sink.stats.skip_file("empty_file", name)
        return None
    row = 0
    expected: int | None = None  # rows the file says it holds (parquet footer), to count what a failure loses
    opened: list = []
    try:
        batches, names, expected = _open(path, kind, options.text_field, on_bytes, size, opened)
        column = options.text_field if options.text_field in names else options.text_field.split(".")[0]
        for batch in batches:
            if column not in batch.schema.names:  # no such column: every row lacks the text
                for _ in range(batch.num_rows):
                    sink.emit(None, f"{name}[{row}]", "missing_text_field")
                    row += 1
                continue
            batch.validate(full=True)  # offsets and UTF-8 of a damaged file: an error here, never a crash below
            values = batch.column(batch.schema.get_field_index(column))
            for start in range(0, batch.num_rows, BATCH_ROWS):
                for value in values.slice(start, BATCH_ROWS).to_pylist():
                    text = field_value({column: value}, options.text_field)
                    where = f"{name}[{row}]"
                    if isinstance(text, str):
                        sink.emit(text, where)
                    else:
                        sink.emit(None, where, "missing_text_field")
                    row += 1
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
        if expected is not None and expected > row:
            sink.lose(f"{name}[{row}]", count=expected - row)
        return error
    finally:
        for handle in opened:
            handle.close()
    return None


def _open(path: str, kind: str, text_field: str, on_bytes: Callable[[int], None], size: int, opened: list):
    """(record batches, column names, rows in the file or None); batches carry only the text column if it exists.
    What it opens is appended to ``opened`` for the caller to close."""
    import pyarrow as pa

    if kind == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        opened.append(parquet)
        names = parquet.schema_arrow.names
        column = text_field if text_field in names else text_field.split(".")[0]
        rows = parquet.metadata.num_rows
        columns = [column] if column in names else []

        def parquet_batches() -> Iterator:
            done = 0
            for group in range(parquet.num_row_groups):
                for batch in parquet.iter_batches(
                    batch_size=BATCH_ROWS * 8, row_groups=[group], columns=columns, use_threads=False
                ):
                    yield batch
                    done += batch.num_rows
                    on_bytes(size * done // max(rows, 1) - size * (done - batch.num_rows) // max(rows, 1))

        return parquet_batches(), names, rows
    mapped = pa.memory_map(path)
    opened.append(mapped)
    is_file_format = mapped.read(len(ARROW_FILE_MAGIC)) == ARROW_FILE_MAGIC
    mapped.seek(0)
    if is_file_format:
        reader = pa.ipc.open_file(mapped)

        def file_batches() -> Iterator:
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
            on_bytes(size)

        return file_batches(), reader.schema.names, None
    stream = pa.ipc.open_stream(mapped)

    def stream_batches() -> Iterator:
        position = mapped.tell()
        for batch in stream:
            yield batch
            on_bytes(mapped.tell() - position)
            position = mapped.tell()

    return stream_batches(), stream.schema.names, None
