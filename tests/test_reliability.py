"""Attacks and careless input against the stages: nothing read runs code, every bad input ends in one
`error:` line and exit 2 before the expensive work, concurrent and killed runs leave things sound."""
import contextlib
import io
import os
import pickle
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from datagen import image_bytes, make_cifar_archive, make_image_tree
from pipeline.data.errors import DataError
from pipeline.data.loader import decode_image, read_shard
from stages.__main__ import main as ltp
from test_bad_input import assert_failed, fetch_prepare, splitlist_params, stage


# ----------------------------------------------------------------------------- code execution

class _Payload:
    """Unpickling this runs `exec`, which writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_planted_pickle_in_cifar_archive_does_not_run(tmp_path, capsys):
    clean, archive, marker = tmp_path / "clean.tar.gz", tmp_path / "c.tar.gz", tmp_path / "pwned"
    make_cifar_archive(clean, "cifar10", train_per_class=1, test_per_class=1)
    with tarfile.open(clean) as src, tarfile.open(archive, "w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read()
            if member.name.endswith("batches.meta"):
                data = pickle.dumps({b"label_names": [b"x"] * 10, b"x": _Payload(marker)}, protocol=2)
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    code = fetch_prepare(tmp_path, {"data": {"dataset": "cifar10", "path": str(archive), "verify": False}})
    assert not marker.exists(), "the planted payload ran"
    assert_failed(code, capsys, "c.tar.gz", "batches.meta", "forbidden global __builtin__.exec",
                  nothing_in=tmp_path)


# ----------------------------------------------------------------------------- undecodable images

def _png_with_damaged_pixels() -> bytes:
    """A PNG whose header and chunk CRCs are valid but whose IDAT stream is garbage."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, "PNG")
    data, out, pos = buffer.getvalue(), bytearray(buffer.getvalue()[:8]), 8
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + size]
        if kind == b"IDAT":
            body = body[:2] + b"\xff" * (size - 2)
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        pos += 12 + size
    return bytes(out)


def _palette_gif(size: int = 12) -> bytes:
    buffer = io.BytesIO()
    rgb = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("P").save(buffer, "GIF")
    return buffer.getvalue()


@pytest.mark.parametrize("name,damaged", [
    ("002.png", _png_with_damaged_pixels()),
    ("002.jpg", image_bytes(7, size=32)[:300]),  # a truncated JPEG
])
def test_undecodable_image_is_caught_by_prepare(tmp_path, capsys, name, damaged):
    make_image_tree(tmp_path / "tree", {"train": {"a": 2, "b": 2}})
    (tmp_path / "tree" / "train" / "b" / name).write_bytes(damaged)
    params = {"data": {"dataset": "imagefolder", "path": str(tmp_path / "tree")}}
    assert_failed(fetch_prepare(tmp_path, params), capsys, f"train/b/{name}", "corrupt image: cannot decode",
                  nothing_in=tmp_path)


def test_palette_gif_decodes_with_the_channels_asked_for(tmp_path, capsys):
    gif = _palette_gif()
    assert tuple(decode_image(gif, channels=1).shape) == (1, 12, 12)
    assert tuple(decode_image(gif, channels=3).shape) == (3, 12, 12)
    make_image_tree(tmp_path / "tree", {"train": {"a": 1, "b": 1}})
    (tmp_path / "tree" / "train" / "b" / "001.gif").write_bytes(gif)
    params = {"data": {"dataset": "imagefolder", "path": str(tmp_path / "tree")}, "model": {"channels": 1}}
    assert fetch_prepare(tmp_path, params) == 0, capsys.readouterr().err
    shard = next((tmp_path / "prepared" / "train").glob("shard-*.tar"))
    images = {s["ext"]: decode_image(s["data"], channels=1, size=8) for s in read_shard(str(shard))}
    assert {ext: tuple(t.shape) for ext, t in images.items()} == {"jpg": (1, 8, 8), "gif": (1, 8, 8)}


# ----------------------------------------------------------------------------- the error boundary

def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("split:\n  seed: 1\n  profile: [exp\n")
    code = ltp(["split", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "out")])
    assert_failed(code, capsys, f"{tmp_path / 'params.yaml'}:", "invalid YAML")


def test_garbage_manifest_is_one_error(tmp_path, capsys):
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "manifest.parquet").write_bytes(b"PAR1 this is not parquet at all")
    code = stage(tmp_path, "split", {}, "--prepared", str(tmp_path / "prepared"), "--out", str(tmp_path / "split"),
                 "--stats", str(tmp_path / "s.json"), "--class-counts", str(tmp_path / "c.csv"))
    assert_failed(code, capsys, "manifest.parquet", "not a readable Parquet manifest")


