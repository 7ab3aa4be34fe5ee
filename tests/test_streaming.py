"""prepare and split stream their data: chunked IDX reads, CIFAR batches one at a time in name order,
Parquet manifests in row groups. The memory figures themselves are in benchmarks/memory.py."""
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datagen import make_cifar_archive, make_idx_dataset
from pipeline.data.config import DataConfig, PrepareConfig, SplitConfig
from pipeline.data.errors import DataError
from pipeline.data.fetch import fetch
from pipeline.data.manifest import SPLIT_SCHEMA, ManifestWriter
from pipeline.data.prepare import prepare
from pipeline.data.sources.idx import iter_idx, write_idx
from pipeline.data.split import build_split


def test_idx_is_read_in_chunks_and_checked_against_its_header(tmp_path):
    array = np.arange(10 * 3 * 2, dtype=np.uint8).reshape(10, 3, 2)
    path = tmp_path / "x-idx3-ubyte.gz"
    write_idx(path, array)
    chunks = list(iter_idx(path, chunk_rows=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert np.array_equal(np.concatenate(chunks), array)

    plain = tmp_path / "x-idx3-ubyte"
    write_idx(plain, array)
    plain.write_bytes(plain.read_bytes() + b"\0")
    with pytest.raises(DataError, match="longer than the"):
        list(iter_idx(plain, chunk_rows=4))
    plain.write_bytes(plain.read_bytes()[:-8])  # the extra byte and 7 more off: 8 complete rows of 6 bytes
    with pytest.raises(DataError, match="ends after 8 of the 10 rows .* truncated"):
        list(iter_idx(plain, chunk_rows=4))


def test_cifar_batches_are_read_in_name_order_whatever_the_tar_order(tmp_path):
    archive = tmp_path / "c10.tar.gz"
    labels = make_cifar_archive(archive, "cifar10", train_per_class=5, test_per_class=1)
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    assert [Path(m.name).name for m, _ in members][:5] == [f"data_batch_{b}" for b in range(1, 6)]
    with tarfile.open(archive, "w:gz") as tar:  # the official archive is not in name order either
        for member, payload in reversed(members):
            tar.addfile(member, io.BytesIO(payload))
    fetch(DataConfig(dataset="cifar10", path=str(archive), verify=False), tmp_path / "raw")
    summary = prepare(PrepareConfig(), tmp_path / "raw", tmp_path / "prepared")
    manifest = pq.read_table(tmp_path / "prepared" / "manifest.parquet").to_pylist()
    assert summary.counts == {"train": 50, "test": 10}
    assert [r["label"] for r in manifest if r["split"] == "train"] == labels["train"].tolist()
    assert pickle.loads(members[0][1])  # the rewritten archive carried real batches


def test_manifest_writer_writes_row_groups_and_an_empty_manifest(tmp_path):
    rows = [(f"train_{i:08d}", i % 3, f"c{i % 3}", "train", "train/shard-000000.tar", "png", 10 + i,
             f"{i:064x}") for i in range(7)]
    with ManifestWriter(tmp_path / "m.parquet", SPLIT_SCHEMA, group_rows=3) as writer:
        for row in rows:
            writer.append(*row)
    stored = pq.ParquetFile(tmp_path / "m.parquet")
    assert stored.metadata.num_row_groups == 3 and stored.schema_arrow == SPLIT_SCHEMA
    assert [tuple(r.values()) for r in stored.read().to_pylist()] == rows

    with ManifestWriter(tmp_path / "empty.parquet", SPLIT_SCHEMA):
        pass
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0
    with pytest.raises(ValueError):  # a row with a missing value is refused, not padded
        ManifestWriter(tmp_path / "bad.parquet", SPLIT_SCHEMA).append(*rows[0][:-1])


def test_split_of_a_manifest_in_many_row_groups_equals_one_group(tmp_path):
    make_idx_dataset(tmp_path / "src", per_class_train=30, per_class_test=2)
    fetch(DataConfig(dataset="fashion-mnist", path=str(tmp_path / "src"), verify=False), tmp_path / "raw")
    prepared = tmp_path / "prepared"
    prepare(PrepareConfig(shard_max_samples=40), tmp_path / "raw", prepared)
    table = pq.read_table(prepared / "manifest.parquet")
    cfg = SplitConfig(imbalance_ratio=5, val_per_class=3, shard_max_samples=50)
    results = {}
    for name, group_rows in (("many", 7), ("one", table.num_rows)):
        pq.write_table(table, prepared / "manifest.parquet", row_group_size=group_rows)
        assert pq.ParquetFile(prepared / "manifest.parquet").metadata.num_row_groups == -(-table.num_rows // group_rows)
        out = tmp_path / name
        build_split(cfg, prepared, out / "split", out / "stats.json", out / "counts.csv")
        shards = sorted((out / "split").rglob("*.tar"))
        results[name] = (pq.read_table(out / "split" / "manifest.parquet").to_pylist(),
                         [(p.relative_to(out).as_posix(), p.read_bytes()) for p in shards])
    assert results["many"] == results["one"]
    rows = results["one"][0]
    assert sum(r["role"] == "val" for r in rows) == 30  # 3 per class, carved before subsampling


def test_split_refuses_a_changed_image_and_a_missing_sample(tmp_path):
    make_idx_dataset(tmp_path / "src", per_class_train=8, per_class_test=1)
    fetch(DataConfig(dataset="fashion-mnist", path=str(tmp_path / "src"), verify=False), tmp_path / "raw")
    prepared = tmp_path / "prepared"
    prepare(PrepareConfig(), tmp_path / "raw", prepared)
    cfg = SplitConfig(profile="none", val_per_class=1)
    out = tmp_path / "out"

    table = pq.read_table(prepared / "manifest.parquet")
    keys = table["key"].to_pylist()
    renamed = table.set_column(0, "key", pa.array(["train_99999999", *keys[1:]]))
    pq.write_table(renamed, prepared / "manifest.parquet")
    with pytest.raises(DataError, match="train/shard-000000.tar: sample train_99999999 listed in the manifest "
                                        "is missing"):
        build_split(cfg, prepared, out / "split", out / "stats.json", out / "counts.csv")
    pq.write_table(table, prepared / "manifest.parquet")

    shard = prepared / "train" / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[3 * 512 + 100] ^= 0xFF  # the first image: after its .cls header + data and its own header
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sample train_00000000 does not match its manifest hash"):
        build_split(cfg, prepared, out / "split", out / "stats.json", out / "counts.csv")
    assert list(out.iterdir()) == []  # no split, no temporary directory left
