"""Bad input ends in one clear message naming the file or params key, exit code 2, nothing written."""
import gzip
import shutil
from pathlib import Path

import pytest
import yaml

from datagen import image_bytes, make_cifar_archive, make_idx_dataset, make_image_tree
from stages.__main__ import main as ltp


def stage(tmp: Path, name: str, params: dict, *args: str) -> int:
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return ltp([name, "--params", str(tmp / "params.yaml"), *args])


def fetch_prepare(tmp: Path, params: dict) -> int:
    code = stage(tmp, "fetch", params, "--out", str(tmp / "raw"))
    if code:
        return code
    return stage(tmp, "prepare", params, "--raw", str(tmp / "raw"), "--out", str(tmp / "prepared"))


def assert_failed(code: int, capsys, *fragments: str, nothing_in: Path | None = None) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.strip().splitlines()[-1]  # progress bars may precede the message on stderr
    assert last.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    if nothing_in is not None:
        assert not (nothing_in / "prepared").exists() and not (nothing_in / "split").exists()
        assert not [p for p in nothing_in.iterdir() if p.name.startswith(".")], "temp files left"


def test_missing_path(tmp_path, capsys):
    code = fetch_prepare(tmp_path, {"data": {"dataset": "cifar10", "path": str(tmp_path / "nope.tar.gz")}})
    assert_failed(code, capsys, "data.path", "nope.tar.gz")
    assert not (tmp_path / "raw").exists()


def test_checksum_mismatch(tmp_path, capsys):
    src = tmp_path / "src"
    make_idx_dataset(src, per_class_train=2, per_class_test=1)
    code = fetch_prepare(tmp_path, {"data": {"dataset": "fashion-mnist", "path": str(src)}})
    assert_failed(code, capsys, "checksum mismatch", "train-images-idx3-ubyte.gz", "data.verify")
    assert not (tmp_path / "raw").exists()


def test_truncated_archive(tmp_path, capsys):
    archive = tmp_path / "c.tar.gz"
    make_cifar_archive(archive, "cifar10", train_per_class=3, test_per_class=1)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    code = fetch_prepare(tmp_path, {"data": {"dataset": "cifar10", "path": str(archive), "verify": False}})
    assert_failed(code, capsys, "c.tar.gz", nothing_in=tmp_path)


def test_truncated_idx(tmp_path, capsys):
    src = tmp_path / "src"
    make_idx_dataset(src, per_class_train=2, per_class_test=1)
    labels = src / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-3]))
    code = fetch_prepare(tmp_path, {"data": {"dataset": "fashion-mnist", "path": str(src), "verify": False}})
    assert_failed(code, capsys, "train-labels-idx1-ubyte.gz", "truncated", nothing_in=tmp_path)


def test_corrupt_image_errors_or_is_skipped(tmp_path, capsys):
    make_image_tree(tmp_path / "tree", {"train": {"a": 2, "b": 2}})
    (tmp_path / "tree" / "train" / "b" / "001.jpg").write_bytes(image_bytes(1)[:40])
    params = {"data": {"dataset": "imagefolder", "path": str(tmp_path / "tree")}}
    assert_failed(fetch_prepare(tmp_path, params), capsys, "train/b/001.jpg", "corrupt image",
                  "prepare.on_corrupt", nothing_in=tmp_path)
    params["prepare"] = {"on_corrupt": "skip"}
    assert fetch_prepare(tmp_path, params) == 0
    out = capsys.readouterr().out
    assert "train 3 images" in out and "1 corrupt skipped" in out
    assert (tmp_path / "prepared" / "summary.json").read_text().count('"skipped_corrupt": 1') == 1


def splitlist_params(tmp: Path, train_lines: str, names: str | None = "x\ny\n") -> dict:
    make_image_tree(tmp / "root", {"i": {"a": 2, "b": 1}})
    (tmp / "root" / "train.txt").write_text(train_lines)
    data = {"dataset": "splitlist", "path": str(tmp / "root"), "lists": {"train": "train.txt"}}
    if names is not None:
        (tmp / "root" / "names.txt").write_text(names)
        data["class_names"] = "names.txt"
    return {"data": data}


def test_label_out_of_range(tmp_path, capsys):
    params = splitlist_params(tmp_path, "i/a/000.jpg 0\ni/b/000.jpg 2\n")
    assert_failed(fetch_prepare(tmp_path, params), capsys, "i/b/000.jpg", "label 2", nothing_in=tmp_path)


def test_empty_class(tmp_path, capsys):
    params = splitlist_params(tmp_path, "i/a/000.jpg 0\ni/a/001.jpg 0\n")
    assert_failed(fetch_prepare(tmp_path, params), capsys, "class 'y' has no training images",
                  nothing_in=tmp_path)


def test_duplicate_paths_in_split_list(tmp_path, capsys):
    params = splitlist_params(tmp_path, "i/a/000.jpg 0\ni/b/000.jpg 1\ni/a/000.jpg 0\n")
    assert_failed(fetch_prepare(tmp_path, params), capsys, "train.txt:3", "duplicate path",
                  nothing_in=tmp_path)


@pytest.mark.parametrize("section,values,key", [
    ("split", {"imbalance_ratio": 0.5}, "split.imbalance_ratio"),
    ("split", {"many_threshold": 10, "few_threshold": 20}, "split.few_threshold"),
    ("split", {"profile": "zipf"}, "split.profile"),
    ("split", {"seed": "zero"}, "split.seed"),
    ("split", {"rho": 10}, "split.rho"),
    ("data", {"dataset": "imagenet-21k"}, "data.dataset"),
    ("prepare", {"on_corrupt": "ignore"}, "prepare.on_corrupt"),
])
def test_bad_params_are_rejected_before_any_work(tmp_path, capsys, section, values, key):
    name = {"split": "split", "data": "fetch", "prepare": "prepare"}[section]
    code = stage(tmp_path, name, {section: values}, "--out", str(tmp_path / "out"))
    assert_failed(code, capsys, key)
    assert not (tmp_path / "out").exists()


def test_split_fails_cleanly_when_n_max_too_large(tmp_path, capsys):
    src = tmp_path / "src"
    make_idx_dataset(src, per_class_train=5, per_class_test=1)
    assert fetch_prepare(tmp_path, {"data": {"dataset": "fashion-mnist", "path": str(src), "verify": False}}) == 0
    capsys.readouterr()
    code = stage(tmp_path, "split", {"split": {"n_max": 50, "val_per_class": 0}},
                 "--prepared", str(tmp_path / "prepared"), "--out", str(tmp_path / "split"),
                 "--stats", str(tmp_path / "stats.json"), "--class-counts", str(tmp_path / "c.csv"))
    assert_failed(code, capsys, "split.n_max", "needs 50")
    assert not (tmp_path / "split").exists() and not (tmp_path / "stats.json").exists()
    shutil.rmtree(tmp_path / "prepared")
