"""CIFAR-10 / CIFAR-100 in the official python tarball format (pickled batches).

One pickled batch is in memory at a time: the archive is scanned once for the
class names and the size of every batch, then each split's batches are read in
name order (data_batch_1..5, whatever the tar order). A batch is the format's
unit, so CIFAR-100's single 50,000-image train batch (150 MB) is its peak.
"""
from __future__ import annotations

import contextlib
import pickle
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.data.errors import DataError
from pipeline.data.shards import encode_png
from pipeline.data.sources import SOURCES, RawSample, Source

# member basename -> split, per variant; label key and meta (names) key
_VARIANTS = {
    "cifar10": ({"data_batch_1": "train", "data_batch_2": "train", "data_batch_3": "train",
                 "data_batch_4": "train", "data_batch_5": "train", "test_batch": "test"},
                "labels", "batches.meta", "label_names"),
    "cifar100": ({"train": "train", "test": "test"}, "fine_labels", "meta", "fine_label_names"),
}


@contextlib.contextmanager
def _open_archive(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(archive, "r:*") as tar:
            yield tar
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive}: not a readable CIFAR archive ({exc}); truncated or corrupt?") from exc


# The only callables a CIFAR batch needs: numpy's array reconstruction (numpy 1 and 2 module
# paths) and, for batches pickled by Python 3 at protocol 2, the latin-1 encoding of bytes.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Dicts, lists, strings, bytes, numbers and numpy arrays only: a tampered archive
    (`data.verify: false` accepts unknown ones) cannot name any other callable, so it cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name} (a CIFAR batch holds only "
                                         "dicts, lists, strings, bytes and numpy arrays)")
        return super().find_class(module, name)


def _unpickle(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> dict:
    try:
        obj = _BatchUnpickler(tar.extractfile(member), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a damaged (or tampered) archive
        raise DataError(f"{archive}: member {member.name} cannot be read ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{archive}: member {member.name} holds a {type(obj).__name__}, not a CIFAR batch dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def scan_cifar_archive(archive: Path, variant: str) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """Class names and, per split, its batch members in name order with their image counts."""
    batches, label_key, meta_name, names_key = _VARIANTS[variant]
    members: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    names = None
    with _open_archive(archive) as tar:
        for member in tar:
            base = Path(member.name).name
            if base == meta_name:
                names = [n.decode() if isinstance(n, bytes) else n
                         for n in _unpickle(tar, member, archive)[names_key]]
            elif base in batches:
                labels = _unpickle(tar, member, archive)[label_key]
                members[batches[base]].append((member.name, len(labels)))
    found = {Path(name).name for split in members.values() for name, _ in split}
    missing = sorted(set(batches) - found) + ([meta_name] if names is None else [])
    if missing:
        raise DataError(f"{archive}: missing {', '.join(missing)}; truncated or not {variant}?")
    for split in members.values():
        split.sort(key=lambda item: Path(item[0]).name)
    return names, members


def iter_cifar_batches(archive: Path, variant: str, member_names: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images NxHxWx3 uint8, labels) of the named batch members, one batch in memory at a time."""
    label_key = _VARIANTS[variant][1]
    with _open_archive(archive) as tar:
        for name in member_names:
            batch = _unpickle(tar, tar.getmember(name), archive)
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            yield data.transpose(0, 2, 3, 1), np.asarray(batch[label_key], dtype=np.int64)


def open_cifar(info: dict, raw_dir: Path) -> Source:
    (archive,) = [raw_dir / name for name in info["files"] if name != "source.json"]
    variant = info["dataset"]
    names, members = scan_cifar_archive(archive, variant)

    def read(split: str):
        index = 0
        for images, labels in iter_cifar_batches(archive, variant, [name for name, _ in members[split]]):
            for image, label in zip(images, labels):
                yield RawSample(int(label), encode_png(image), "png", f"{split}:{index}")
                index += 1

    return Source(names, {split: sum(n for _, n in items) for split, items in members.items()}, read)


SOURCES.register("cifar")(open_cifar)
