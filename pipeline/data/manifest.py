"""The Parquet manifests of the prepare and split stages (their data contracts) and a streaming writer.

Rows are appended one at a time and written as Parquet row groups, so a stage
holds at most one row group of manifest rows, whatever the dataset size.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.errors import DataError

MANIFEST_FILE = "manifest.parquet"  # in the prepare and the split stage's output directories

PREPARED_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("label", pa.int32()),
    ("class_name", pa.string()),
    ("split", pa.string()),
    ("shard", pa.string()),  # relative to the prepared directory, e.g. train/shard-000000.tar
    ("ext", pa.string()),
    ("size", pa.int64()),  # bytes of the encoded image
    ("sha256", pa.string()),  # of the encoded image bytes
    ("source", pa.string()),  # original relative path, or file:index for array sources
])

SPLIT_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("label", pa.int32()),
    ("class_name", pa.string()),
    ("role", pa.string()),  # train | val
    ("shard", pa.string()),  # relative to the split directory, e.g. train/shard-000000.tar
    ("ext", pa.string()),
    ("size", pa.int64()),
    ("sha256", pa.string()),
])


class ManifestWriter:
    """Append rows (one value per schema field, in order) to a Parquet file, `group_rows` per row group."""

    def __init__(self, path: str | Path, schema: pa.Schema, group_rows: int = 8_192) -> None:
        self.schema = schema
        self.group_rows = group_rows
        self.num_rows = 0
        self._writer = pq.ParquetWriter(str(path), schema)
        self._columns: list[list] = [[] for _ in schema]

    def append(self, *values) -> None:
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)
        self.num_rows += 1
        if len(self._columns[0]) >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._columns[0]:
            self._writer.write_table(pa.table(self._columns, schema=self.schema))
            self._columns = [[] for _ in self.schema]

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@contextlib.contextmanager
def manifest_errors(name: str | Path) -> Iterator[None]:
    """Parquet errors while reading manifest `name` become one DataError naming it."""
    try:
        yield
    except pa.ArrowException as exc:
        raise DataError(f"{name}: not a readable Parquet manifest ({exc}); rerun the stage that wrote it") from exc


def open_manifest(source: str | Path | IO[bytes], name: str | Path | None = None) -> pq.ParquetFile:
    """A manifest for reading; an unreadable file raises DataError naming it (`name`, default `source`)."""
    with manifest_errors(name or source):
        return pq.ParquetFile(source)


def read_manifest(source: str | Path | IO[bytes], columns: list[str], name: str | Path | None = None) -> list[dict]:
    """The rows of a manifest (only `columns`); an unreadable file or a missing column raises DataError."""
    with manifest_errors(name or source):
        return open_manifest(source, name).read(columns=columns).to_pylist()
