"""Typed configuration of training (params sections `model`, `stage1`, `stage2`, `ray`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pipeline.config import require


@dataclass(frozen=True)
class ModelConfig:
    """The input the network sees and the backbone that reads it (params section `model`)."""

    backbone: str = "resnet_small"  # a pipeline.models.backbones name, or timm:<name>
    pretrained: bool = False
    channels: int = 1  # decode images as 1 (grey) or 3 (RGB) channels
    image_size: int = 28  # decoded images are resized to image_size x image_size
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        require(self.channels in (1, 3), "model.channels", f"must be 1 or 3, got {self.channels}")
        require(self.image_size >= 8, "model.image_size", "must be >= 8")
        for key, values in (("model.mean", self.mean), ("model.std", self.std)):
            require(len(values) == self.channels, key, f"needs {self.channels} values, got {len(values)}")
        require(all(s > 0 for s in self.std), "model.std", "must be > 0")


@dataclass(frozen=True)
class StageConfig:
    """One training stage (params sections `stage1` and `stage2`): Stage1Config or Stage2Config, which
    check on construction the method name, its params and every range (nothing to call by hand)."""

    stage: ClassVar[str]  # "stage1" or "stage2": the params section, and the registry of `method`

    method: str
    params: dict[str, Any] = field(default_factory=dict)  # the method's own knobs (its Params)
    epochs: int = 10
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 0
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    milestones: tuple[int, ...] = ()  # step schedule: epochs where lr is multiplied by gamma
    gamma: float = 0.1
    sampler: str | None = None  # None: the method's default (instance- or class-balanced)
    seed: int = 0
    # The GPU fast path. batched_augment: augmentation as batched tensor ops on the training device
    # (pipeline.augment.batched) instead of per-image torchvision on the CPU; same distributions,
    # different random draws, so it is off by default and the CPU default run keeps its numbers.
    batched_augment: bool = False
    compile: bool = False  # torch.compile the method's training forward (pays a compile on first use)
    # Decode a rank's training share once into its device's memory (GPU, or host memory on CPU) when
    # it fits this many MiB, and draw every epoch there; larger shares stream from the shards each
    # epoch. "auto": a third of the free GPU memory or a quarter of the available host memory; 0: stream.
    resident_budget_mb: int | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        # Imported here: the methods import this module (ModelConfig) to define Task.
        from pipeline.training.registry import method_class, method_params

        section = self.stage
        method = method_class(section, self.method)  # first: the other checks depend on what the method is
        if method.trains:
            require(self.epochs >= 1, f"{section}.epochs",
                    f"must be >= 1 for {self.method!r}, which trains (0 would write an untrained model)")
        require(self.epochs >= 0, f"{section}.epochs", "must be >= 0")
        require(self.batch_size >= 2, f"{section}.batch_size", "must be >= 2")
        require(math.isfinite(self.lr) and self.lr > 0, f"{section}.lr", f"must be a finite number > 0, got {self.lr}")
        require(math.isfinite(self.weight_decay), f"{section}.weight_decay", "must be finite")
        require(0 <= self.momentum < 1, f"{section}.momentum", "must be in [0, 1)")
        require(self.weight_decay >= 0, f"{section}.weight_decay", "must be >= 0")
        require(0 <= self.warmup_epochs <= max(self.epochs, 0), f"{section}.warmup_epochs",
                f"must be in [0, {section}.epochs]")
        require(list(self.milestones) == sorted(self.milestones), f"{section}.milestones", "must be increasing")
        require(self.resident_budget_mb == "auto" or self.resident_budget_mb >= 0,
                f"{section}.resident_budget_mb", "must be \"auto\" or >= 0 (MiB)")
        require(0 < self.gamma <= 1, f"{section}.gamma", "must be in (0, 1]")
        if self.sampler is not None:
            from pipeline.samplers import SAMPLERS

            require(self.sampler in SAMPLERS, f"{section}.sampler",
                    f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLERS.names())}")
        method_params(section, self.method, self.params)


@dataclass(frozen=True)
class Stage1Config(StageConfig):
    """Params section `stage1`: representation learning (pipeline.training.methods)."""

    stage: ClassVar[str] = "stage1"


@dataclass(frozen=True)
class Stage2Config(StageConfig):
    """Params section `stage2`: classifier re-balancing (pipeline.training.rebalance)."""

    stage: ClassVar[str] = "stage2"


STAGE_CONFIGS: dict[str, type[StageConfig]] = {"stage1": Stage1Config, "stage2": Stage2Config}


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide training runs (params section `ray`)."""

    address: str | None = None  # None: $RAY_ADDRESS if set, else a local Ray started for the run
    num_workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    loader_workers: int = 0  # DataLoader processes per training worker
    max_failures: int = 1  # worker failures retried from the last checkpoint
    storage_path: str = ".ray_runs"  # Ray Train run storage (checkpoints); a shared path on a cluster

    def __post_init__(self) -> None:
        require(self.num_workers >= 1, "ray.num_workers", "must be >= 1")
        require(self.cpus_per_worker > 0, "ray.cpus_per_worker", "must be > 0")
        require(self.gpus_per_worker >= 0, "ray.gpus_per_worker", "must be >= 0")
        require(self.loader_workers >= 0, "ray.loader_workers", "must be >= 0")
        require(self.max_failures >= -1, "ray.max_failures", "must be >= -1 (-1: retry forever)")
