"""Augmentation as batched tensor ops: one call per batch, every image with its own random draw.

The per-image torchvision transforms of `pipeline.training.augment` cost one
Python-level call per image and op, which starves a GPU on small (CIFAR-sized)
images. These run the same operations on a whole (B, C, H, W) uint8 batch on
whatever device it lives on (the GPU fast path), with per-sample parameters:

- ``crop_flip`` / ``random_crop_flip``: zero-padded random crop + horizontal
  flip, pixel-identical to ``v2.RandomCrop(size, padding)`` + ``v2.RandomHorizontalFlip``
  at the same offsets and flips.
- ``BatchedRandAugment``: the RandAugment operations of
  ``pipeline.augment.memorisation`` (same op list, same magnitude scale and
  ranges), with a per-image weight w in [0, 1] setting both the probability of
  each op and its magnitude, as ``PerSampleRandAugment`` does. Geometric ops use
  torchvision's affine grid convention (nearest, fill 0), colour ops its blend
  formulas, so an image matches the per-image op at the same level.

Random numbers come from the given torch.Generator (or the default one of the
batch's device): the same seed gives the same augmented batch.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from pipeline.augment.memorisation import _MAX_LEVEL, RANDAUGMENT_OPS


def _check_batch(images: Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 (B, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")


# ----------------------------------------------------------------------------- crop and flip

def crop_flip(images: Tensor, tops: Tensor, lefts: Tensor, flips: Tensor, padding: int) -> Tensor:
    """Image b: zero-pad by `padding`, crop H x W at (tops[b], lefts[b]) of the padded image, then
    mirror horizontally where flips[b]. Offsets lie in [0, 2 * padding]."""
    _check_batch(images)
    batch, channels, height, width = images.shape
    if bool(((tops < 0) | (tops > 2 * padding) | (lefts < 0) | (lefts > 2 * padding)).any()):
        raise ValueError(f"crop offsets must lie in [0, {2 * padding}]")
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = tops.view(-1, 1) + torch.arange(height, device=images.device)  # (B, H)
    cols = lefts.view(-1, 1) + torch.arange(width, device=images.device)  # (B, W)
    cols = torch.where(flips.view(-1, 1), cols.flip(1), cols)
    index_b = torch.arange(batch, device=images.device).view(-1, 1, 1, 1)
    index_c = torch.arange(channels, device=images.device).view(1, -1, 1, 1)
    return padded[index_b, index_c, rows.view(batch, 1, height, 1), cols.view(batch, 1, 1, width)]


def random_crop_flip(images: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Random crop with zero padding + horizontal flip (p = 0.5), drawn independently per image."""
    batch, device = images.shape[0], images.device
    tops = torch.randint(2 * padding + 1, (batch,), generator=generator, device=device)
    lefts = torch.randint(2 * padding + 1, (batch,), generator=generator, device=device)
    flips = torch.rand(batch, generator=generator, device=device) < 0.5
    return crop_flip(images, tops, lefts, flips, padding)


# ----------------------------------------------------------------------------- RandAugment ops

def _affine(images: Tensor, angle: Tensor, shear: tuple[Tensor, Tensor], translate: tuple[Tensor, Tensor],
            corner_centre: bool) -> Tensor:
    """torchvision's affine (nearest, fill 0) with per-image angle / shear in degrees and translation in
    pixels; the centre is the image centre, or the top-left corner when `corner_centre`."""
    batch, _, height, width = images.shape
    rot, sx, sy = (torch.deg2rad(v.double()) for v in (angle, *shear))
    cx, cy = (-width * 0.5, -height * 0.5) if corner_centre else (0.0, 0.0)
    tx, ty = (t.double() for t in translate)
    # The inverse matrix of torchvision's _get_inverse_affine_matrix (scale 1), per image.
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -(a * torch.tan(sx) + torch.sin(rot))
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = torch.cos(rot) - c * torch.tan(sx)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = cx - m0 * (cx + tx) - m1 * (cy + ty)
    m5 = cy - m3 * (cx + tx) - m4 * (cy + ty)
    theta = torch.stack([m0, m1, m2, m3, m4, m5], 1).float().view(batch, 2, 3)
    # torchvision's _affine_grid: pixel-centred base grid, theta applied, then normalised by size / 2.
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=images.device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=images.device)
    base = torch.stack([xs.expand(height, width), ys.view(-1, 1).expand(height, width),
                        torch.ones(height, width, device=images.device)], -1).view(1, height * width, 3)
    scale = torch.tensor([0.5 * width, 0.5 * height], device=images.device)
    grid = base.expand(batch, -1, -1).bmm(theta.transpose(1, 2) / scale).view(batch, height, width, 2)
    out = F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.round_().to(torch.uint8)


