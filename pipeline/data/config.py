"""Typed configuration of the data stages (params.yaml sections `data`, `prepare`, `split`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config import require
from pipeline.data.catalog import DATASETS

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, and where to find it (params section `data`)."""

    dataset: str = "fashion-mnist"
    path: str | None = None  # a directory or archive given by the user; searched first
    download: bool = True  # allow the canonical URL when no local copy is found
    verify: bool = True  # check known checksums (turn off for re-packed private copies)
    lists: dict[str, str] | None = None  # splitlist: {train|val|test: list file}
    class_names: str | None = None  # imagefolder / splitlist: file with one class name per line

    def __post_init__(self) -> None:
        require(self.dataset in DATASETS, "data.dataset",
                f"unknown dataset {self.dataset!r}; valid: {', '.join(DATASETS.names())}")
        source = DATASETS.get(self.dataset).source
        if source in ("imagefolder", "splitlist"):
            require(self.path is not None, "data.path", f"the {source} source needs the data root")
        if source == "splitlist":
            require(bool(self.lists), "data.lists", "splitlist needs {train: FILE, test: FILE, ...}")
            bad = sorted(set(self.lists) - set(SPLITS))
            require(not bad, "data.lists", f"unknown split {bad[:1]}; valid: {', '.join(SPLITS)}")
            require("train" in self.lists, "data.lists", "a train list is required")
        else:
            require(self.lists is None, "data.lists", f"only the splitlist source takes lists, not {source}")


@dataclass(frozen=True)
class PrepareConfig:
    """How shards are written (params section `prepare`)."""

    shard_max_samples: int = 1000
    shard_max_bytes: int = 100_000_000
    on_corrupt: Literal["error", "skip"] = "error"

    def __post_init__(self) -> None:
        require(self.shard_max_samples >= 1, "prepare.shard_max_samples", "must be >= 1")
        require(self.shard_max_bytes >= 1024, "prepare.shard_max_bytes", "must be >= 1024")


@dataclass(frozen=True)
class SplitConfig:
    """The long-tailed training split (params section `split`; docs/methods.md section 1)."""

    profile: str = "exp"
    imbalance_ratio: float = 100.0
    n_max: int | None = None  # None: the largest count every class can supply
    seed: int = 0
    val_source: Literal["carve", "dataset"] = "carve"
    val_per_class: int = 20
    many_threshold: int = 100  # many-shot: n_c > many_threshold
    few_threshold: int = 20  # few-shot: n_c < few_threshold
    shard_max_samples: int = 1000

    def __post_init__(self) -> None:
        from pipeline.longtail.profiles import PROFILES

        require(self.profile in PROFILES, "split.profile",
                f"unknown profile {self.profile!r}; valid: {', '.join(PROFILES.names())}")
        require(self.imbalance_ratio >= 1, "split.imbalance_ratio",
                f"must be >= 1 (rho = n_max / n_min), got {self.imbalance_ratio}")
        require(self.n_max is None or self.n_max >= 1, "split.n_max", "must be >= 1")
        require(self.val_per_class >= 0, "split.val_per_class", "must be >= 0")
        require(self.few_threshold >= 0, "split.few_threshold", "must be >= 0")
        require(self.few_threshold <= self.many_threshold, "split.few_threshold",
                f"must be <= split.many_threshold ({self.few_threshold} > {self.many_threshold})")
        require(self.shard_max_samples >= 1, "split.shard_max_samples", "must be >= 1")