@contextlib.contextmanager
def read_only(directory: Path):
    """`directory` made unwritable: by its mode, or for root (whom modes do not stop) immutable."""
    directory.chmod(0o555)
    immutable = False
    try:
        if os.access(directory, os.W_OK):
            immutable = subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("cannot make a directory unwritable here")
        yield directory
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


def test_unwritable_output_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    with read_only(tmp_path / "runs"):
        # no split exists either: the output check must come first, before the stage reads anything
        code = stage(tmp_path, "stage1", {}, "--split", str(tmp_path / "missing"),
                     "--out", str(tmp_path / "runs" / "stage1"), "--metrics", str(tmp_path / "m.json"),
                     "--history", str(tmp_path / "h.tsv"))
    assert_failed(code, capsys, f"{tmp_path / 'runs' / 'stage1'}: cannot be written")


def test_data_error_inside_ray_workers_is_unwrapped():
    from ray.train import WorkerGroupError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    from stages.errors import expected_failure

    inner = DataError("/data/split/train/shard-000003.tar: not a readable shard: unexpected end of data")
    failed = WorkerGroupError("rank 1 failed", {1: UserExceptionWithTraceback(inner, "Traceback ...")})
    try:
        raise RuntimeError(f"stage1 training failed: {failed}") from failed
    except RuntimeError as exc:
        assert expected_failure(exc) == str(inner)
    assert expected_failure(PermissionError(13, "Permission denied", "/x/runs")) == "/x/runs: Permission denied"
    assert expected_failure(RuntimeError("a bug")) is None


@pytest.mark.parametrize("values,key,fragment", [
    ({"lr": float("inf")}, "stage1.lr", "finite"),
    ({"lr": float("nan")}, "stage1.lr", "finite"),
    ({"epochs": 0}, "stage1.epochs", "must be >= 1 for 'la'"),
])
def test_training_params_rejected_before_work(tmp_path, capsys, values, key, fragment):
    params = {"stage1": {"method": "la", **values}}
    code = stage(tmp_path, "stage1", params, "--split", str(tmp_path / "missing"), "--out", str(tmp_path / "out"),
                 "--metrics", str(tmp_path / "m.json"), "--history", str(tmp_path / "h.tsv"))
    assert_failed(code, capsys, key, fragment)


def test_split_list_paths_stay_under_the_data_root(tmp_path, capsys):
    for line in ("/etc/passwd 0", "../../etc/passwd 0", "i/../../x.jpg 1"):
        params = splitlist_params(tmp_path, f"i/a/000.jpg 0\n{line}\n")
        assert_failed(fetch_prepare(tmp_path, params), capsys, "train.txt:2", "outside the data root",
                      nothing_in=tmp_path)


# ----------------------------------------------------------------------------- concurrency and kills

def test_second_run_of_a_stage_names_the_holder(tmp_path, capsys):
    out = tmp_path / "runs" / "stage1"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom stages.lock import stage_lock\n"
         f"with stage_lock({str(out)!r}, 'stage1'):\n    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        code = stage(tmp_path, "stage1", {"stage1": {"method": "la"}}, "--split", str(tmp_path / "missing"),
                     "--out", str(out), "--metrics", str(tmp_path / "m.json"), "--history", str(tmp_path / "h.tsv"))
        assert_failed(code, capsys, f"{out}: another `ltp stage1` is writing it", f"pid {holder.pid}", "started 20")
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the killed holder's lock: the next run gets past it (to the missing split)
    code = stage(tmp_path, "stage1", {"stage1": {"method": "la"}}, "--split", str(tmp_path / "missing"),
                 "--out", str(out), "--metrics", str(tmp_path / "m.json"), "--history", str(tmp_path / "h.tsv"))
    assert_failed(code, capsys, "stats.json not found")
    assert not (out.parent / ".stage1.lock").exists()


