"""Loader throughput (images/s delivered, decode + augmentation) from shards with 1, 2, 4, ... loader
processes, against the usual baseline on the same images: an in-memory torchvision-style Dataset of PIL
images with PIL transforms (random crop + flip) and a torch DataLoader.

Ours: TrainStream + make_loader (PNG decode in the loader processes), then the `basic` preset as batched
tensor ops on the batch (pipeline.augment.batched; on a GPU this runs on the device).

    python -m benchmarks.loader [--small] [--out FILE]
"""
from __future__ import annotations

import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.common import cifar_train_arrays, parser, prepared_cifar, report
from pipeline.data.loader import TrainStream, make_loader
from pipeline.training.augment import augment_views


class PILDataset(Dataset):
    """The reference repositories' CIFAR dataset: PIL images in memory, PIL transforms per item."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = [Image.fromarray(image) for image in images]
        self.labels = labels
        self.transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                             transforms.PILToTensor()])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), int(self.labels[index])


def _rate(batches, count: int, augment=None) -> float:
    """Images/s over `count` batches after one warm-up batch (worker start-up is not throughput)."""
    iterator = iter(batches)
    next(iterator)
    started, seen = time.perf_counter(), 0
    for batch in islice(iterator, count):
        images = batch["image"] if isinstance(batch, dict) else batch[0]
        if augment is not None:
            images = augment(images)
        seen += len(images)
    return seen / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__).parse_args(argv)
    train, batch, count, workers = (600, 64, 4, (1, 2)) if args.small else (5_000, 128, 30, (1, 2, 4))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepared_cifar(Path(tmp), train, 100)
        shards = sorted(str(p) for p in (prepared / "train").glob("*.tar"))
        images, labels = cifar_train_arrays(Path(tmp) / "raw")
        for n in workers:
            stream = TrainStream(shards, seed=0, channels=3, image_size=32, repeat_factors=None)
            ours = _rate(make_loader(stream, batch, n), count,
                         lambda x: augment_views(x, ("basic",), 32, batched=True)[0])
            baseline = _rate(DataLoader(PILDataset(images, labels), batch_size=batch, shuffle=True, num_workers=n,
                                        drop_last=True), count)
            rows.append({"loader_workers": n, "ours_images_per_s": round(ours, 1),
                         "baseline_images_per_s": round(baseline, 1), "ratio": round(ours / baseline, 2)})
    report("loader", {"train_images": train, "batch_size": batch, "batches_timed": count, "image": "32x32 RGB",
                      "augmentation": "random crop (pad 4) + horizontal flip",
                      "torch_threads": torch.get_num_threads()}, rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
