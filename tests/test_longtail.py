"""Split arithmetic (docs/methods.md): profiles, the CIFAR-LT selection rule, carve-out and groups."""
import numpy as np
import pytest

from pipeline.longtail.groups import assign_groups
from pipeline.longtail.profiles import carve_validation, exp_profile, select_longtail, step_profile, target_counts


@pytest.mark.parametrize("num_classes,n_max,rho,total", [
    (100, 500, 100, 10_847), (100, 500, 50, 12_608), (100, 500, 10, 19_573), (10, 5000, 100, 12_406),
])
def test_exp_profile_matches_published_cifar_lt_counts(num_classes, n_max, rho, total):
    counts = exp_profile(num_classes, n_max, rho)
    assert sum(counts) == total
    assert counts[0] == n_max and counts[-1] == int(n_max / rho)


def test_cifar100_lt_groups_are_35_35_30():
    groups = assign_groups(exp_profile(100, 500, 100), many_threshold=100, few_threshold=20)
    assert [groups.count(g) for g in ("many", "medium", "few")] == [35, 35, 30]


def test_group_boundaries_are_exact():
    assert assign_groups([101, 100, 20, 19], 100, 20) == ["many", "medium", "medium", "few"]


def test_step_profile_halves():
    assert step_profile(4, 100, 10) == [100, 100, 10, 10]
    assert step_profile(5, 100, 10) == [100, 100, 10, 10, 10]


def test_none_profile_passes_counts_through():
    assert target_counts("none", [7, 3, 1], None, 1.0) == [7, 3, 1]


def test_n_max_defaults_to_smallest_pool_and_rejects_too_large():
    assert target_counts("exp", [50, 40, 60], None, 4)[0] == 40
    with pytest.raises(ValueError, match="class 1 needs"):
        target_counts("exp", [500, 100, 500], 500, 2)


def test_select_longtail_follows_the_randomstate_rule():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=200)
    targets = [20, 10, 5, 2]
    kept = select_longtail(labels, targets, seed=7)
    # Independent re-statement of the rule: RandomState(seed), classes in order, shuffle, keep first n.
    reference = np.random.RandomState(7)
    expected = []
    for c, n in enumerate(targets):
        idx = [i for i in range(len(labels)) if labels[i] == c]
        idx = np.array(idx)
        reference.shuffle(idx)
        expected.extend(idx[:n].tolist())
    assert kept.tolist() == expected
    assert np.bincount(labels[kept]).tolist() == targets


def test_carve_validation_is_class_balanced_and_disjoint():
    labels = np.repeat(np.arange(3), [10, 6, 4])
    val, pool = carve_validation(labels, per_class=2, num_classes=3, seed=0)
    assert np.bincount(labels[val]).tolist() == [2, 2, 2]
    assert set(val).isdisjoint(pool) and len(val) + len(pool) == len(labels)
    empty_val, everything = carve_validation(labels, per_class=0, num_classes=3, seed=0)
    assert len(empty_val) == 0 and everything.tolist() == list(range(20))
    with pytest.raises(ValueError, match="class 2 has 4"):
        carve_validation(labels, per_class=4, num_classes=3, seed=0)
