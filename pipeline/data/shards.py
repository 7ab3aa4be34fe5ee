"""Deterministic WebDataset shard writing and random-access reading of shard members.

A sample is stored as two tar members, ``{key}.{ext}`` (the encoded image) and
``{key}.cls`` (the label as ASCII digits). Tar headers carry fixed metadata
(mtime 0, no user names), so the same samples in the same order give
byte-identical shards.
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

# Tar header plus worst-case padding per member; used to keep shards under the byte limit.
_MEMBER_OVERHEAD = 1024


def encode_png(array: np.ndarray) -> bytes:
    """Lossless, deterministic PNG bytes of a uint8 HxW or HxWxC array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


class ShardSetWriter:
    """Write samples into ``directory/shard-NNNNNN.tar``, starting a new shard at either limit."""

    def __init__(self, directory: Path, max_samples: int, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.num_shards = 0
        self._writer: wds.TarWriter | None = None
        self._count = 0
        self._bytes = 0

    def _open_next(self) -> None:
        self.close()
        path = self.directory / shard_name(self.num_shards)
        self._writer = wds.TarWriter(str(path), encoder=False, mtime=0, user="", group="")
        self.num_shards += 1
        self._count = 0
        self._bytes = 0

    def write(self, key: str, label: int, ext: str, data: bytes) -> str:
        """Append one sample; return the shard's file name."""
        if "." in key:
            raise ValueError(f"WebDataset keys must not contain dots: {key!r}")
        size = len(data) + 2 * _MEMBER_OVERHEAD
        full = self._count >= self.max_samples or (self._count and self._bytes + size > self.max_bytes)
        if self._writer is None or full:
            self._open_next()
        self._writer.write({"__key__": key, ext: data, "cls": str(label).encode()})
        self._count += 1
        self._bytes += size
        return shard_name(self.num_shards - 1)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@dataclass(frozen=True)
class MemberRef:
    """Where one sample's image bytes sit inside a shard."""

    shard: Path
    ext: str
    offset: int
    size: int


def index_shard(path: Path) -> dict[str, MemberRef]:
    """Map each sample key in a shard to its image member, reading only the 512-byte headers.

    Our shards are plain USTAR archives of regular files (see ShardSetWriter);
    parsing their headers directly is ~10x faster than the tarfile module.
    Anything else (long-name or pax extensions) goes through tarfile.
    """
    refs: dict[str, MemberRef] = {}
    with open(path, "rb") as handle:
        offset = 0
        while True:
            handle.seek(offset)
            header = handle.read(512)
            if len(header) < 512 or header == bytes(512):
                return refs
            if header[156:157] not in (b"0", b"\0"):
                return _index_with_tarfile(path)
            name = header[:100].split(b"\0", 1)[0].decode()
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            key, _, ext = name.partition(".")
            if ext != "cls":
                refs[key] = MemberRef(path, ext, offset + 512, size)
            offset += 512 + (size + 511) // 512 * 512


def _index_with_tarfile(path: Path) -> dict[str, MemberRef]:
    refs: dict[str, MemberRef] = {}
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if member.isfile() and ext != "cls":
                refs[key] = MemberRef(path, ext, member.offset_data, member.size)
    return refs


class MemberReader:
    """Read image bytes by MemberRef, keeping the most recently used shards open."""

    def __init__(self, max_open: int = 64) -> None:
        self.max_open = max_open
        self._files: dict[Path, io.BufferedReader] = {}

    def read(self, ref: MemberRef) -> bytes:
        handle = self._files.pop(ref.shard, None)
        if handle is None:
            if len(self._files) >= self.max_open:
                self._files.pop(next(iter(self._files))).close()
            handle = open(ref.shard, "rb")
        self._files[ref.shard] = handle  # re-insert: dict order is the LRU order
        handle.seek(ref.offset)
        return handle.read(ref.size)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
