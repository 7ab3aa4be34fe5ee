"""CIFAR-10 / CIFAR-100 in the official python tarball format (pickled batches)."""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

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


def _unpickle(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> dict:
    try:
        obj = pickle.load(tar.extractfile(member), encoding="bytes")
    except Exception as exc:  # any unpickling failure means a damaged archive
        raise DataError(f"{archive}: member {member.name} cannot be read ({exc})") from exc
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_cifar_archive(archive: Path, variant: str) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Class names and {split: (images NxHxWx3 uint8, labels)} from an official CIFAR tarball."""
    batches, label_key, meta_name, names_key = _VARIANTS[variant]
    parts: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    names = None
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = Path(member.name).name
                if base == meta_name:
                    names = [n.decode() if isinstance(n, bytes) else n
                             for n in _unpickle(tar, member, archive)[names_key]]
                elif base in batches:
                    batch = _unpickle(tar, member, archive)
                    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                    parts[batches[base]].append((base, data.transpose(0, 2, 3, 1),
                                                 np.asarray(batch[label_key], dtype=np.int64)))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive}: not a readable CIFAR archive ({exc}); truncated or corrupt?") from exc
    found = {base for split in parts.values() for base, _, _ in split}
    missing = sorted(set(batches) - found) + ([meta_name] if names is None else [])
    if missing:
        raise DataError(f"{archive}: missing {', '.join(missing)}; truncated or not {variant}?")
    splits = {}
    for split, items in parts.items():
        items.sort(key=lambda item: item[0])  # data_batch_1..5 in order, whatever the tar order
        splits[split] = (np.concatenate([i[1] for i in items]), np.concatenate([i[2] for i in items]))
    return names, splits


def open_cifar(info: dict, raw_dir: Path) -> Source:
    (archive,) = [raw_dir / name for name in info["files"] if name != "source.json"]
    names, splits = read_cifar_archive(archive, info["dataset"])

    def read(split: str):
        images, labels = splits[split]
        for i, (image, label) in enumerate(zip(images, labels)):
            yield RawSample(int(label), encode_png(image), "png", f"{split}:{i}")

    return Source(names, {s: len(v[1]) for s, v in splits.items()}, read)


SOURCES.register("cifar")(open_cifar)
