"""Streaming over our WebDataset tar shards for distributed training and evaluation (pure PyTorch).

Each DDP rank (a Ray Train worker; rank and world size are passed in, nothing
here imports Ray) streams its own disjoint share of the shards:

- Training: ``TrainStream`` is endless. It cycles over the rank's shards (a
  new seeded shard order each cycle), re-balances classes per sample with
  ``pipeline.samplers.repeat_stream``, mixes through a seeded shuffle buffer
  and decodes. Every rank takes exactly ``steps_per_epoch(...)`` batches per
  epoch, so uneven shard splits cannot hang DDP (ranks with different batch counts would),
  and an epoch covers the data about once across ranks.
- Evaluation: ``EvalStream`` reads the rank's share once, in file order, with
  no shuffling or re-sampling; gather the predictions across ranks afterwards.

Within a rank, DataLoader workers split the share round-robin by shard, so
each worker reads only its own shards (about 1/W of the bytes). ``make_loader``
starts at most one worker per shard and says so when it starts fewer than
asked: write more, smaller shards (``split.shard_max_samples``) to use more.
Training workers persist across epochs; ``set_epoch`` reaches them through
shared memory.

Reproducibility: every random draw comes from numpy generators seeded by
(seed, epoch, a digest of the rank's shard file names, loader worker id) --
not by the rank number, so the same shards give the same stream wherever they
are stored and whichever rank reads them. Images stay uint8 (C, H, W):
augmentation and normalisation happen later, on the training device.
"""
from __future__ import annotations

import hashlib
import math
import tarfile
from itertools import islice
from typing import IO, Iterable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_iterator

from pipeline.data.decode import READ_MODES as _READ_MODES
from pipeline.data.decode import decode_image
from pipeline.data.errors import DataError
from pipeline.samplers import repeat_stream
from pipeline.storage import open_binary

# Purposes of the per-iteration random generators (part of their seeds).
_ORDER, _SAMPLES = 0, 1


# ----------------------------------------------------------------------------- sharding arithmetic

