"""What the benchmark scripts share: the machine record, synthetic CIFAR-sized data, child-process
measurements (peak RSS) and the table + JSON output."""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pipeline.data.config import PrepareConfig
from pipeline.data.prepare import prepare
from pipeline.data.shards import encode_png
from pipeline.data.sources.cifar import iter_cifar_batches, scan_cifar_archive
from pipeline.data.sources.idx import write_idx
from pipeline.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"
NO_GPU = "not measured (no GPU lent)"


def machine() -> dict:
    """CPU model, cores, memory, GPU (or None), library versions and the date: where a figure comes from."""
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(memory_gb, 1),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__,
            "date": datetime.date.today().isoformat()}


def parser(description: str) -> argparse.ArgumentParser:
    """The shared command line: --small (the CPU test setting) and --out (the JSON file)."""
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--small", action="store_true", help="a tiny setting that runs in seconds (tests)")
    cli.add_argument("--out", type=Path, help="JSON file to write (default: benchmarks/results/NAME.json)")
    return cli


def report(name: str, setting: dict, rows: list[dict], out: Path | None) -> Path:
    """Print `rows` as a table and write {benchmark, machine, setting, rows} as JSON; returns its path."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(c[i]) for c in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(w) for column, w in zip(columns, widths)))
    for line in cells:
        print("  ".join(value.ljust(w) for value, w in zip(line, widths)))
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"benchmark": name, "machine": machine(), "setting": setting, "rows": rows})
    print(f"{name}: {len(rows)} rows -> {path}")
    return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return "-" if value is None else str(value)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far. Linux's VmHWM is per address space (reset at exec);
    getrusage's ru_maxrss is not: a child inherits its parent's peak at fork."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(module: str, args: Sequence[str]) -> dict:
    """Run `python -m module --child ARGS` in a fresh process (so its peak RSS is its own) and return
    the JSON object it prints on its last line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", module, "--child", *args], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- synthetic data

def cifar_like_images(n: int, seed: int, channels: int = 3, size: int = 32) -> np.ndarray:
    """n uint8 images (n, size, size, channels) with CIFAR-like PNG sizes: smooth 8x8 colour fields,
    upsampled, plus pixel noise (pure noise would not compress, a flat image would compress too well)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, size // 4, size // 4, channels)).astype(np.float32)
    images = coarse.repeat(4, axis=1).repeat(4, axis=2) + rng.normal(0, 12, (n, size, size, channels))
    return images.clip(0, 255).astype(np.uint8)


def write_cifar100_raw(raw: Path, train: int, test: int, seed: int = 0) -> Path:
    """A fetch-stage output (`source.json` + an official-format CIFAR-100 tarball) of synthetic images."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    members = {"meta": {"fine_label_names": [f"class_{c:03d}" for c in range(100)]}}
    for split, n in (("train", train), ("test", test)):
        images = cifar_like_images(n, seed + (split == "test"))
        members[split] = {"data": images.transpose(0, 3, 1, 2).reshape(n, -1),
                          "fine_labels": rng.permutation(np.arange(n) % 100).tolist()}  # balanced
    archive = raw / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, obj in members.items():
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    write_json(raw / "source.json", {"dataset": "cifar100", "source": "cifar", "origin": "synthetic",
                                     "files": {archive.name: "synthetic"}})
    return raw


def write_idx_raw(raw: Path, train: int, test: int, seed: int = 0) -> Path:
    """A fetch-stage output (`source.json` + gzipped IDX files) of synthetic 28x28 grey Fashion-MNIST."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", cifar_like_images(n, seed, channels=1, size=28)[..., 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", rng.permutation(np.arange(n) % 10).astype(np.uint8))
    write_json(raw / "source.json", {"dataset": "fashion-mnist", "source": "idx", "origin": "synthetic",
                                     "files": {p.name: "synthetic" for p in sorted(raw.glob("*.gz"))}})
    return raw


def cifar_train_arrays(raw: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training images and labels of a `write_cifar100_raw` archive, for the in-memory baselines."""
    archive = raw / "cifar-100-python.tar.gz"
    _, members = scan_cifar_archive(archive, "cifar100")
    images, labels = zip(*iter_cifar_batches(archive, "cifar100", [name for name, _ in members["train"]]))
    return np.concatenate(images), np.concatenate(labels)


def write_imagefolder_raw(raw: Path, root: Path, train: int, test: int, classes: int = 10) -> Path:
    """A fetch-stage output for an imagefolder tree of synthetic PNG files (a file source)."""
    for split, n, seed in (("train", train, 0), ("test", test, 1)):
        for index, image in enumerate(cifar_like_images(n, seed)):
            folder = root / split / f"class_{index % classes:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:07d}.png").write_bytes(encode_png(image))
    raw.mkdir(parents=True, exist_ok=True)
    write_json(raw / "source.json", {"dataset": "imagefolder", "source": "imagefolder", "origin": str(root)})
    return raw


def prepared_cifar(work: Path, train: int, test: int) -> Path:
    """Synthetic CIFAR-100-sized data through the real prepare stage: the prepared shard directory."""
    raw = write_cifar100_raw(work / "raw", train, test)
    out = work / "prepared"
    prepare(PrepareConfig(shard_max_samples=1000), raw, out)
    return out
