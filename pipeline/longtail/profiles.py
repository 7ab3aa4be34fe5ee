"""The science of the split: long-tailed class profiles, sample selection, validation carve-out.

Pure functions on label arrays, the protocol of docs/methods.md section 1.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from pipeline.registry import Registry

Profile = Callable[[int, int, float], list[int]]  # (num_classes, n_max, rho) -> per-class counts
PROFILES: Registry[Profile | None] = Registry("split profile")


@PROFILES.register("exp")
def exp_profile(num_classes: int, n_max: int, rho: float) -> list[int]:
    """CIFAR-LT protocol: n_i = int(n_max * rho ** (-i / (C - 1))) in the dataset's class order."""
    if num_classes == 1:
        return [n_max]
    return [int(n_max * rho ** (-i / (num_classes - 1))) for i in range(num_classes)]


@PROFILES.register("step")
def step_profile(num_classes: int, n_max: int, rho: float) -> list[int]:
    """The first C // 2 classes keep n_max, the rest keep int(n_max / rho)."""
    return [n_max if i < num_classes // 2 else int(n_max / rho) for i in range(num_classes)]


# "none": the dataset is already long-tailed (ImageNet-LT, Places-LT, iNaturalist lists).
PROFILES.register("none")(None)


def target_counts(profile: str, pool_counts: Sequence[int], n_max: int | None, rho: float) -> list[int]:
    """Per-class training counts for `profile`; n_max defaults to the smallest pool count.

    Raises ValueError when a class cannot supply its target.
    """
    pool = [int(n) for n in pool_counts]
    make = PROFILES.get(profile)
    if make is None:
        return pool
    n_max = min(pool) if n_max is None else n_max
    targets = make(len(pool), n_max, rho)
    short = [(c, t, n) for c, (t, n) in enumerate(zip(targets, pool)) if t > n]
    if short:
        c, t, n = short[0]
        raise ValueError(f"class {c} needs {t} training images but has {n} (lower split.n_max)")
    if min(targets) < 1:
        raise ValueError(f"n_max={n_max} with imbalance ratio {rho} leaves a class with no images")
    return targets


def select_longtail(labels: np.ndarray, targets: Sequence[int], seed: int) -> np.ndarray:
    """Indices into `labels` kept for training: the CIFAR-LT selection rule.

    numpy RandomState(seed); for each class in order, shuffle that class's
    indices (ascending order before the shuffle) and keep the first n_c.
    """
    rng = np.random.RandomState(seed)
    kept = []
    for c, n in enumerate(targets):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        kept.append(idx[:n])
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)


def carve_validation(labels: np.ndarray, per_class: int, num_classes: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of `labels` into (validation, pool): `per_class` random images of each class
    go to validation, BEFORE long-tailed subsampling, so validation never overlaps training.

    Uses its own generator (numpy default_rng(seed)) so the long-tailed selection
    that follows draws exactly as the published protocol does.
    """
    if per_class == 0:
        return np.zeros(0, dtype=np.int64), np.arange(len(labels))
    rng = np.random.default_rng(seed)
    val = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= per_class:
            raise ValueError(f"class {c} has {len(idx)} training images; carving {per_class} "
                             "for validation would leave none (lower split.val_per_class)")
        val.append(np.sort(rng.choice(idx, size=per_class, replace=False)))
    val_idx = np.concatenate(val)
    pool = np.setdiff1d(np.arange(len(labels)), val_idx)
    return val_idx, pool