def rank_shards(shards: Sequence[str], rank: int, world_size: int) -> list[str]:
    """This rank's disjoint share of the shards: round-robin over the sorted list, shards[rank::world_size].

    Sorting first makes the split independent of the order in which each rank
    happened to list the shard directory.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    ordered = sorted(str(shard) for shard in shards)
    if len(set(ordered)) != len(ordered):
        raise ValueError("the shard list contains duplicates")
    if len(ordered) < world_size:
        raise ValueError(
            f"{len(ordered)} shard(s) for {world_size} ranks: every rank needs at least one shard, so at "
            f"least {world_size} are needed; lower split.shard_max_samples (training / validation shards) "
            f"or prepare.shard_max_samples (test shards), or use fewer workers")
    return ordered[rank::world_size]


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int) -> int:
    """Batches every rank takes per epoch: ceil(num_samples / (batch_size * world_size)), at least 1."""
    if num_samples < 1 or batch_size < 1 or world_size < 1:
        raise ValueError(f"num_samples, batch_size and world_size must be >= 1, "
                         f"got {num_samples}, {batch_size}, {world_size}")
    return max(1, math.ceil(num_samples / (batch_size * world_size)))


# ----------------------------------------------------------------------------- reading and decoding

def open_shard(url: str) -> IO[bytes]:
    """A binary stream of one shard: `pipe:` commands through webdataset, everything else through
    fsspec, so shards on shared storage (NFS paths, s3://, gs://) read like local ones."""
    if url.startswith("pipe:"):
        return wds.gopen(url, "rb")
    return open_binary(url)


def read_shard(path: str) -> Iterator[dict]:
    """Yield {"key", "label", "data", "ext"} per sample of one shard, in file order.

    `path` is a local or NFS path, an fsspec URL (file://, s3://, gs://, ...) or a
    webdataset `pipe:` command (see ``open_shard``).
    A shard that is not a readable tar, or a sample without exactly one image
    member and one ``.cls`` label, raises DataError naming the shard.
    """
    url = str(path)
    with open_shard(url) as stream:
        members = ({**member, "__url__": url} for member in tar_file_iterator(stream))
        try:
            for group in group_by_keys(members):
                yield _sample(group, url)
        except (tarfile.TarError, ValueError) as exc:
            raise DataError(f"{url}: not a readable shard: {exc}") from exc


def _sample(group: dict, url: str) -> dict:
    key = group["__key__"]
    images = [ext for ext in group if not ext.startswith("__") and ext != "cls"]
    if "cls" not in group or len(images) != 1:
        found = sorted(ext for ext in group if not ext.startswith("__"))
        raise DataError(f"{url}: sample {key!r} needs one image member and a .cls label, found {found}")
    text = group["cls"].decode("ascii", errors="replace").strip()
    if not text.isdigit():
        raise DataError(f"{url}: sample {key!r} has label {text!r}, expected a non-negative integer")
    return {"key": key, "label": int(text), "data": group[images[0]], "ext": images[0]}


# ----------------------------------------------------------------------------- the streams

def _loader_worker() -> tuple[int, int]:
    """(worker id, number of DataLoader workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _checked_shards(shards: Sequence[str]) -> list[str]:
    ordered = sorted(str(shard) for shard in shards)
    if not ordered:
        raise ValueError("no shards given")
    if len(set(ordered)) != len(ordered):
        raise ValueError("the shard list contains duplicates")
    return ordered


def _read_share(shards: Iterable[str]) -> Iterator[dict]:
    """Samples of `shards` in order, tagged with their shard."""
    for shard in shards:
        for sample in read_shard(shard):
            sample["shard"] = shard
            yield sample


def _decoded(sample: dict, channels: int, size: int | None) -> dict:
    try:
        image = decode_image(sample["data"], channels, size)
    except ValueError as exc:
        raise DataError(f"{sample['shard']}: sample {sample['key']} (.{sample['ext']}): {exc}") from exc
    return {"key": sample["key"], "image": image, "label": sample["label"]}


def _shuffled(samples: Iterable[dict], size: int, rng: np.random.Generator, initial: int = 64) -> Iterator[dict]:
    """A shuffle buffer of up to `size` samples, drained in random order when `samples` ends.

    Output starts once `initial` samples are in: until the buffer is full it takes two samples per
    one it emits, so a cycle never waits for `size` samples (a whole worker's share, with small
    shares) to be read and decoded before its first batch.
    """
    buffer: list[dict] = []
    source = iter(samples)
    for sample in source:
        buffer.append(sample)
        if len(buffer) < size:
            buffer.extend(islice(source, 1))
        if len(buffer) >= min(initial, size):
            slot = int(rng.integers(len(buffer)))
            buffer[slot], buffer[-1] = buffer[-1], buffer[slot]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


class _StreamBase(IterableDataset):
    def __init__(self, shards: Sequence[str], channels: int, image_size: int | None) -> None:
        super().__init__()
        if channels not in _READ_MODES:
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be >= 1 or None, got {image_size}")
        self.shards = _checked_shards(shards)
        self.channels = channels
        self.image_size = image_size


def _checked_factors(repeat_factors: np.ndarray) -> np.ndarray:
    factors = np.asarray(repeat_factors, dtype=np.float64)
    if factors.ndim != 1 or not np.isfinite(factors).all() or (factors < 0).any() or not (factors > 0).any():
        raise ValueError("repeat_factors must be a 1-d array of finite, non-negative factors, "
                         "not all zero (see ClassSampler.repeat_factors)")
    return factors


class TrainStream(_StreamBase):
    """Endless, re-balanced, shuffled stream over one rank's training shards; take steps_per_epoch batches.

    Per cycle over the loader worker's share: a seeded shard order, then
    ``repeat_stream`` (each sample emitted floor(r_c) or floor(r_c) + 1 times,
    r_c = repeat_factors[label]; None = instance-balanced, every sample once),
    then a shuffle buffer of `shuffle_buffer` samples (1 = no mixing), drained
    at the end of each cycle so a cycle never mixes with the next: without
    re-balancing, a worker emits each of its samples exactly once per cycle.

    Call ``set_epoch`` before iterating each epoch. The epoch lives in shared
    memory, so persistent DataLoader workers see it when their next pass starts.
    """

    def __init__(self, shards: Sequence[str], *, seed: int, channels: int, image_size: int | None,
                 repeat_factors: np.ndarray | None, shuffle_buffer: int = 1000) -> None:
        super().__init__(shards, channels, image_size)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1 (1 = no mixing), got {shuffle_buffer}")
        if repeat_factors is not None:
            repeat_factors = _checked_factors(repeat_factors)
        self.seed = int(seed)
        # Shared memory, as the epoch: set_epoch can change the factors (progressive sampling) under
        # persistent workers. Empty: instance-balanced (every sample once per cycle).
        self._factors = torch.as_tensor(np.zeros(0) if repeat_factors is None else repeat_factors,
                                        dtype=torch.float64).clone().share_memory_()
        self.shuffle_buffer = int(shuffle_buffer)
        names = "\n".join(shard.rstrip("/").rsplit("/", 1)[-1] for shard in self.shards)
        digest = hashlib.sha256(names.encode()).digest()
        self._shard_digest = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int, repeat_factors: np.ndarray | None = None) -> None:
        """The epoch of the next pass and, if given, its repeat factors (as many classes as before)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if repeat_factors is not None:
            factors = _checked_factors(repeat_factors)
            if factors.shape != tuple(self._factors.shape):
                raise ValueError(f"repeat_factors for {len(factors)} classes, the stream was built for "
                                 f"{len(self._factors)} (or none)")
            self._factors.copy_(torch.from_numpy(factors))
        self._epoch.fill_(int(epoch))

    @property
    def repeat_factors(self) -> np.ndarray | None:
        return self._factors.numpy().copy() if len(self._factors) else None

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def _rng(self, purpose: int, worker_key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, *self._shard_digest, purpose, worker_key])

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = _loader_worker()
        share = self.shards[worker::num_workers]
        order_rng = self._rng(_ORDER, worker + 1)
        rng = self._rng(_SAMPLES, worker + 1)
        factors = self.repeat_factors
        while True:
            order = [share[i] for i in order_rng.permutation(len(share))]
            read = _Tally(_read_share(order))
            samples: Iterable[dict] = read
            if factors is not None:
                samples = repeat_stream(self._labels_checked(samples, len(factors)), factors, rng,
                                        label_key="label")
            for sample in _shuffled(samples, self.shuffle_buffer, rng):
                yield _decoded(sample, self.channels, self.image_size)
            if read.count == 0:  # an endless loop over nothing would hang the rank
                raise DataError(f"loader worker {worker} of {num_workers} got no samples from its shards "
                                f"{order}; use fewer loader workers or more samples per rank")

    @staticmethod
    def _labels_checked(samples: Iterable[dict], num_classes: int) -> Iterator[dict]:
        for sample in samples:
            if sample["label"] >= num_classes:
                raise DataError(f"{sample['shard']}: sample {sample['key']} has label {sample['label']}, "
                                f"but repeat_factors covers {num_classes} classes")
            yield sample