def _killed_inside_atomic_dir(target: Path) -> None:
    """Run a process that dies by SIGKILL while writing `target` through atomic_dir."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pipeline.io import atomic_dir\n"
         f"with atomic_dir({str(target)!r}) as tmp:\n    (tmp / 'part').write_bytes(b'x' * 1000)\n"
         "    print('writing', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()


def test_temp_dirs_of_killed_runs_are_removed_by_the_next(tmp_path, capsys):
    params = {"data": {"dataset": "digits"}, "prepare": {"shard_max_samples": 500}}
    _killed_inside_atomic_dir(tmp_path / "prepared")
    (first,) = tmp_path.glob(".prepared.tmp-*")
    _killed_inside_atomic_dir(tmp_path / "prepared")  # the next writer removes what the first left
    (second,) = tmp_path.glob(".prepared.tmp-*")
    assert second != first and (second / "part").is_file()
    from pipeline.io import _HOST

    live = tmp_path / f".prepared.tmp-{os.getpid()}-{_HOST}-live"  # a writer that still runs keeps its own
    live.mkdir()
    assert fetch_prepare(tmp_path, params) == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "params.yaml", "prepared", "raw"]


def test_outputs_honour_the_umask(tmp_path, capsys):
    params = {"data": {"dataset": "digits"}, "prepare": {"shard_max_samples": 500}}
    previous = os.umask(0o002)
    try:
        assert fetch_prepare(tmp_path, params) == 0, capsys.readouterr().err
        assert stat.S_IMODE((tmp_path / "prepared").stat().st_mode) == 0o775
        assert stat.S_IMODE((tmp_path / "raw" / "source.json").stat().st_mode) == 0o664
        os.umask(0o022)
        time.sleep(0.01)
        assert fetch_prepare(tmp_path, params) == 0, capsys.readouterr().err
    finally:
        os.umask(previous)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in [tmp_path / "prepared", *(tmp_path / "prepared").rglob("*")]}
    assert modes["prepared"] == 0o755 and modes["prepared/train"] == 0o755
    assert modes["prepared/manifest.parquet"] == 0o644 and modes["prepared/summary.json"] == 0o644
    assert set(modes.values()) == {0o755, 0o644}


# ----------------------------------------------------------------------------- DVC sees a changed image

@pytest.mark.slow
def test_dvc_repro_reruns_prepare_when_an_image_under_imagefolder_changes(tmp_path):
    from tools import run_command

    root = Path(__file__).resolve().parents[1]
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    files = make_image_tree(tree, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        (repo / name).write_bytes((root / name).read_bytes())
    for package in ("pipeline", "stages"):  # the stages' code dependencies
        subprocess.run(["cp", "-r", str(root / package), str(repo / package)], check=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"] = {"dataset": "imagefolder", "path": str(tree)}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        run_command(cmd, repo)

    def manifest_hashes() -> dict:
        import pyarrow.parquet as pq

        rows = pq.read_table(repo / "data" / "prepared" / "manifest.parquet").to_pylist()
        return {row["source"]: row["sha256"] for row in rows}

    assert "Running stage 'prepare'" in run_command(["dvc", "repro", "prepare"], repo)
    first = manifest_hashes()
    unchanged = run_command(["dvc", "repro", "prepare"], repo)
    assert "Stage 'prepare' didn't change" in unchanged and "Running stage 'prepare'" not in unchanged
    (tree / "train" / "b" / "001.jpg").write_bytes(image_bytes(99))
    changed = run_command(["dvc", "repro", "prepare"], repo)
    assert "Running stage 'prepare'" in changed
    second = manifest_hashes()
    assert {k for k in first if first[k] != second[k]} == {"train/b/001.jpg"} and len(first) == len(files)


# ----------------------------------------------------------------------------- shards checked before training

@pytest.fixture(scope="module")
def digits_split(tmp_path_factory) -> Path:
    from datagen import make_digits_split

    return make_digits_split(tmp_path_factory.mktemp("digits"))


def _train_first_shard(split: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of `split` to damage, and its first training shard."""
    copy = tmp_path / "split"
    subprocess.run(["cp", "-r", str(split), str(copy)], check=True)
    return copy, sorted((copy / "train").glob("shard-*.tar"))[0]


def _stage1(tmp_path: Path, split: Path) -> int:
    params = {"stage1": {"method": "la", "epochs": 1, "batch_size": 32}, "model": {"image_size": 8}}
    return stage(tmp_path, "stage1", params, "--split", str(split), "--out", str(tmp_path / "out"),
                 "--metrics", str(tmp_path / "m.json"), "--history", str(tmp_path / "h.tsv"))


def test_truncated_shard_fails_before_ray_starts(digits_split, tmp_path, capsys):
    split, shard = _train_first_shard(digits_split, tmp_path)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2 + 100])
    assert_failed(_stage1(tmp_path, split), capsys, f"{shard}: ", "truncated")
    assert not (tmp_path / "out").exists()


def test_tampered_image_fails_before_ray_starts(digits_split, tmp_path, capsys):
    from pipeline.data.shards import index_shard

    split, shard = _train_first_shard(digits_split, tmp_path)
    key, ref = sorted(index_shard(shard).items())[3]
    data = bytearray(shard.read_bytes())
    data[ref.offset + ref.size - 20] ^= 0xFF  # one image's bytes changed, the tar stays valid
    shard.write_bytes(bytes(data))
    assert_failed(_stage1(tmp_path, split), capsys, f"{shard}: {key}.png does not match the manifest's sha256")
    assert not (tmp_path / "out").exists()
