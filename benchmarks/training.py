"""Training throughput of ResNet-32 on 32x32 RGB, BCL (3 views) and CE: our loop against the loop the
official long-tailed repositories run, on the same synthetic CIFAR-100-LT-sized data, model and loss.

- ours: ``pipeline.training.loop.fit`` as a stage runs it, with ``batched_augment: true``: the
  training share resident on the device (decoded once), batched augmentation there, bf16 autocast,
  channels-last and a fused optimiser on CUDA.
- reference: PIL views in a DataLoader with one worker per core (at most 12), pinned memory on
  CUDA, fp32; reference_amp: the same with fp16 autocast + GradScaler (CUDA only).

Each loop runs in its own process (peak memory is its own: torch.cuda.max_memory_allocated on a
GPU, peak RSS on the CPU) for one warm-up epoch and then the timed epochs; images/s is the median
of the timed epochs (ours includes each epoch's validation pass: conservative). GPU busy is NVML's
utilisation sampled every 50 ms over the timed epochs. The breakdown times our parts alone over one
epoch's steps: the loader (resident gather), the augmentation (all views), the step (forward,
backward, optimiser on one fixed batch of views).

    python -m benchmarks.training [--small] [--devices cpu,cuda] [--out FILE]

The full setting (10,847 training images, batch 256, 1 + 3 epochs) is the GPU measurement; on a
CPU-only machine its CUDA rows say "not measured (no GPU lent)". --small is the CPU test setting.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.common import NO_GPU, cifar_train_arrays, parser, peak_rss_mb, prepared_cifar, report, run_child
from pipeline.data.loader import steps_per_epoch
from pipeline.data.manifest import MANIFEST_FILE
from pipeline.samplers import SAMPLERS
from pipeline.training.augment import normalize
from pipeline.training.config import ModelConfig, Stage1Config
from pipeline.training.data import open_training_data
from pipeline.training.job import TrainJob
from pipeline.training.loop import fit, make_optimizer
from pipeline.training.methods import Task
from pipeline.training.registry import build_stage1

MODEL = ModelConfig(backbone="resnet32", channels=3, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
CUDA_ONLY = "CUDA only"
LOOPS = ("ours", "reference", "reference_amp")


def _task(prepared: Path) -> Task:
    labels = pq.read_table(prepared / MANIFEST_FILE, columns=["label", "split"]).to_pydict()
    counts = np.bincount([l for l, s in zip(labels["label"], labels["split"]) if s == "train"], minlength=100)
    return Task(tuple(int(c) for c in counts), tuple(f"class_{c:03d}" for c in range(100)), 100, 20, MODEL)


def _job(prepared: Path, method: str, epochs: int, batch: int) -> TrainJob:
    task = _task(prepared)
    config = Stage1Config(method=method, epochs=epochs, batch_size=batch, lr=0.05, batched_augment=True)
    return TrainJob("stage1", config, task, tuple(sorted(str(p) for p in (prepared / "train").glob("*.tar"))),
                    tuple(sorted(str(p) for p in (prepared / "test").glob("*.tar"))), sum(task.class_counts))


class GpuBusy:
    """NVML GPU utilisation (%) sampled every 50 ms on a thread between start() and stop()."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self._running = device, [], False
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        if self.device.type == "cuda" and not self._running:
            self._running = True
            self._thread.start()

    def _sample(self) -> None:
        while self._running:
            self.samples.append(torch.cuda.utilization(self.device))
            time.sleep(0.05)

    def stop(self) -> float | str:
        if not self._running:
            return CUDA_ONLY
        self._running = False
        self._thread.join()
        return round(statistics.mean(self.samples), 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours(prepared: Path, method: str, device: torch.device, epochs: int, batch: int) -> dict:
    rates: list[float] = []
    busy = GpuBusy(device)

    def record(metrics: dict, _) -> None:
        rates.append(metrics["images_per_s"])
        busy.start()  # after the warm-up epoch

    fit(_job(prepared, method, epochs, batch), rank=0, world=1, device=device, resume=None, report=record)
    return {"images_per_s": statistics.median(rates[1:]), "gpu_busy": busy.stop()}


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


def reference(prepared: Path, method: str, device: torch.device, epochs: int, batch: int, amp: bool = False) -> dict:
    """The plain loop: fp32 (or fp16 autocast + GradScaler with `amp`), a worker per core up to 12."""
    task = _task(prepared)
    torch.manual_seed(0)
    model = build_stage1(method, {}, task).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images, labels = cifar_train_arrays(prepared.parent / "raw")
    workers = min(os.cpu_count() or 1, 12)
    loader = DataLoader(ViewsDataset(images, labels, len(model.view_presets)), batch_size=batch, shuffle=True,
                        drop_last=True, num_workers=workers, pin_memory=device.type == "cuda")
    busy, rates = GpuBusy(device), []
    for epoch in range(epochs):
        if epoch == 1:
            busy.start()
        started, seen = time.perf_counter(), 0
        for views, target in loader:
            views = [normalize(v.to(device, non_blocking=True), MODEL.mean, MODEL.std) for v in views]
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                out = model(views, target.to(device, non_blocking=True), [str(i) for i in range(len(target))], 0)
            optimiser.zero_grad()
            scaler.scale(out["loss"]).backward()
            scaler.step(optimiser)
            scaler.update()
            seen += len(target)
        _sync(device)
        rates.append(seen / (time.perf_counter() - started))
    return {"images_per_s": statistics.median(rates[1:]), "gpu_busy": busy.stop()}


def _rate(work: Callable[[], None], images: int, device: torch.device) -> float:
    work()  # warm-up (lazy initialisation, allocator, cuDNN autotuning)
    _sync(device)
    started = time.perf_counter()
    work()
    _sync(device)
    return round(images / (time.perf_counter() - started), 1)


def breakdown(prepared: Path, method: str, device: torch.device, batch: int) -> dict:
    """Our loader, augmentation and step alone, in images/s over one epoch's steps each."""
    job = _job(prepared, method, 1, batch)
    task, steps = job.task, steps_per_epoch(job.num_train, batch, 1)
    torch.manual_seed(0)
    model = build_stage1(method, {}, task).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    factors = SAMPLERS.get(model.default_sampler)().repeat_factors(np.asarray(task.class_counts))
    data = open_training_data(job, 0, 1, device, True, factors)
    first = next(iter(data.train.epoch(0, factors, 1)))
    images, labels, keys = first.image.to(device), first.label.to(device), first.key
    views = [normalize(v, MODEL.mean, MODEL.std) for v in model.augment(images, keys, batched=True)]
    if device.type == "cuda":
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    optimiser = make_optimizer(job.config, model, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def load() -> None:
        for _ in data.train.epoch(0, factors, steps):
            pass

    def augment() -> None:
        for _ in range(steps):
            model.augment(images, keys, batched=True)

    def step() -> None:
        for _ in range(steps):
            with autocast:
                out = model(views, labels, keys, 0)
            optimiser.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimiser.step()

    count = steps * batch
    return {"data_path": "resident" if data.resident else "streamed", "loader_images_per_s": _rate(load, count, device),
            "augment_images_per_s": _rate(augment, count, device), "step_images_per_s": _rate(step, count, device)}


def child(loop: str, method: str, device_name: str, prepared: str, epochs: str, batch: str) -> None:
    device = torch.device(device_name)
    if loop == "breakdown":
        result = breakdown(Path(prepared), method, device, int(batch))
    else:
        run = {"ours": ours, "reference": reference,
               "reference_amp": lambda *args: reference(*args, amp=True)}[loop]
        result = run(Path(prepared), method, device, int(epochs), int(batch))
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb()
        result.update(images_per_s=round(result["images_per_s"], 1), peak_memory_mb=round(peak, 1))
    print(json.dumps(result))


def measure(prepared: Path, method: str, device: str, epochs: int, batch: int) -> dict:
    """One row: every loop and the breakdown, each in its own process."""
    args = [method, device, str(prepared), str(epochs), str(batch)]
    row: dict = {"method": method, "device": device}
    results = {}
    for loop in LOOPS:
        if loop == "reference_amp" and device != "cuda":
            results[loop] = {"images_per_s": CUDA_ONLY, "gpu_busy": CUDA_ONLY, "peak_memory_mb": CUDA_ONLY}
        else:
            results[loop] = run_child("benchmarks.training", [loop, *args])
    for loop, result in results.items():
        row.update({f"{loop}_images_per_s": result["images_per_s"], f"{loop}_gpu_busy": result["gpu_busy"],
                    f"{loop}_peak_memory_mb": result["peak_memory_mb"]})
    references = [results[loop]["images_per_s"] for loop in LOOPS[1:]
                  if isinstance(results[loop]["images_per_s"], float)]
    row["speedup"] = round(results["ours"]["images_per_s"] / max(references), 2)  # over the faster reference
    row.update(run_child("benchmarks.training", ["breakdown", *args]))
    return row


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:8])
        return 0
    cli = parser(__doc__)
    cli.add_argument("--devices", default="cpu,cuda", help="comma-separated devices to measure (default cpu,cuda)")
    args = cli.parse_args(argv)
    # epochs: one warm-up + the timed ones (the median of the timed epochs is reported)
    train, epochs, batch = (128, 2, 32) if args.small else (10_847, 4, 256)
    rows, load_before = [], os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepared_cifar(Path(tmp), train, 100 if args.small else 1_000)
        for method in ("bcl", "ce"):
            for device in args.devices.split(","):
                if device == "cuda" and not torch.cuda.is_available():
                    rows.append({"method": method, "device": device, **{
                        f"{loop}_{figure}": NO_GPU for loop in LOOPS
                        for figure in ("images_per_s", "gpu_busy", "peak_memory_mb")}, "speedup": NO_GPU})
                    continue
                print(f"training benchmark: {method} on {device} ...", flush=True)
                rows.append(measure(prepared, method, device, epochs, batch))
    report("training", {"model": "resnet32", "image": "32x32 RGB", "train_images": train,
                        "epochs": f"1 warm-up + {epochs - 1} timed (median)", "batch_size": batch,
                        "reference_loader_workers": min(os.cpu_count() or 1, 12),
                        "memory": "peak RSS (cpu), max_memory_allocated (cuda)",
                        "speedup": "ours / the faster of reference and reference_amp",
                        "torch_threads": torch.get_num_threads(),
                        # A shared machine: a load above the core count means these figures are low.
                        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                        "under_load": max(load_before, os.getloadavg()[0]) > (os.cpu_count() or 1)},
           rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