class _Tally:
    """Counts the samples that pass through."""

    def __init__(self, samples: Iterable[dict]) -> None:
        self.samples = samples
        self.count = 0

    def __iter__(self) -> Iterator[dict]:
        for sample in self.samples:
            self.count += 1
            yield sample


class EvalStream(_StreamBase):
    """One pass over one rank's shards in file order: no shuffling, no re-sampling.

    Each sample of the shards is yielded exactly once across DataLoader workers.
    """

    def __init__(self, shards: Sequence[str], *, channels: int, image_size: int | None) -> None:
        super().__init__(shards, channels, image_size)

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = _loader_worker()
        for sample in _read_share(self.shards[worker::num_workers]):
            yield _decoded(sample, self.channels, self.image_size)


# ----------------------------------------------------------------------------- the DataLoader

def collate_samples(samples: list[dict]) -> dict:
    """{"image": (B, C, H, W) uint8, "label": (B,) int64, "key": list[str]}."""
    shapes = {tuple(sample["image"].shape) for sample in samples}
    if len(shapes) > 1:
        raise ValueError(f"images of different shapes {sorted(shapes)} in one batch; set image_size")
    return {
        "image": torch.stack([sample["image"] for sample in samples]),
        "label": torch.tensor([sample["label"] for sample in samples], dtype=torch.int64),
        "key": [sample["key"] for sample in samples],
    }


def make_loader(dataset: TrainStream | EvalStream, batch_size: int, num_workers: int,
                pin_memory: bool = False, drop_last: bool = False, prefetch_factor: int = 2) -> DataLoader:
    """A DataLoader over a stream, batching with ``collate_samples``.

    Training: iterate ``itertools.islice(loader, steps_per_epoch(...))`` after
    ``dataset.set_epoch(epoch)``; its workers persist across epochs. Evaluation
    keeps every sample, so drop_last=True is refused for an EvalStream.
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
    if isinstance(dataset, EvalStream) and drop_last:
        raise ValueError("drop_last=True would drop evaluation samples; EvalStream needs drop_last=False")
    if num_workers > len(dataset.shards) and isinstance(dataset, TrainStream):  # built once per run
        print(f"loader: {num_workers} workers asked for {len(dataset.shards)} shard(s); starting "
              f"{len(dataset.shards)}, one per shard (more, smaller shards let more workers read: "
              f"split.shard_max_samples)", flush=True)
    num_workers = min(num_workers, len(dataset.shards))
    options = {}
    if num_workers > 0:
        options = {"prefetch_factor": prefetch_factor, "persistent_workers": isinstance(dataset, TrainStream)}
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples,
                      pin_memory=pin_memory, drop_last=drop_last, **options)
