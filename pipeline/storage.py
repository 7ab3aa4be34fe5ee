"""Local paths, NFS mounts and object-store URLs (s3://, gs://, file://) alike, through fsspec.

Shards, split metadata and job results may live on any of them: a path is used
as it is, a URL goes to the fsspec filesystem its scheme names (s3fs / gcsfs
must be installed for s3:// / gs://).
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import IO

import fsspec


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def join(base: str | Path, *parts: str) -> str:
    """`base`/part/... for a path or a URL."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def absolute(location: str | Path) -> str:
    """A URL as given, a path made absolute (symlinks resolved): what workers on other nodes can open."""
    return str(location) if is_url(location) else str(Path(location).resolve())


def open_binary(location: str, mode: str = "rb") -> IO[bytes]:
    """An open binary file at a path or URL (close it, or use it in `with`)."""
    return fsspec.open(location, mode).open()


def exists(location: str) -> bool:
    fs, path = fsspec.core.url_to_fs(location)
    return fs.exists(path)


def list_files(root: str) -> list[str]:
    """Files under `root` (a directory, or one file), relative to it, sorted; [] if absent."""
    fs, path = fsspec.core.url_to_fs(root)
    if not fs.exists(path):
        return []
    if fs.isfile(path):
        return [""]
    base = path.rstrip("/") + "/"
    return sorted(found[len(base):] for found in fs.find(path))


def copy_file(src: str, dst: str) -> str:
    """Copy one file between any two locations (parents created); returns its SHA-256."""
    digest = hashlib.sha256()
    if not is_url(dst):
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with open_binary(src) as source, open_binary(dst, "wb") as target:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            target.write(chunk)
    return digest.hexdigest()


def copy_tree(src: str, dst: str) -> dict[str, str]:
    """Copy a file or a directory tree from `src` to `dst` (replacing what is there);
    returns {relative path: SHA-256} ("" for a single file)."""
    remove(dst)
    return {rel: copy_file(join(src, rel) if rel else src, join(dst, rel) if rel else dst)
            for rel in list_files(src)}


def remove(location: str) -> None:
    """Delete a file or directory tree if it exists."""
    if not is_url(location):
        path = Path(location)
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        return
    fs, path = fsspec.core.url_to_fs(location)
    if fs.exists(path):
        fs.rm(path, recursive=True)
