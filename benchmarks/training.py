"""Training throughput (images/s) and peak memory of ResNet-32 on 32x32 RGB, BCL (3 views) and CE:
our loop (pipeline.training.loop.fit: shards, batched augmentation on the device, bf16 autocast and
channels-last on CUDA) against a plain reference loop (fp32, PIL transforms on CPU in a DataLoader,
one process) on the same synthetic CIFAR-sized data and the same model + loss. CPU always; CUDA when
a GPU is present (otherwise its rows say "not measured (no GPU lent)").

Each configuration runs in its own process: peak memory is its peak RSS (CPU) or
torch.cuda.max_memory_allocated (GPU). Our images/s is the last epoch's figure reported by `fit`
(it includes that epoch's validation pass over the small test split, so it is conservative).

    python -m benchmarks.training [--small] [--out FILE]
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.common import NO_GPU, cifar_train_arrays, parser, peak_rss_mb, prepared_cifar, report, run_child
from pipeline.training.augment import normalize
from pipeline.training.config import ModelConfig, StageConfig
from pipeline.training.loop import TrainJob, fit
from pipeline.training.methods import Task, build_stage1

MODEL = ModelConfig(backbone="resnet32", channels=3, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _task(prepared: Path) -> Task:
    labels = pq.read_table(prepared / "manifest.parquet", columns=["label", "split"]).to_pydict()
    counts = np.bincount([l for l, s in zip(labels["label"], labels["split"]) if s == "train"], minlength=100)
    return Task(tuple(int(c) for c in counts), tuple(f"class_{c:03d}" for c in range(100)), 100, 20, MODEL)


def ours(prepared: Path, method: str, device: torch.device, epochs: int, batch: int) -> float:
    task = _task(prepared)
    config = StageConfig(method=method, epochs=epochs, batch_size=batch, lr=0.05, batched_augment=True)
    job = TrainJob("stage1", config, task, tuple(sorted(str(p) for p in (prepared / "train").glob("*.tar"))),
                   tuple(sorted(str(p) for p in (prepared / "test").glob("*.tar"))), sum(task.class_counts))
    rates: list[float] = []
    fit(job, rank=0, world=1, device=device, resume=None, report=lambda metrics, _: rates.append(
        metrics["images_per_s"]))
    return rates[-1]


class ViewsDataset(Dataset):
    """The reference repositories' BCL / CE dataset: PIL images in memory, one PIL pipeline per view."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, views: int) -> None:
        self.images, self.labels = [Image.fromarray(image) for image in images], labels
        basic = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        tensor = [transforms.PILToTensor()]
        self.transforms = [transforms.Compose(basic + tensor)] + [
            transforms.Compose(basic + [transforms.RandAugment(2, 9)] + tensor)] * (views - 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        return [t(image) for t in self.transforms], int(self.labels[index])


def reference(prepared: Path, method: str, device: torch.device, epochs: int, batch: int) -> float:
    """A plain fp32 loop; images/s over the last epoch (the first pays the start-up)."""
    task = _task(prepared)
    torch.manual_seed(0)
    model = build_stage1(method, {}, task).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    images, labels = cifar_train_arrays(prepared.parent / "raw")
    loader = DataLoader(ViewsDataset(images, labels, len(model.view_presets)), batch_size=batch, shuffle=True,
                        drop_last=True)
    steps = math.ceil(len(labels) / batch)
    rate = 0.0
    for _ in range(epochs):
        started, seen = time.perf_counter(), 0
        for views, target in islice(loader, steps):
            views = [normalize(v.to(device), MODEL.mean, MODEL.std) for v in views]
            out = model(views, target.to(device), [str(i) for i in range(len(target))], 0)
            optimiser.zero_grad()
            out["loss"].backward()
            optimiser.step()
            seen += len(target)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = seen / (time.perf_counter() - started)
    return rate


def child(loop: str, method: str, device_name: str, prepared: str, epochs: str, batch: str) -> None:
    device = torch.device(device_name)
    run = ours if loop == "ours" else reference
    rate = run(Path(prepared), method, device, int(epochs), int(batch))
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
    print(json.dumps({"images_per_s": round(rate, 1), "peak_memory_mb": round(peak, 1)}))


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:8])
        return 0
    args = parser(__doc__).parse_args(argv)
    train, epochs, batch = (128, 1, 32) if args.small else (1_024, 2, 128)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepared_cifar(Path(tmp), train, 100)
        for method in ("bcl", "ce"):
            for device in ("cpu", "cuda"):
                row: dict = {"method": method, "device": device}
                if device not in devices:
                    row.update(ours_images_per_s=NO_GPU, reference_images_per_s=NO_GPU, speedup=NO_GPU,
                               ours_peak_memory_mb=NO_GPU, reference_peak_memory_mb=NO_GPU)
                else:
                    result = {loop: run_child("benchmarks.training", [loop, method, device, str(prepared),
                                                                       str(epochs), str(batch)])
                              for loop in ("ours", "reference")}
                    row.update(ours_images_per_s=result["ours"]["images_per_s"],
                               reference_images_per_s=result["reference"]["images_per_s"],
                               speedup=round(result["ours"]["images_per_s"]
                                             / result["reference"]["images_per_s"], 2),
                               ours_peak_memory_mb=result["ours"]["peak_memory_mb"],
                               reference_peak_memory_mb=result["reference"]["peak_memory_mb"])
                rows.append(row)
    report("training", {"model": "resnet32", "image": "32x32 RGB", "train_images": train, "epochs": epochs,
                        "batch_size": batch, "memory": "peak RSS (cpu), max_memory_allocated (cuda)",
                        "torch_threads": torch.get_num_threads()}, rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
