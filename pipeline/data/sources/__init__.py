"""Dataset readers for the prepare stage, one module per source format.

A reader turns the fetch stage's `source.json` record into a `Source`: class
names, per-split sample counts, and an iterator of `RawSample`s per split in a
fixed order (so prepared shards are deterministic).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from pipeline.registry import Registry


@dataclass(frozen=True)
class RawSample:
    label: int
    data: bytes  # encoded image bytes (original file bytes, or lossless PNG for arrays)
    ext: str  # file extension without dot, lower case: png, jpg, ...
    source: str  # where it came from: a relative path, or "file:index" for array sources


@dataclass
class Source:
    class_names: list[str]
    counts: dict[str, int]  # samples per split, for progress bars
    read: Callable[[str], Iterator[RawSample]]  # split -> samples in a fixed order


SourceOpener = Callable[[dict, Path], Source]  # (source.json record, raw directory) -> Source
SOURCES: Registry[SourceOpener] = Registry("source")

from pipeline.data.sources import cifar, digits, files, idx  # noqa: E402,F401  (registration)
