"""Generators of small real-format datasets for the tests: IDX, official CIFAR tarballs, image trees."""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.shards import ShardSetWriter, encode_png
from pipeline.data.sources.idx import write_idx


def make_idx_dataset(root: Path, per_class_train: int, per_class_test: int, num_classes: int = 10,
                     seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST-format files in `root`; returns {split: (images, labels)} as written."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, per_class in (("train", "train", per_class_train), ("test", "t10k", per_class_test)):
        labels = np.tile(np.arange(num_classes, dtype=np.uint8), per_class)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[split] = (images, labels)
    return out


def cifar_images(n: int, offset: int = 0) -> np.ndarray:
    """N x 3072 uint8 rows (RGB planes), cheap to compress: each image is nearly constant."""
    rows = np.zeros((n, 3072), dtype=np.uint8)
    index = np.arange(offset, offset + n)
    rows[:, 0], rows[:, 1], rows[:, 1024] = index % 256, (index // 256) % 256, 7
    return rows


def make_cifar_archive(path: Path, variant: str, train_per_class: int, test_per_class: int,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """A tarball in the official python format of CIFAR-10 or CIFAR-100; returns labels per split.

    Labels are shuffled (as in the real batches) so class order differs from sample order.
    """
    rng = np.random.default_rng(seed)
    num_classes = 10 if variant == "cifar10" else 100
    top = "cifar-10-batches-py" if variant == "cifar10" else "cifar-100-python"
    label_key = b"labels" if variant == "cifar10" else b"fine_labels"
    members: dict[str, dict] = {}
    labels = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        y = rng.permutation(np.repeat(np.arange(num_classes), per_class))
        labels[split] = y
        x = cifar_images(len(y), offset=0 if split == "train" else 10**6)
        if variant == "cifar100":
            members[split] = {b"data": x, label_key: y.tolist(), b"coarse_labels": (y // 5).tolist()}
        elif split == "train":
            for b, (xs, ys) in enumerate(zip(np.array_split(x, 5), np.array_split(y, 5)), start=1):
                members[f"data_batch_{b}"] = {b"data": xs, label_key: ys.tolist()}
        else:
            members["test_batch"] = {b"data": x, label_key: y.tolist()}
    if variant == "cifar10":
        members["batches.meta"] = {b"label_names": [f"c10_{i}".encode() for i in range(10)]}
    else:
        members["meta"] = {b"fine_label_names": [f"c100_{i:02d}".encode() for i in range(100)]}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            payload = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return labels


def image_bytes(seed: int, fmt: str = "JPEG", size: int = 12) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def make_image_tree(root: Path, counts: dict[str, dict[str, int]]) -> dict[str, bytes]:
    """root/<split>/<class>/<i>.jpg for counts {split: {class: n}}; returns {relative path: bytes}."""
    files = {}
    seed = 0
    for split, per_class in counts.items():
        for cls, n in per_class.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rel = f"{split}/{cls}/{i:03d}.jpg"
                files[rel] = image_bytes(seed)
                (root / rel).write_bytes(files[rel])
                seed += 1
    return files


def make_digits_split(root: Path, **split) -> Path:
    """fetch -> prepare -> split of scikit-learn's digits under `root`; returns the split directory."""
    from pipeline.data.config import DataConfig, PrepareConfig, SplitConfig
    from pipeline.data.fetch import fetch
    from pipeline.data.prepare import prepare
    from pipeline.data.split import build_split

    fetch(DataConfig(dataset="digits"), root / "raw")
    prepare(PrepareConfig(shard_max_samples=200), root / "raw", root / "prepared")
    options = dict(imbalance_ratio=10, val_per_class=10, many_threshold=60, few_threshold=20,
                   shard_max_samples=100)
    options.update(split)
    build_split(SplitConfig(**options), root / "prepared", root / "split", root / "stats.json", root / "counts.csv")
    return root / "split"


def make_split_lists(root: Path, lists: dict[str, str], counts: dict[str, list[int]],
                     class_names: str | None = None) -> None:
    """An ImageNet-LT / Places-LT style dataset under `root`: JPEGs in nested folders and one list
    file per split (`lists`: split -> file name) of "relative/path integer_label" lines;
    counts[split][c] images of class c. `class_names`: also write that file, one name per line."""
    seed = 0
    for split, name in lists.items():
        lines = []
        for label, n in enumerate(counts[split]):
            folder = root / split / f"n{label:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{i:04d}.JPEG").write_bytes(image_bytes(seed, size=16))
                lines.append(f"{split}/n{label:08d}/{i:04d}.JPEG {label}")
                seed += 1
        (root / name).write_text("\n".join(lines) + "\n")
    if class_names:
        (root / class_names).write_text("".join(f"thing {c}\n" for c in range(len(counts["train"]))))


PER_SHARD = 20


def write_shards(directory: Path, labels, channels: int = 1, seed: int = 0):
    """Shards of PER_SHARD samples (8x8 random PNGs); returns (shard paths, {key: (shard, label, array)})."""
    rng = np.random.default_rng(seed)
    writer = ShardSetWriter(directory, max_samples=PER_SHARD, max_bytes=10**9)
    samples = {}
    shape = (8, 8) if channels == 1 else (8, 8, channels)
    for index, label in enumerate(labels):
        key = f"s{index:04d}"
        array = rng.integers(0, 256, size=shape, dtype=np.uint8)
        shard = writer.write(key, int(label), "png", encode_png(array))
        samples[key] = (str(directory / shard), int(label), array)
    writer.close()
    return [str(directory / f"shard-{i:06d}.tar") for i in range(writer.num_shards)], samples
