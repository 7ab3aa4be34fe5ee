"""The batched (GPU fast path) augmentation against the per-image torchvision ops it replaces, on CPU."""
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from pipeline.augment.batched import _SIGNED, BatchedRandAugment, apply_op, crop_flip, random_crop_flip
from pipeline.augment.memorisation import _OPS, RANDAUGMENT_OPS
from pipeline.training.augment import augment_views


def _images(channels: int, n: int = 31, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=generator, dtype=torch.uint8)


def test_crop_flip_equals_pad_crop_flip_per_image():
    images = _images(3, n=9)
    tops = torch.tensor([0, 1, 2, 3, 4, 8, 0, 8, 5])
    lefts = torch.tensor([8, 0, 3, 4, 2, 8, 0, 0, 7])
    flips = torch.tensor([True, False, True, False, True, True, False, False, True])
    out = crop_flip(images, tops, lefts, flips, padding=4)
    for b in range(9):
        expected = TF.crop(TF.pad(images[b], [4]), int(tops[b]), int(lefts[b]), 32, 32)
        if flips[b]:
            expected = TF.horizontal_flip(expected)
        assert torch.equal(out[b], expected)
    with pytest.raises(ValueError, match=r"\[0, 8\]"):
        crop_flip(images, tops + 1, lefts, flips, padding=4)


def test_random_crop_flip_is_seeded_and_draws_per_image():
    images = _images(1, n=64)
    first = random_crop_flip(images, 4, torch.Generator().manual_seed(3))
    again = random_crop_flip(images, 4, torch.Generator().manual_seed(3))
    other = random_crop_flip(images, 4, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    # A constant image shows its crop offset through the zero border: the draws differ across the batch.
    ones = torch.full((64, 1, 8, 8), 255, dtype=torch.uint8)
    zeros_per_image = (random_crop_flip(ones, 1, torch.Generator().manual_seed(0)) == 0).sum((1, 2, 3))
    assert len(set(zeros_per_image.tolist())) > 1 and (zeros_per_image == 0).any()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", RANDAUGMENT_OPS)
def test_each_op_matches_the_per_image_op_at_each_images_own_level(name, channels):
    images = _images(channels)
    low = -1.0 if name in _SIGNED else 0.0
    levels = torch.linspace(low, 1.0, len(images), dtype=torch.float64)
    out = apply_op(name, images, levels)
    op, _ = _OPS[name]
    expected = torch.stack([op(image, float(level), [0.0] * channels) for image, level in zip(images, levels)])
    difference = (out.int() - expected.int()).abs()
    if name in ("color", "contrast", "sharpness", "brightness"):
        # Blends in float32: fused multiply-add in the vectorised kernels may round one level apart.
        assert int(difference.max()) <= 1 and float((difference > 0).float().mean()) < 0.01
    else:
        assert torch.equal(out, expected)


def test_weights_set_probability_and_magnitude_per_image():
    images = _images(3, n=256)
    augment = BatchedRandAugment(num_ops=2, magnitude_max=30.0, ops=["brightness"])
    weights = torch.tensor([0.0, 1.0]).repeat(128)
    out = augment(images, weights, torch.Generator().manual_seed(0))
    assert torch.equal(out[0::2], images[0::2])  # w = 0: never applied
    changed = (out[1::2] != images[1::2]).flatten(1).any(1)
    assert bool(changed.all())  # w = 1, M = 30: brightness x0.1 or x1.9 always changes a random image
    again = augment(images, weights, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        augment(images, 1.5)


def test_batched_presets_keep_shape_and_dtype_and_follow_the_seed():
    images = _images(3, n=16)
    torch.manual_seed(0)
    views = augment_views(images, ("none", "basic", "strong"), 32, batched=True)
    torch.manual_seed(0)
    again = augment_views(images, ("none", "basic", "strong"), 32, batched=True)
    assert torch.equal(views[0], images)
    for view, repeat in zip(views, again):
        assert view.shape == images.shape and view.dtype == torch.uint8 and torch.equal(view, repeat)
    assert not torch.equal(views[1], views[2])


def _op_count(augment, batch: int) -> int:
    images = _images(3, n=batch)
    weights = torch.rand(batch, generator=torch.Generator().manual_seed(batch))
    generator = torch.Generator().manual_seed(0)
    augment(images, weights, generator)  # warm-up: lazy initialisation is not part of a call
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        augment(images, weights, generator)
    # Operators called from Python (top level): what runs inside one (e.g. a CPU convolution's choice of
    # algorithm by size) is the backend's business.
    return len([event for event in profile.events() if event.name.startswith("aten::") and event.cpu_parent is None])


@pytest.mark.parametrize("preset", ["strong", "memorisation"])
def test_one_call_launches_the_same_ops_for_batch_16_and_1024(preset):
    """No per-op Python branching on the draws and no per-image loop: the operator count of one call
    is a constant of the preset (a host sync or a data-dependent branch would change it)."""
    if preset == "strong":  # crop + flip + RandAugment(2, 9), the contrastive views of BCL
        randaugment = BatchedRandAugment(num_ops=2, magnitude_max=9.0, magnitude_min=9.0)

        def augment(images, weights, generator):
            return randaugment(random_crop_flip(images, 4, generator), 1.0, generator)
    else:  # the memorisation-weighted RandAugment of balanced_adapter: per-image weights
        augment = BatchedRandAugment(num_ops=2, magnitude_max=10.0)
    assert _op_count(augment, 16) == _op_count(augment, 1024)


def test_weights_outside_the_unit_interval_are_refused_per_image():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BatchedRandAugment()(_images(1, n=2), torch.tensor([0.5, 1.5]))
