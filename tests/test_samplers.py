"""Samplers: target class frequencies in index and stream form; progressive end points."""
import numpy as np
import pytest

from pipeline.samplers import (SAMPLERS, ClassBalancedSampler, InstanceBalancedSampler,
                               ProgressiveSampler, SquareRootSampler, repeat_stream)

COUNTS = np.array([500, 200, 50, 10, 0, 3])  # long-tailed, with an empty class
LABELS = np.repeat(np.arange(len(COUNTS)), COUNTS)
N = int(COUNTS.sum())
PRESENT = COUNTS > 0
# Targets written out independently of the implementation.
TARGETS = {
    "class_balanced": PRESENT / PRESENT.sum(),
    "square_root": np.sqrt(COUNTS) / np.sqrt(COUNTS).sum(),
    "instance_balanced": COUNTS / N,
}
# Frequencies from >= 40k draws: one binomial std is <= 0.0025, so 0.01 is 4 sigma.
TOL = 0.01


def _freq(labels):
    return np.bincount(labels, minlength=len(COUNTS)) / len(labels)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_index_form_matches_target(name):
    sampler = SAMPLERS.get(name)()
    rng = np.random.default_rng(0)
    weights = sampler.sample_weights(LABELS)
    assert weights.sum() == pytest.approx(1.0)
    assert np.allclose(np.bincount(LABELS, weights, minlength=len(COUNTS)), TARGETS[name])
    draws = np.concatenate([sampler.epoch_indices(LABELS, rng) for _ in range(60)])
    assert len(draws) == 60 * N
    assert np.abs(_freq(LABELS[draws]) - TARGETS[name]).max() < TOL


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_stream_form_matches_target(name):
    sampler = SAMPLERS.get(name)()
    rng = np.random.default_rng(1)
    samples = [{"__key__": f"s{i:05d}", "cls": int(y)} for i, y in enumerate(LABELS)]
    emitted, lengths = [], []
    for epoch in range(60):
        out = [s["cls"] for s in sampler.stream(COUNTS, rng, epoch=epoch)(iter(samples))]
        emitted.extend(out)
        lengths.append(len(out))
    assert np.abs(_freq(np.array(emitted)) - TARGETS[name]).max() < TOL
    assert np.mean(lengths) == pytest.approx(N, rel=0.01)  # expected epoch length = dataset size


def test_repeat_factors_normalisation():
    factors = ClassBalancedSampler().repeat_factors(COUNTS)
    assert (COUNTS * factors).sum() == pytest.approx(N)
    assert factors[4] == 0.0
    assert factors[0] < 1.0 < factors[3]  # head samples dropped, tail samples repeated


def test_repeat_stream_floor_and_frac():
    rng = np.random.default_rng(0)
    samples = [{"cls": b"0"}] * 10_000  # raw WebDataset .cls bytes are accepted
    copies = [sum(1 for _ in repeat_stream([s], [2.25], rng)) for s in samples]
    assert set(copies) == {2, 3}
    assert np.mean(copies) == pytest.approx(2.25, abs=0.02)
    dropped = sum(1 for _ in repeat_stream(samples, [0.3], rng, label_key="cls"))
    assert dropped / len(samples) == pytest.approx(0.3, abs=0.02)


def test_repeats_are_copies():
    sample = {"cls": 0, "x": 1}
    out = list(repeat_stream([sample], [3.0], np.random.default_rng(0)))
    out[0]["x"] = 99
    assert [s["x"] for s in out[1:]] == [1, 1] and sample["x"] == 1


def test_progressive_end_points():
    sampler = ProgressiveSampler(total_epochs=10)
    assert np.allclose(sampler.class_probabilities(COUNTS, 0),
                       InstanceBalancedSampler().class_probabilities(COUNTS))
    assert np.allclose(sampler.class_probabilities(COUNTS, 10),
                       ClassBalancedSampler().class_probabilities(COUNTS))
    middle = sampler.class_probabilities(COUNTS, 5)
    assert np.allclose(middle, 0.5 * (TARGETS["instance_balanced"] + TARGETS["class_balanced"]))
    # Same seed, t = 0: the same epoch as instance-balanced (a permutation).
    a = sampler.epoch_indices(LABELS, np.random.default_rng(3), epoch=0)
    b = InstanceBalancedSampler().epoch_indices(LABELS, np.random.default_rng(3))
    assert np.array_equal(a, b) and np.array_equal(np.sort(a), np.arange(N))
    with pytest.raises(ValueError):
        sampler.class_probabilities(COUNTS, 11)


def test_square_root_between_instance_and_class_balanced():
    p = SquareRootSampler().class_probabilities(COUNTS)
    assert TARGETS["class_balanced"][0] < p[0] < TARGETS["instance_balanced"][0]


def test_seeded_epochs_are_reproducible():
    s = ClassBalancedSampler()
    a = s.epoch_indices(LABELS, np.random.default_rng(7))
    b = s.epoch_indices(LABELS, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_registry_names():
    assert SAMPLERS.names() == ["class_balanced", "instance_balanced", "progressive", "square_root"]
    with pytest.raises(KeyError, match="square_root"):
        SAMPLERS.get("sqrt")
