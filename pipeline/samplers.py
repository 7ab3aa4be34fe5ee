"""Re-balanced sampling (Kang et al. 2020, "Decoupling representation and classifier").

A sampler is a target class distribution p_c(epoch) over the training classes:
p_c = n_c^q / sum_k n_k^q with q = 1 (instance-balanced), q = 1/2 (square-root),
q = 0 (class-balanced), and progressive p(t) = (1 - t/T) p_IB + (t/T) p_CB.
Classes with n_c = 0 get p_c = 0 (they cannot be drawn).

Two ways to realise it:

- Index form (data in memory): ``sample_weights(labels)`` gives per-sample
  probabilities p_{y_i} / n_{y_i}; ``epoch_indices(labels, rng)`` draws an epoch
  of indices. When the target equals the training distribution, an epoch is a
  permutation (each sample exactly once); otherwise i.i.d. draws with replacement.
- Stream form (WebDataset, nothing in memory): ``stream(counts, rng)`` returns a
  pipeline stage that emits each sample of class c floor(r_c) or floor(r_c) + 1
  times, the +1 with probability frac(r_c); r_c < 1 drops a sample with
  probability 1 - r_c. With r_c = p_c / pi_c (pi_c = n_c / N the training prior)
  class c is emitted n_c r_c = N p_c times in expectation: the class frequencies
  equal p and the expected epoch length equals the dataset size N. Repeats are
  emitted back to back, so put the stage before the shuffle buffer.

``SAMPLERS`` maps params names to the classes; build with
``SAMPLERS.get(name)(**kwargs)`` (progressive needs ``total_epochs``).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from pipeline.registry import Registry

SAMPLERS: Registry[type["ClassSampler"]] = Registry("sampler")
Sample = Mapping[str, object]


def _as_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() == 0:
        raise ValueError("class counts must be a 1-d sequence of non-negative ints with a positive sum")
    return counts


def power_probabilities(counts: Sequence[int] | np.ndarray, q: float) -> np.ndarray:
    """p_c = n_c^q / sum_k n_k^q over the classes with n_c > 0 (Kang et al. 2020, eq. 1)."""
    counts = _as_counts(counts)
    present = counts > 0
    mass = np.zeros(len(counts), dtype=np.float64)
    mass[present] = counts[present].astype(np.float64) ** q  # masked: numpy has 0 ** 0 == 1
    return mass / mass.sum()


class ClassSampler:
    """Base class: subclasses define class_probabilities; the index and stream forms follow."""

    def class_probabilities(self, counts: Sequence[int] | np.ndarray, epoch: int = 0) -> np.ndarray:
        raise NotImplementedError

    def sample_weights(self, labels: Sequence[int] | np.ndarray, epoch: int = 0,
                       num_classes: int | None = None) -> np.ndarray:
        """Per-sample draw probabilities p_{y_i} / n_{y_i} (sum to 1)."""
        labels = np.asarray(labels, dtype=np.int64)
        counts = np.bincount(labels, minlength=num_classes or 0)
        return (self.class_probabilities(counts, epoch) / np.maximum(counts, 1))[labels]

    def epoch_indices(self, labels: Sequence[int] | np.ndarray, rng: np.random.Generator,
                      epoch: int = 0, num_samples: int | None = None) -> np.ndarray:
        """One epoch of dataset indices (length num_samples, default len(labels))."""
        weights = self.sample_weights(labels, epoch)
        n = len(weights)
        size = n if num_samples is None else num_samples
        if size == n and np.allclose(weights, 1.0 / n, rtol=1e-12, atol=0.0):
            return rng.permutation(n)
        return rng.choice(n, size=size, replace=True, p=weights)

    def repeat_factors(self, counts: Sequence[int] | np.ndarray, epoch: int = 0) -> np.ndarray:
        """r_c = p_c / pi_c: expected emissions per sample of class c (0 for empty classes)."""
        counts = _as_counts(counts)
        prior = counts / counts.sum()
        factors = np.zeros(len(counts), dtype=np.float64)
        present = counts > 0
        factors[present] = self.class_probabilities(counts, epoch)[present] / prior[present]
        return factors

    def stream(self, counts: Sequence[int] | np.ndarray, rng: np.random.Generator, epoch: int = 0,
               label_key: str = "cls") -> Callable[[Iterable[Sample]], Iterator[Sample]]:
        """A WebDataset pipeline stage re-balancing a sample stream (see ``repeat_stream``).

        Seed `rng` per (seed, epoch, worker rank), e.g. ``np.random.default_rng([seed, epoch, rank])``,
        so each worker's stream is reproducible and different from the others'.
        """
        factors = self.repeat_factors(counts, epoch)

        def stage(samples: Iterable[Sample]) -> Iterator[Sample]:
            return repeat_stream(samples, factors, rng, label_key=label_key)

        return stage


def repeat_stream(samples: Iterable[Sample], repeat_factors: Sequence[float] | np.ndarray,
                  rng: np.random.Generator, label_key: str = "cls") -> Iterator[Sample]:
    """Emit each sample floor(r) or floor(r) + 1 times (the +1 with probability frac(r)), r = r[label].

    The label under `label_key` may be an int or its text/bytes form (WebDataset's
    raw ``.cls``). Each emission is a shallow copy so downstream stages that
    modify a sample in place do not affect its repeats.
    """
    factors = np.asarray(repeat_factors, dtype=np.float64)
    for sample in samples:
        factor = factors[int(sample[label_key])]
        whole = int(factor)
        copies = whole + int(rng.random() < factor - whole)
        for _ in range(copies):
            yield dict(sample)


class _PowerSampler(ClassSampler):
    q: float

    def class_probabilities(self, counts, epoch=0):
        return power_probabilities(counts, self.q)


@SAMPLERS.register("instance_balanced")
class InstanceBalancedSampler(_PowerSampler):
    """Instance-balanced sampling, p_c proportional to n_c (q = 1; Kang et al. 2020)."""

    q = 1.0


@SAMPLERS.register("class_balanced")
class ClassBalancedSampler(_PowerSampler):
    """Class-balanced sampling, p_c = 1 / C (q = 0; Kang et al. 2020)."""

    q = 0.0


@SAMPLERS.register("square_root")
class SquareRootSampler(_PowerSampler):
    """Square-root sampling, p_c proportional to sqrt(n_c) (q = 1/2; Mahajan et al. 2018, Kang et al.)."""

    q = 0.5


@SAMPLERS.register("progressive")
class ProgressiveSampler(ClassSampler):
    """Progressively-balanced sampling p(t) = (1 - t/T) p_IB + (t/T) p_CB (Kang et al. 2020).

    t is the 0-based epoch index, allowed in [0, T]; a loop of T epochs thus
    ends at t = T - 1, as in the paper's t/T schedule.
    """

    def __init__(self, total_epochs: int) -> None:
        if total_epochs < 1:
            raise ValueError(f"progressive sampler total_epochs must be >= 1, got {total_epochs}")
        self.total_epochs = total_epochs

    def class_probabilities(self, counts, epoch=0):
        if not 0 <= epoch <= self.total_epochs:
            raise ValueError(f"epoch {epoch} outside [0, {self.total_epochs}] for the progressive sampler")
        mix = epoch / self.total_epochs
        return (1.0 - mix) * power_probabilities(counts, 1.0) + mix * power_probabilities(counts, 0.0)
