"""IDX files (MNIST, Fashion-MNIST): uint8 image and label arrays, stored as lossless PNG."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from pipeline.data.catalog import DATASETS
from pipeline.data.errors import DataError
from pipeline.data.shards import encode_png
from pipeline.data.sources import SOURCES, RawSample, Source

_FILES = {"train": "train-{}-idx{}-ubyte", "test": "t10k-{}-idx{}-ubyte"}
_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzip-compressed) into a uint8 array."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); the file is truncated or corrupt") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes where the header promises {expected}; truncated?")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(raw_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (raw_dir / name).is_file():
            return raw_dir / name
    raise DataError(f"{raw_dir}: missing {stem}(.gz); rerun the fetch stage")


def open_idx(info: dict, raw_dir: Path) -> Source:
    arrays = {}
    for split, pattern in _FILES.items():
        images = read_idx(_find(raw_dir, pattern.format("images", 3)))
        labels = read_idx(_find(raw_dir, pattern.format("labels", 1)))
        if len(images) != len(labels):
            raise DataError(f"{raw_dir}: {split} has {len(images)} images but {len(labels)} labels")
        arrays[split] = (images, labels)

    def read(split: str):
        images, labels = arrays[split]
        name = _FILES[split].format("images", 3)
        for i, (image, label) in enumerate(zip(images, labels)):
            yield RawSample(int(label), encode_png(image), "png", f"{name}:{i}")

    names = list(DATASETS.get(info["dataset"]).class_names)
    return Source(names, {s: len(a[1]) for s, a in arrays.items()}, read)


SOURCES.register("idx")(open_idx)
