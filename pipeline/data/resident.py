"""A rank's training (or validation) share decoded once into one uint8 tensor on its device.

When the decoded share fits a memory budget, nothing is read, decoded or copied
to the device after the first pass: every epoch is an index permutation drawn
on the device and each batch is one gather from the resident tensor.

Sampling is the stream form of ``pipeline.samplers`` done with indices: per
cycle over the share, each sample of class c is taken floor(r_c) or
floor(r_c) + 1 times (the +1 with probability frac(r_c)), the cycle is
shuffled, and cycles are concatenated until the epoch's ``count`` indices are
drawn. So the expected class frequencies and the epoch length (steps x batch
per rank) are those of ``TrainStream``; the permutation is global over the
share instead of a shuffle buffer's local mixing.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from pipeline.data.loader import EvalStream, make_loader

AUTO_DEVICE_FRACTION = 1 / 3  # of free GPU memory: the decode concatenates chunks (twice the set, briefly)
AUTO_HOST_FRACTION = 1 / 4  # of available host memory (CPU training; ranks share the host)


def auto_budget_bytes(device: torch.device) -> int:
    """The `auto` budget: a third of the free GPU memory, or a quarter of the available host memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * AUTO_DEVICE_FRACTION)
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * AUTO_HOST_FRACTION)


def estimated_bytes(num_samples: int, shard_share: float, channels: int, image_size: int) -> int:
    """Decoded size of a rank's share: its fraction of the shards times the samples, uint8 C x H x W."""
    return math.ceil(num_samples * shard_share) * channels * image_size * image_size


@dataclass
class Batch:
    image: Tensor  # (B, C, H, W) uint8 on the set's device
    label: Tensor  # (B,) int64 on the set's device
    key: list[str]


class ResidentSet:
    """Images (N, C, H, W) uint8, labels (N,) int64 on one device, keys on the host."""

    def __init__(self, images: Tensor, labels: Tensor, keys: Sequence[str]) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or not len(images) == len(labels) == len(keys):
            raise ValueError("need (N, C, H, W) uint8 images with one label and key each")
        self.images, self.labels, self.keys = images, labels, list(keys)
        self.device = images.device

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return self.images.numel()

    @classmethod
    def decode(cls, shards: Sequence[str], *, channels: int, image_size: int, device: torch.device,
               loader_workers: int = 0, chunk: int = 1024) -> "ResidentSet":
        """Read and decode `shards` once, in file order (``EvalStream``), moving chunks to `device`."""
        images, labels, keys = [], [], []
        stream = EvalStream(list(shards), channels=channels, image_size=image_size)
        for batch in make_loader(stream, chunk, loader_workers):
            images.append(batch["image"].to(device))
            labels.append(batch["label"])
            keys.extend(batch["key"])
        return cls(torch.cat(images), torch.cat(labels).to(device), keys)

    def epoch_indices(self, repeat_factors: np.ndarray | None, count: int, generator: torch.Generator) -> Tensor:
        """`count` indices on the device: shuffled cycles in which sample i appears floor(r) or
        floor(r) + 1 times, r = repeat_factors[label_i] (None: every sample once per cycle)."""
        n = len(self)
        if repeat_factors is None:
            factors = torch.ones(n, device=self.device)
        else:
            if len(repeat_factors) <= int(self.labels.max()):
                raise ValueError(f"repeat_factors covers {len(repeat_factors)} classes, labels go to "
                                 f"{int(self.labels.max())}")
            factors = torch.as_tensor(repeat_factors, dtype=torch.float64).to(self.device)[self.labels]
        whole, frac = factors.floor(), factors - factors.floor()
        if not bool((factors > 0).any()):
            raise ValueError("the repeat factors drop every sample of this share")
        cycles, total = [], 0
        while total < count:  # one host sync per cycle (its length), never per step
            copies = whole + (torch.rand(n, generator=generator, device=self.device) < frac)
            cycle = torch.repeat_interleave(torch.arange(n, device=self.device), copies.long())
            cycle = cycle[torch.randperm(len(cycle), generator=generator, device=self.device)]
            cycles.append(cycle)
            total += len(cycle)
        return torch.cat(cycles)[:count]

    def batches(self, indices: Tensor, batch_size: int) -> Iterator[Batch]:
        """Batches gathered at `indices` (on the device); keys from one host copy of the indices."""
        host = indices.cpu().tolist()
        for start in range(0, len(host), batch_size):
            chosen = indices[start:start + batch_size]
            yield Batch(self.images.index_select(0, chosen), self.labels.index_select(0, chosen),
                        [self.keys[i] for i in host[start:start + batch_size]])

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        """Every sample once, in file order (evaluation)."""
        for start in range(0, len(self), batch_size):
            end = start + batch_size
            yield Batch(self.images[start:end], self.labels[start:end], self.keys[start:end])
