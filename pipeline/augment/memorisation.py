"""Memorisation-driven augmentation (ECVL stage 2, "momentum loss"; docs/methods.md).

``MomentumLossTracker`` keeps a momentum loss m_i per sample key and turns it
into augmentation weights w_i in [0, 1]; ``PerSampleRandAugment`` augments
each image with a strength given by its w_i.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch
from torchvision.transforms.v2 import functional as TF


@dataclass(frozen=True)
class LossStats:
    """What normalisation needs from a shard: count, sum, min and max of its momentum losses.

    Shards' stats combine with ``merge``, so Ray workers can all-reduce four
    numbers instead of gathering every loss.
    """

    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def merge(self, other: "LossStats") -> "LossStats":
        return LossStats(self.count + other.count, self.total + other.total,
                         min(self.minimum, other.minimum), max(self.maximum, other.maximum))

    @property
    def mean(self) -> float:
        return self.total / self.count


class MomentumLossTracker:
    """Per-sample momentum loss (ECVL, reconstructed; docs/methods.md): m_i = l_i first, then an EMA.

    ``update`` is one observation per key: m_i <- l_i the first time key i is
    seen, afterwards m_i <- momentum * m_i + (1 - momentum) * l_i. The method
    observes once per epoch; duplicate keys within one call are averaged first,
    so a call with a whole epoch's losses is exactly one observation.

    Sharding (Ray workers): each worker keeps ``tracker.subset(its_keys)``,
    all-reduces ``stats()`` (``LossStats.merge``) and calls
    ``weights(keys, stats=global_stats)``; a checkpoint gathers the shards with
    ``MomentumLossTracker.merge([shard.state_dict() for shard in shards])``.
    """

    def __init__(self, momentum: float = 0.97) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self._values: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def keys(self) -> list[str]:
        return list(self._values)

    def value(self, key: str) -> float:
        return self._values[key]

    def update(self, keys: Sequence[str], losses: torch.Tensor | Sequence[float]) -> None:
        losses = torch.as_tensor(losses, dtype=torch.float64).detach().cpu().reshape(-1).tolist()
        if len(keys) != len(losses):
            raise ValueError(f"{len(keys)} keys but {len(losses)} losses")
        sums: dict[str, list[float]] = {}
        for key, loss in zip(keys, losses):
            entry = sums.setdefault(key, [0.0, 0])
            entry[0] += loss
            entry[1] += 1
        for key, (total, n) in sums.items():
            loss = total / n
            old = self._values.get(key)
            self._values[key] = loss if old is None else self.momentum * old + (1 - self.momentum) * loss

    def stats(self) -> LossStats:
        values = self._values.values()
        if not values:
            return LossStats()
        return LossStats(len(values), math.fsum(values), min(values), max(values))

    def weights(self, keys: Sequence[str], stats: LossStats | None = None) -> torch.Tensor:
        """Augmentation weights w in [0, 1] (mean 0.5 over the tracked samples) for `keys`.

        The method's rule: w = (m - mean m) / std m, then w = (w / max|w|) / 2 + 1/2. The
        std cancels, so w = (m - mean) / (2 max|m - mean|) + 1/2, computed from
        `stats` (default: this tracker's; pass the merged stats of all shards
        for global normalisation). If every m is equal (std = 0) all w = 0.5.
        Keys never observed get 0.5 too: no evidence of memorisation either way.
        """
        stats = self.stats() if stats is None else stats
        if stats.count == 0:
            return torch.full((len(keys),), 0.5, dtype=torch.float64)
        mean = stats.mean
        spread = max(stats.maximum - mean, mean - stats.minimum)
        if spread <= 1e-12 * max(1.0, abs(mean)):
            return torch.full((len(keys),), 0.5, dtype=torch.float64)
        values = torch.tensor([self._values.get(k, mean) for k in keys], dtype=torch.float64)
        return ((values - mean) / (2.0 * spread) + 0.5).clamp(0.0, 1.0)

    def state_dict(self) -> dict:
        """Checkpointable state (plain list + tensor, so torch.load(weights_only=True) reads it)."""
        return {"momentum": self.momentum, "keys": list(self._values),
                "values": torch.tensor(list(self._values.values()), dtype=torch.float64)}

    def load_state_dict(self, state: Mapping) -> None:
        keys, values = list(state["keys"]), torch.as_tensor(state["values"]).tolist()
        if len(keys) != len(values):
            raise ValueError(f"state has {len(keys)} keys but {len(values)} values")
        self.momentum = float(state["momentum"])
        self._values = dict(zip(keys, values))

    def subset(self, keys: Iterable[str]) -> "MomentumLossTracker":
        """A tracker with this one's momentum and only `keys` (unobserved keys are skipped)."""
        part = MomentumLossTracker(self.momentum)
        part._values = {k: self._values[k] for k in keys if k in self._values}
        return part

    @classmethod
    def merge(cls, states: Iterable[Mapping]) -> "MomentumLossTracker":
        """Gather shards' state dicts into one tracker; shards must be disjoint and share momentum."""
        merged: MomentumLossTracker | None = None
        for state in states:
            part = cls()
            part.load_state_dict(state)
            if merged is None:
                merged = part
                continue
            if part.momentum != merged.momentum:
                raise ValueError(f"cannot merge momentum {part.momentum} with {merged.momentum}")
            overlap = merged._values.keys() & part._values.keys()
            if overlap:
                raise ValueError(f"shards overlap on {len(overlap)} keys, e.g. {sorted(overlap)[0]!r}")
            merged._values.update(part._values)
        if merged is None:
            raise ValueError("merge needs at least one state")
        return merged


