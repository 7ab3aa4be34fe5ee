"""IDX files (MNIST, Fashion-MNIST): uint8 image and label arrays, stored as lossless PNG.

The files are streamed in chunks of rows, so memory does not grow with the dataset.
"""
from __future__ import annotations

import contextlib
import gzip
import math
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from pipeline.data.catalog import DATASETS
from pipeline.data.errors import DataError
from pipeline.data.shards import encode_png
from pipeline.data.sources import SOURCES, RawSample, Source

_FILES = {"train": "train-{}-idx{}-ubyte", "test": "t10k-{}-idx{}-ubyte"}
_UBYTE = 0x08
_CHUNK_ROWS = 4096


@contextlib.contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    """The file (gzip or plain) for reading; read errors become one DataError naming it."""
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as handle:
            yield handle
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); the file is truncated or corrupt") from exc


def _read_header(handle: BinaryIO, path: Path) -> tuple[int, ...]:
    magic = handle.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != _UBYTE:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    dims = handle.read(4 * magic[3])
    if len(dims) < 4 * magic[3]:
        raise DataError(f"{path}: the header is cut short; truncated?")
    return tuple(int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4))


def idx_shape(path: Path) -> tuple[int, ...]:
    """The array shape an IDX file (optionally gzip-compressed) declares, reading only its header."""
    with _open(path) as handle:
        return _read_header(handle, path)


def iter_idx(path: Path, chunk_rows: int = _CHUNK_ROWS) -> Iterator[np.ndarray]:
    """The IDX array as consecutive uint8 chunks of `chunk_rows` rows; a file shorter or longer than
    its header promises raises DataError when the stream reaches the difference."""
    with _open(path) as handle:
        shape = _read_header(handle, path)
        row_bytes = math.prod(shape[1:])
        for start in range(0, shape[0], chunk_rows):
            rows = min(chunk_rows, shape[0] - start)
            raw = handle.read(rows * row_bytes)
            if len(raw) != rows * row_bytes:
                raise DataError(f"{path}: ends after {start + len(raw) // row_bytes} of the "
                                f"{shape[0]} rows its header promises; truncated?")
            yield np.frombuffer(raw, dtype=np.uint8).reshape((rows, *shape[1:]))
        if handle.read(1):
            raise DataError(f"{path}: longer than the {shape} array its header promises")


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of a uint8 array (gzip-compressed when the name ends in .gz): the inverse of
    iter_idx, for synthetic datasets in tests and benchmarks."""
    header = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if path.name.endswith(".gz") else raw)


def _find(raw_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (raw_dir / name).is_file():
            return raw_dir / name
    raise DataError(f"{raw_dir}: missing {stem}(.gz); rerun the fetch stage")


def open_idx(info: dict, raw_dir: Path) -> Source:
    files, counts = {}, {}
    for split, pattern in _FILES.items():
        images = _find(raw_dir, pattern.format("images", 3))
        labels = _find(raw_dir, pattern.format("labels", 1))
        num_images, num_labels = idx_shape(images)[0], idx_shape(labels)[0]
        if num_images != num_labels:
            raise DataError(f"{raw_dir}: {split} has {num_images} images but {num_labels} labels")
        files[split], counts[split] = (images, labels), num_images

    def read(split: str):
        images, labels = files[split]
        name = _FILES[split].format("images", 3)
        index = 0
        # strict: both files are read to their end, so either one's trailing bytes are caught
        for image_chunk, label_chunk in zip(iter_idx(images), iter_idx(labels), strict=True):
            for image, label in zip(image_chunk, label_chunk):
                yield RawSample(int(label), encode_png(image), "png", f"{name}:{index}")
                index += 1

    names = list(DATASETS.get(info["dataset"]).class_names)
    return Source(names, counts, read)


SOURCES.register("idx")(open_idx)