def _blend(images: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's _blend (ratio * a + (1 - ratio) * b, clamped, truncated to uint8) with a per-image ratio."""
    keep, mix = ratio.float().view(-1, 1, 1, 1), (1.0 - ratio).float().view(-1, 1, 1, 1)
    return images.mul(keep).add_(other * mix).clamp_(0, 255).to(torch.uint8)


def _grey(images: Tensor) -> Tensor:
    if images.shape[1] == 1:
        return images.float()
    return TF.rgb_to_grayscale(images.float(), num_output_channels=1).floor_()


def _sharpen(images: Tensor, factor: Tensor) -> Tensor:
    channels, height, width = images.shape[1:]
    if height <= 2 or width <= 2:
        return images
    kernel = torch.full((3, 3), 1.0 / 13.0, device=images.device)
    kernel[1, 1] = 5.0 / 13.0
    out = images.float()
    blurred = F.conv2d(out, kernel.expand(channels, 1, 3, 3), groups=channels).round_()
    inner = out[..., 1:-1, 1:-1]
    inner.add_((blurred - inner) * (1.0 - factor).float().view(-1, 1, 1, 1))
    return out.clamp_(0, 255).to(torch.uint8)


def _posterize(images: Tensor, bits: Tensor) -> Tensor:
    masks = ((1 << bits) - 1) << (8 - bits)
    return images & masks.to(torch.uint8).view(-1, 1, 1, 1)


def _per_op(name: str, images: Tensor, level: Tensor) -> Tensor:
    """Op `name` on images[b] at signed level[b] (M / 30, float64 as the per-image op's Python floats),
    the formulas of memorisation._OPS."""
    height, width = images.shape[-2:]
    zero = torch.zeros_like(level)
    if name == "identity":
        return images
    if name in ("shear_x", "shear_y"):
        shear = torch.rad2deg(torch.atan(0.3 * level))
        pair = (shear, zero) if name == "shear_x" else (zero, shear)
        return _affine(images, zero, pair, (zero, zero), corner_centre=True)
    if name in ("translate_x", "translate_y"):
        # Python's round() (half to even), as the per-image op uses; torch.round does the same.
        size = width if name == "translate_x" else height
        move = torch.round(150.0 / 331.0 * size * level)
        pair = (move, zero) if name == "translate_x" else (zero, move)
        return _affine(images, zero, (zero, zero), pair, corner_centre=False)
    if name == "rotate":  # TF.rotate turns counter-clockwise: the affine angle is negated
        return _affine(images, -30.0 * level, (zero, zero), (zero, zero), corner_centre=False)
    if name == "brightness":
        return images.mul((1.0 + 0.9 * level).float().view(-1, 1, 1, 1)).clamp_(0, 255).to(torch.uint8)
    if name == "color":
        if images.shape[1] == 1:
            return images
        return _blend(images, _grey(images), 1.0 + 0.9 * level)
    if name == "contrast":
        return _blend(images, _grey(images).mean(dim=(-3, -2, -1), keepdim=True), 1.0 + 0.9 * level)
    if name == "sharpness":
        return _sharpen(images, 1.0 + 0.9 * level)
    if name == "posterize":
        return _posterize(images, (8 - torch.round(4 * level)).long())
    if name == "solarize":
        threshold = (255.0 * (1.0 - level)).float().view(-1, 1, 1, 1)  # torchvision compares in float32
        return torch.where(images >= threshold, 255 - images, images)
    if name == "autocontrast":
        return TF.autocontrast(images)
    if name == "equalize":
        return TF.equalize(images)
    raise ValueError(f"unknown RandAugment op {name!r}; valid: {', '.join(RANDAUGMENT_OPS)}")


_SIGNED = {"shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color", "contrast",
           "sharpness"}


def apply_op(name: str, images: Tensor, levels: Tensor) -> Tensor:
    """One RandAugment op on a uint8 batch, image b at signed level levels[b] in [-1, 1] (M / 30)."""
    _check_batch(images)
    if name not in RANDAUGMENT_OPS:
        raise ValueError(f"unknown RandAugment op {name!r}; valid: {', '.join(RANDAUGMENT_OPS)}")
    return _per_op(name, images, levels.to(images.device, torch.float64))


class BatchedRandAugment:
    """RandAugment on a batch with a per-image weight w in [0, 1] (as PerSampleRandAugment, batched).

    For each of `num_ops` rounds every image draws an op uniformly, applies it
    with probability w at magnitude M = M_min + (M_max - M_min) * w (0..30
    scale), negated half the time for signed ops. w = 1 with M_min = M_max = M
    is torchvision's RandAugment(num_ops, M) (always applied, fixed magnitude).
    """

    def __init__(self, num_ops: int = 2, magnitude_max: float = 10.0, magnitude_min: float = 0.0,
                 ops: Sequence[str] | None = None) -> None:
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        if not 0.0 <= magnitude_min <= magnitude_max <= _MAX_LEVEL:
            raise ValueError(f"need 0 <= magnitude_min <= magnitude_max <= {_MAX_LEVEL:g}, "
                             f"got {magnitude_min}, {magnitude_max}")
        self.num_ops, self.magnitude_max, self.magnitude_min = num_ops, magnitude_max, magnitude_min
        self.op_names = list(RANDAUGMENT_OPS if ops is None else ops)
        unknown = sorted(set(self.op_names) - set(RANDAUGMENT_OPS))
        if unknown or not self.op_names:
            raise ValueError(f"unknown or no RandAugment ops {unknown}; valid: {', '.join(RANDAUGMENT_OPS)}")

    def __call__(self, images: Tensor, weights: Tensor | float = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
        _check_batch(images)
        batch, device = images.shape[0], images.device
        weights = torch.as_tensor(weights, dtype=torch.float64, device=device).expand(batch).contiguous()
        if bool(((weights < 0) | (weights > 1)).any()):
            raise ValueError("augmentation weights must be in [0, 1]")
        level = (self.magnitude_min + (self.magnitude_max - self.magnitude_min) * weights) / _MAX_LEVEL
        out = images.clone()
        for _ in range(self.num_ops):
            choice = torch.randint(len(self.op_names), (batch,), generator=generator, device=device)
            apply = torch.rand(batch, generator=generator, device=device) < weights
            negate = torch.rand(batch, generator=generator, device=device) < 0.5
            for index, name in enumerate(self.op_names):
                rows = torch.nonzero(apply & (choice == index)).flatten()
                if rows.numel() == 0 or name == "identity":
                    continue
                chosen = level[rows]
                if name in _SIGNED:
                    chosen = torch.where(negate[rows], -chosen, chosen)
                out[rows] = _per_op(name, out[rows], chosen)
        return out