# --------------------------------------------------------------------------- per-sample RandAugment

_MAX_LEVEL = 30.0  # magnitudes live on RandAugment's usual 0..30 bin scale (torchvision: 31 bins)


def _shear(axis: int):
    def op(img: torch.Tensor, level: float, fill: list[float]) -> torch.Tensor:
        shear = [0.0, 0.0]
        shear[axis] = math.degrees(math.atan(0.3 * level))
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                         interpolation=TF.InterpolationMode.NEAREST, fill=fill, center=[0, 0])
    return op


def _translate(axis: int):
    def op(img: torch.Tensor, level: float, fill: list[float]) -> torch.Tensor:
        move = [0, 0]
        move[axis] = int(round(150.0 / 331.0 * img.shape[-1 - axis] * level))
        return TF.affine(img, angle=0.0, translate=move, scale=1.0, shear=[0.0, 0.0],
                         interpolation=TF.InterpolationMode.NEAREST, fill=fill)
    return op


# name -> (op(img, level, fill), signed). level = M / 30 in [0, 1], negated half the time when
# signed. Ranges at M = 30 follow torchvision's RandAugment (Cubuk et al. 2020) so that a
# magnitude means the same here as in the base RandAugment the sweeps also tune.
_OPS = {
    "identity": (lambda img, level, fill: img, False),
    "shear_x": (_shear(0), True),
    "shear_y": (_shear(1), True),
    "translate_x": (_translate(0), True),
    "translate_y": (_translate(1), True),
    "rotate": (lambda img, level, fill: TF.rotate(img, 30.0 * level, fill=fill), True),
    "brightness": (lambda img, level, fill: TF.adjust_brightness(img, 1.0 + 0.9 * level), True),
    "color": (lambda img, level, fill: TF.adjust_saturation(img, 1.0 + 0.9 * level), True),
    "contrast": (lambda img, level, fill: TF.adjust_contrast(img, 1.0 + 0.9 * level), True),
    "sharpness": (lambda img, level, fill: TF.adjust_sharpness(img, 1.0 + 0.9 * level), True),
    "posterize": (lambda img, level, fill: TF.posterize(img, int(8 - round(4 * level))), False),
    "solarize": (lambda img, level, fill: TF.solarize(img, 255.0 * (1.0 - level)), False),
    "autocontrast": (lambda img, level, fill: TF.autocontrast(img), False),
    "equalize": (lambda img, level, fill: TF.equalize(img), False),
}
RANDAUGMENT_OPS: tuple[str, ...] = tuple(_OPS)


class PerSampleRandAugment:
    """RandAugment (Cubuk et al. 2020) whose strength is set per image by a weight w in [0, 1] (ECVL).

    k operations are drawn uniformly (with replacement); each is applied with
    probability w at magnitude M = M_min + (M_max - M_min) * w on the 0..30 scale
    (continuous, not rounded to a bin). w = 0 leaves the image unchanged.
    Images are uint8 tensors (C, H, W); pass a seeded torch.Generator for reproducibility.
    `ops` restricts the operation list (default: all of RANDAUGMENT_OPS).
    """

    def __init__(self, num_ops: int = 2, magnitude_max: float = 10.0, magnitude_min: float = 0.0,
                 fill: float = 0.0, ops: Sequence[str] | None = None) -> None:
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        if not 0.0 <= magnitude_min <= magnitude_max <= _MAX_LEVEL:
            raise ValueError(f"need 0 <= magnitude_min <= magnitude_max <= {_MAX_LEVEL:g}, "
                             f"got {magnitude_min}, {magnitude_max}")
        self.num_ops, self.magnitude_max, self.magnitude_min, self.fill = (
            num_ops, magnitude_max, magnitude_min, fill)
        self.op_names = list(RANDAUGMENT_OPS if ops is None else ops)
        unknown = sorted(set(self.op_names) - set(_OPS))
        if unknown or not self.op_names:
            raise ValueError(f"unknown or no RandAugment ops {unknown}; valid: {', '.join(_OPS)}")

    def magnitude(self, weight: float) -> float:
        return self.magnitude_min + (self.magnitude_max - self.magnitude_min) * weight

    def __call__(self, image: torch.Tensor, weight: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if image.dtype != torch.uint8 or image.ndim != 3:
            raise ValueError(f"expected a uint8 (C, H, W) image, got {image.dtype} {tuple(image.shape)}")
        weight = float(weight)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"augmentation weight must be in [0, 1], got {weight}")
        level = self.magnitude(weight) / _MAX_LEVEL
        fill = [self.fill] * image.shape[0]
        for _ in range(self.num_ops):
            # Draw all randomness for every op, applied or not, so the stream of
            # random numbers does not depend on the weights.
            index = int(torch.randint(len(self.op_names), (1,), generator=generator))
            apply, flip = torch.rand(2, generator=generator).tolist()
            op, signed = _OPS[self.op_names[index]]
            if apply < weight:
                image = op(image, -level if signed and flip < 0.5 else level, fill)
        return image

    def augment_batch(self, images: torch.Tensor, weights: torch.Tensor | Sequence[float],
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a (B, C, H, W) uint8 batch, image b with weight weights[b]."""
        weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1).tolist()
        if len(weights) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(weights)} weights")
        return torch.stack([self(img, w, generator) for img, w in zip(images, weights)])
