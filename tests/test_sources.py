"""fetch + prepare on every source format, with real files: contents, manifest, determinism."""
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datagen import make_cifar_archive, make_idx_dataset, make_image_tree
from pipeline.data.config import DataConfig, PrepareConfig
from pipeline.data.fetch import fetch
from pipeline.data.prepare import prepare


def run(tmp: Path, prepare_cfg: PrepareConfig = PrepareConfig(), **data) -> tuple[Path, object]:
    fetch(DataConfig(**data), tmp / "raw")
    summary = prepare(prepare_cfg, tmp / "raw", tmp / "prepared")
    return tmp / "prepared", summary


def shard_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_idx_source_roundtrips_pixels_and_labels(tmp_path):
    arrays = make_idx_dataset(tmp_path / "src", per_class_train=3, per_class_test=2)
    out, summary = run(tmp_path, PrepareConfig(shard_max_samples=7), dataset="fashion-mnist",
                       path=str(tmp_path / "src"), verify=False)
    assert summary.counts == {"train": 30, "test": 20}
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [r["key"] for r in manifest[:2]] == ["train_00000000", "train_00000001"]
    assert len({r["shard"] for r in manifest if r["split"] == "train"}) == 5  # 30 samples / 7 per shard
    row = manifest[13]
    members = shard_members(out / row["shard"])
    data = members[f"{row['key']}.png"]
    assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == row["size"]
    assert np.array_equal(decode(data), arrays["train"][0][13])
    assert int(members[f"{row['key']}.cls"]) == row["label"] == arrays["train"][1][13]
    assert row["class_name"] == "Dress" and row["label"] == 3  # Fashion-MNIST class names
    assert json.loads((out / "classes.json").read_text())["names"][0] == "T-shirt/top"


def test_prepare_is_byte_identical_on_rerun(tmp_path):
    make_idx_dataset(tmp_path / "src", per_class_train=4, per_class_test=1)
    first, _ = run(tmp_path / "a", dataset="fashion-mnist", path=str(tmp_path / "src"), verify=False)
    second, _ = run(tmp_path / "b", dataset="fashion-mnist", path=str(tmp_path / "src"), verify=False)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


@pytest.mark.parametrize("variant,num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_archive_source(tmp_path, variant, num_classes):
    archive = tmp_path / f"{variant}.tar.gz"
    labels = make_cifar_archive(archive, variant, train_per_class=2, test_per_class=1)
    out, summary = run(tmp_path, dataset=variant, path=str(archive), verify=False)
    assert summary.counts == {"train": 2 * num_classes, "test": num_classes}
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    train = [r for r in manifest if r["split"] == "train"]
    assert [r["label"] for r in train] == labels["train"].tolist()
    names = json.loads((out / "classes.json").read_text())["names"]
    assert len(names) == num_classes and train[0]["class_name"] == names[train[0]["label"]]
    pixels = decode(shard_members(out / train[3]["shard"])[f"{train[3]['key']}.png"])
    assert pixels.shape == (32, 32, 3) and pixels[0, 0, 0] == 3 and pixels[0, 0, 1] == 7


def test_imagefolder_keeps_original_bytes(tmp_path):
    files = make_image_tree(tmp_path / "tree", {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 1}})
    out, summary = run(tmp_path, dataset="imagefolder", path=str(tmp_path / "tree"))
    assert summary.counts == {"train": 5, "test": 2}
    for row in pq.read_table(out / "manifest.parquet").to_pylist():
        stored = shard_members(out / row["shard"])[f"{row['key']}.jpg"]
        assert stored == files[row["source"]]
        assert row["class_name"] == row["source"].split("/")[1]


def test_splitlist_with_class_names(tmp_path):
    root = tmp_path / "root"
    files = make_image_tree(root, {"imgs": {"a": 2, "b": 2, "c": 1}})
    (root / "train.txt").write_text("imgs/a/000.jpg 0\nimgs/b/000.jpg 1\nimgs/a/001.jpg 0\nimgs/c/000.jpg 2\n")
    (root / "test.txt").write_text("imgs/b/001.jpg 1\n")
    (root / "names.txt").write_text("apple\nbanana\ncherry\n")
    out, summary = run(tmp_path, dataset="splitlist", path=str(root),
                       lists={"train": "train.txt", "test": "test.txt"}, class_names="names.txt")
    assert summary.counts == {"train": 4, "test": 1}
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [(r["source"], r["label"], r["class_name"]) for r in rows[:2]] == [
        ("imgs/a/000.jpg", 0, "apple"), ("imgs/b/000.jpg", 1, "banana")]
    assert shard_members(out / rows[4]["shard"])[f"{rows[4]['key']}.jpg"] == files["imgs/b/001.jpg"]


def test_digits_source_is_class_balanced(tmp_path):
    out, summary = run(tmp_path, dataset="digits")
    assert summary.counts["train"] + summary.counts["test"] == 1797
    test_labels = [r["label"] for r in pq.read_table(out / "manifest.parquet").to_pylist() if r["split"] == "test"]
    assert summary.counts == {"train": 1352, "test": 445}
    assert np.bincount(test_labels).tolist() == [44, 45, 44, 45, 45, 45, 45, 44, 43, 45]  # n_c // 4
