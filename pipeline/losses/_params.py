"""Constructor checks shared by the losses: a bad value raises ConfigError naming the parameter."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from pipeline.config import ConfigError, require


def class_counts_tensor(class_counts: Sequence[int], name: str = "class_counts") -> Tensor:
    """Training images per class as a float64 1-D tensor; every count must be a positive integer
    (log n_c and n_c ** (-1/4) are undefined for an empty class)."""
    try:
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: expected a sequence of integers, got {class_counts!r}") from exc
    require(counts.dim() == 1 and counts.numel() > 0, name, "expected a non-empty 1-D sequence")
    require(bool(torch.all(counts == counts.round())), name, "counts must be integers")
    require(bool(torch.all(counts > 0)), name, "every class needs at least one training image")
    return counts


def finite(value: float, name: str) -> float:
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            name, f"expected a finite number, got {value!r}")
    return float(value)


def positive(value: float, name: str) -> float:
    require(finite(value, name) > 0, name, f"must be > 0, got {value!r}")
    return float(value)


def non_negative(value: float, name: str) -> float:
    require(finite(value, name) >= 0, name, f"must be >= 0, got {value!r}")
    return float(value)
