"""Memorisation-driven augmentation: momentum loss, weight normalisation, sharding, RandAugment."""
import pytest
import torch

from pipeline.augment.memorisation import (RANDAUGMENT_OPS, LossStats, MomentumLossTracker,
                                          PerSampleRandAugment)


def test_first_observation_then_ema():
    tracker = MomentumLossTracker(momentum=0.97)
    tracker.update(["a", "b"], torch.tensor([2.0, 4.0]))
    assert tracker.value("a") == 2.0 and tracker.value("b") == 4.0
    tracker.update(["a"], [1.0])
    assert tracker.value("a") == pytest.approx(0.97 * 2.0 + 0.03 * 1.0)
    assert tracker.value("b") == 4.0
    tracker.update(["c", "c"], [1.0, 3.0])  # duplicates in one call are one observation
    assert tracker.value("c") == 2.0


def test_weights_in_unit_interval_with_mean_half():
    tracker = MomentumLossTracker()
    keys = [f"k{i}" for i in range(50)]
    tracker.update(keys, torch.rand(50, generator=torch.Generator().manual_seed(0)) ** 3)
    w = tracker.weights(keys)
    assert w.min() >= 0.0 and w.max() <= 1.0
    assert w.mean().item() == pytest.approx(0.5, abs=1e-12)
    assert min(w.min().item(), 1 - w.max().item()) == pytest.approx(0.0, abs=1e-12)  # an extreme hits 0 or 1
    # the literal formula of docs/methods.md
    m = torch.tensor([tracker.value(k) for k in keys], dtype=torch.float64)
    z = (m - m.mean()) / m.std(unbiased=False)
    assert torch.allclose(w, (z / z.abs().max()) / 2 + 0.5)


def test_constant_losses_give_half():
    tracker = MomentumLossTracker()
    tracker.update(["a", "b", "c"], [0.7, 0.7, 0.7])
    assert torch.equal(tracker.weights(["a", "b", "c"]), torch.full((3,), 0.5, dtype=torch.float64))


def test_state_round_trip(tmp_path):
    tracker = MomentumLossTracker(momentum=0.9)
    tracker.update(["a", "b"], [1.0, 2.0])
    path = tmp_path / "tracker.pt"
    torch.save(tracker.state_dict(), path)
    restored = MomentumLossTracker()
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert restored.momentum == 0.9 and restored.keys() == ["a", "b"]
    assert restored.value("b") == 2.0


def test_subset_merge_round_trip_and_global_weights():
    tracker = MomentumLossTracker()
    keys = [f"k{i}" for i in range(10)]
    tracker.update(keys, torch.arange(10.0))
    shards = [tracker.subset(keys[:4]), tracker.subset(keys[4:] + ["never-seen"])]
    assert len(shards[0]) == 4 and len(shards[1]) == 6
    merged = MomentumLossTracker.merge([s.state_dict() for s in shards])
    assert merged.state_dict()["keys"] == tracker.state_dict()["keys"]
    assert torch.equal(merged.state_dict()["values"], tracker.state_dict()["values"])
    stats = shards[0].stats().merge(shards[1].stats())
    assert stats == tracker.stats()
    assert torch.equal(shards[1].weights(keys[4:], stats=stats), tracker.weights(keys[4:]))
    with pytest.raises(ValueError, match="overlap"):
        MomentumLossTracker.merge([shards[0].state_dict(), shards[0].state_dict()])


def test_empty_stats_and_unseen_keys():
    assert LossStats().count == 0
    assert torch.equal(MomentumLossTracker().weights(["x"]), torch.tensor([0.5], dtype=torch.float64))


def _image(channels=3):
    # Not spanning 0..255, so that autocontrast has something to stretch.
    return torch.randint(40, 200, (channels, 24, 24), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def test_randaugment_weight_zero_leaves_image_unchanged():
    aug = PerSampleRandAugment(num_ops=4, magnitude_max=30.0, magnitude_min=5.0)
    img = _image()
    for seed in range(20):
        assert torch.equal(aug(img, 0.0, torch.Generator().manual_seed(seed)), img)


def test_randaugment_weight_one_changes_image_and_is_seeded():
    aug = PerSampleRandAugment(num_ops=3, magnitude_max=20.0)
    img = _image()
    outs = [aug(img, 1.0, torch.Generator().manual_seed(s)) for s in range(10)]
    assert any(not torch.equal(o, img) for o in outs)
    assert all(o.dtype == torch.uint8 and o.shape == img.shape for o in outs)
    again = aug(img, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(again, outs[0])


def test_randaugment_magnitude_and_every_op():
    aug = PerSampleRandAugment(num_ops=1, magnitude_max=20.0, magnitude_min=4.0)
    assert aug.magnitude(0.0) == 4.0 and aug.magnitude(1.0) == 20.0 and aug.magnitude(0.5) == 12.0
    changed = set()
    for name in RANDAUGMENT_OPS:
        single = PerSampleRandAugment(num_ops=1, magnitude_max=30.0, ops=[name])
        for channels in (1, 3):
            img = _image(channels)
            out = single(img, 1.0, torch.Generator().manual_seed(1))
            assert out.shape == img.shape and out.dtype == torch.uint8
            if not torch.equal(out, img):
                changed.add(name)
    # At full magnitude every op but identity alters a random image.
    assert changed == set(RANDAUGMENT_OPS) - {"identity"}
    with pytest.raises(ValueError, match="valid"):
        PerSampleRandAugment(ops=["warp"])


def test_randaugment_batch_and_validation():
    aug = PerSampleRandAugment(num_ops=2, magnitude_max=10.0)
    images = torch.stack([_image(), _image()])
    out = aug.augment_batch(images, torch.tensor([0.0, 1.0]), torch.Generator().manual_seed(0))
    assert out.shape == images.shape and torch.equal(out[0], images[0])
    with pytest.raises(ValueError, match="uint8"):
        aug(images[0].float(), 0.5)
    with pytest.raises(ValueError, match="weight"):
        aug(images[0], 1.5)
    with pytest.raises(ValueError, match="magnitude"):
        PerSampleRandAugment(magnitude_max=31.0)
