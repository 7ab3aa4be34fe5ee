"""Where a rank's training and validation batches come from: resident on the device, or streamed.

``open_training_data`` decides once per run. When the rank's decoded training
share fits ``stage.resident_budget_mb`` (``auto``: see
``pipeline.data.resident.auto_budget_bytes``), the training and validation
shares are decoded once into device tensors (``ResidentSet``) and every epoch
is drawn there; otherwise one persistent ``TrainStream`` DataLoader streams
every epoch, and one log line says why.
"""
from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from pipeline.data.loader import EvalStream, TrainStream, make_loader, rank_shards
from pipeline.data.resident import Batch, ResidentSet, auto_budget_bytes, estimated_bytes
from pipeline.training.checkpoint import epoch_seed

if TYPE_CHECKING:
    from pipeline.training.job import TrainJob
    from pipeline.training.methods import Task


def eval_share(shards: Sequence[str], rank: int, world: int) -> list[str]:
    """A rank's disjoint share of evaluation shards; with fewer shards than ranks, rank 0 reads them all."""
    if len(shards) >= world:
        return rank_shards(list(shards), rank, world)
    return list(shards) if rank == 0 else []


def stream_batches(shards: Sequence[str], task: "Task", batch_size: int, loader_workers: int) -> Iterator[Batch]:
    """One pass over `shards` in file order, decoded (host tensors)."""
    if not shards:
        return
    stream = EvalStream(list(shards), channels=task.model.channels, image_size=task.model.image_size)
    for batch in make_loader(stream, batch_size, loader_workers):
        yield Batch(batch["image"], batch["label"], batch["key"])


class ResidentTraining:
    """Epochs drawn as index permutations of a device-resident share (seeded per rank and epoch)."""

    def __init__(self, images: ResidentSet, batch_size: int, seed: int, rank: int) -> None:
        self.images, self.batch_size, self.seed, self.rank = images, batch_size, seed, rank

    def epoch(self, epoch: int, repeat_factors: np.ndarray, steps: int) -> Iterator[Batch]:
        generator = torch.Generator(self.images.device)
        generator.manual_seed(epoch_seed(self.seed, self.rank, epoch, "order"))
        indices = self.images.epoch_indices(repeat_factors, steps * self.batch_size, generator)
        return self.images.batches(indices, self.batch_size)


class StreamedTraining:
    """One endless TrainStream behind one DataLoader whose workers persist across epochs."""

    def __init__(self, shards: Sequence[str], task: "Task", batch_size: int, seed: int, loader_workers: int,
                 repeat_factors: np.ndarray, pin_memory: bool) -> None:
        self.stream = TrainStream(shards, seed=seed, channels=task.model.channels,
                                  image_size=task.model.image_size, repeat_factors=repeat_factors)
        self.loader = make_loader(self.stream, batch_size, loader_workers, pin_memory=pin_memory)

    def epoch(self, epoch: int, repeat_factors: np.ndarray, steps: int) -> Iterator[Batch]:
        self.stream.set_epoch(epoch, repeat_factors)  # shared memory: the persistent workers see it
        for batch in islice(self.loader, steps):
            yield Batch(batch["image"], batch["label"], batch["key"])


class TrainingData:
    """This rank's training batches (``train.epoch(...)``) and validation batches (``validation(...)``)."""

    def __init__(self, train: ResidentTraining | StreamedTraining | None, validation: ResidentSet | None,
                 val_shards: list[str], task: "Task", loader_workers: int) -> None:
        self.train, self._validation, self._val_shards = train, validation, val_shards
        self._task, self._loader_workers = task, loader_workers

    @property
    def resident(self) -> bool:
        return isinstance(self.train, ResidentTraining)

    def validation(self, batch_size: int) -> Iterator[Batch]:
        if self._validation is not None:
            return self._validation.in_order(batch_size)
        return stream_batches(self._val_shards, self._task, batch_size, self._loader_workers)


def budget_bytes(setting: int | str, device: torch.device) -> int:
    return auto_budget_bytes(device) if setting == "auto" else int(setting) * 2**20


def open_training_data(job: "TrainJob", rank: int, world: int, device: torch.device, trains: bool,
                       initial_factors: np.ndarray) -> TrainingData:
    """Decode this rank's shares onto `device` when its training share fits the budget, else stream."""
    cfg, task = job.config, job.task
    train_shards = rank_shards(list(job.train_shards), rank, world)
    val_shards = eval_share(job.val_shards, rank, world)
    need = estimated_bytes(job.num_train, len(train_shards) / len(job.train_shards), task.model.channels,
                           task.model.image_size)
    budget = budget_bytes(cfg.resident_budget_mb, device)
    decode = dict(channels=task.model.channels, image_size=task.model.image_size, device=device,
                  loader_workers=job.loader_workers)
    if need <= budget:
        images = ResidentSet.decode(train_shards, **decode) if trains else None
        validation = ResidentSet.decode(val_shards, **decode) if val_shards else None
        train = ResidentTraining(images, cfg.batch_size, cfg.seed, rank) if trains else None
        return TrainingData(train, validation, val_shards, task, job.loader_workers)
    if rank == 0:
        print(f"[{job.stage}] training share of about {need / 2**20:.0f} MiB per rank exceeds the resident "
              f"budget of {budget / 2**20:.0f} MiB ({job.stage}.resident_budget_mb: "
              f"{cfg.resident_budget_mb}): streaming from the shards every epoch", flush=True)
    train = StreamedTraining(train_shards, task, cfg.batch_size, cfg.seed, job.loader_workers, initial_factors,
                             pin_memory=device.type == "cuda") if trains else None
    return TrainingData(train, None, val_shards, task, job.loader_workers)
