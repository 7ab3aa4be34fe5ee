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
    mirror horizontally where flips[b]. Offsets lie in [0, 2 * padding] (checked: one host sync)."""
    _check_batch(images)
    if bool(((tops < 0) | (tops > 2 * padding) | (lefts < 0) | (lefts > 2 * padding)).any()):
        raise ValueError(f"crop offsets must lie in [0, {2 * padding}]")
    return _crop_flip(images, tops, lefts, flips, padding)


def _crop_flip(images: Tensor, tops: Tensor, lefts: Tensor, flips: Tensor, padding: int) -> Tensor:
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = tops.view(-1, 1) + torch.arange(height, device=images.device)  # (B, H)
    cols = lefts.view(-1, 1) + torch.arange(width, device=images.device)  # (B, W)
    cols = torch.where(flips.view(-1, 1), cols.flip(1), cols)
    index_b = torch.arange(batch, device=images.device).view(-1, 1, 1, 1)
    index_c = torch.arange(channels, device=images.device).view(1, -1, 1, 1)
    return padded[index_b, index_c, rows.view(batch, 1, height, 1), cols.view(batch, 1, 1, width)]


def random_crop_flip(images: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Random crop with zero padding + horizontal flip (p = 0.5), drawn independently per image."""
    _check_batch(images)
    batch, device = images.shape[0], images.device
    tops = torch.randint(2 * padding + 1, (batch,), generator=generator, device=device)
    lefts = torch.randint(2 * padding + 1, (batch,), generator=generator, device=device)
    flips = torch.rand(batch, generator=generator, device=device) < 0.5
    return _crop_flip(images, tops, lefts, flips, padding)  # offsets drawn in range: no check, no sync


# ----------------------------------------------------------------------------- RandAugment ops

def _affine(images: Tensor, angle: Tensor, shear: tuple[Tensor, Tensor], translate: tuple[Tensor, Tensor],
            corner_centre: Tensor) -> Tensor:
    """torchvision's affine (nearest, fill 0) with per-image angle / shear in degrees and translation in
    pixels; the centre is the image centre, or the top-left corner where `corner_centre`."""
    batch, _, height, width = images.shape
    rot, sx, sy = (torch.deg2rad(v) for v in (angle, *shear))
    cx = torch.where(corner_centre, -width * 0.5, 0.0)
    cy = torch.where(corner_centre, -height * 0.5, 0.0)
    tx, ty = translate
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


def _per_image(values: Tensor) -> Tensor:
    return values.float().view(-1, 1, 1, 1)


def _blend(images: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's _blend (ratio * a + (1 - ratio) * b, clamped, truncated to uint8) with a per-image ratio."""
    return images.mul(_per_image(ratio)).add_(other * _per_image(1.0 - ratio)).clamp_(0, 255).to(torch.uint8)


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
    inner.add_((blurred - inner) * _per_image(1.0 - factor))
    return out.clamp_(0, 255).to(torch.uint8)


def _posterize(images: Tensor, bits: Tensor) -> Tensor:
    masks = ((1 << bits) - 1) << (8 - bits)
    return images & masks.to(torch.uint8).view(-1, 1, 1, 1)


def _autocontrast(images: Tensor) -> Tensor:
    """TF.autocontrast's formula with torch.where for flat images (its masked assignment syncs on CUDA)."""
    image = images.float()
    low = image.amin(dim=(-2, -1), keepdim=True)
    high = image.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    low = torch.where(flat, 0.0, low)
    inv_scale = torch.where(flat, 1.0, (high - low) * (1.0 / 255.0))
    return image.sub_(low).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


_OP_INDEX = {name: index for index, name in enumerate(RANDAUGMENT_OPS)}
_SIGNED = {"shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color", "contrast",
           "sharpness"}
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")


def _apply_ops(images: Tensor, ops: Tensor, level: Tensor) -> Tensor:
    """Image b through op RANDAUGMENT_OPS[ops[b]] at signed level level[b] (M / 30), the formulas of
    memorisation._OPS. Every op family runs on the whole batch and each image keeps its own op's
    result (torch.where): a fixed number of kernels whatever the batch and the draws, no host sync.
    Pixel math and the colour ops' per-image factors are float32 (torchvision's Python floats become
    float32 in its kernels too)."""
    height, width = images.shape[-2:]
    is_op = {name: ops == index for name, index in _OP_INDEX.items()}
    # The five geometric ops are one affine warp with per-image angle, shear and translation. Its six
    # matrix entries per image are float64, as torchvision computes them in Python floats: nearest
    # sampling flips a pixel on a one-ulp difference. B x 6 numbers, not pixel math.
    angle = level.double()
    zero = torch.zeros_like(angle)
    shear = torch.rad2deg(torch.atan(0.3 * angle))
    # Python's round() (half to even), as the per-image op uses; torch.round does the same.
    geometric = _affine(
        images,
        torch.where(is_op["rotate"], -30.0 * angle, zero),  # TF.rotate turns counter-clockwise
        (torch.where(is_op["shear_x"], shear, zero), torch.where(is_op["shear_y"], shear, zero)),
        (torch.where(is_op["translate_x"], torch.round(150.0 / 331.0 * width * angle), zero),
         torch.where(is_op["translate_y"], torch.round(150.0 / 331.0 * height * angle), zero)),
        corner_centre=is_op["shear_x"] | is_op["shear_y"])
    level = level.float()
    factor = 1.0 + 0.9 * level
    grey = _grey(images)
    candidates = {
        "geometric": geometric,
        "brightness": images.mul(_per_image(factor)).clamp_(0, 255).to(torch.uint8),
        "color": images if images.shape[1] == 1 else _blend(images, grey, factor),
        "contrast": _blend(images, grey.mean(dim=(-3, -2, -1), keepdim=True), factor),
        "sharpness": _sharpen(images, factor),
        "posterize": _posterize(images, (8 - torch.round(4 * level)).long()),
        # torchvision compares in float32
        "solarize": torch.where(images >= _per_image(255.0 * (1.0 - level)), 255 - images, images),
        "autocontrast": _autocontrast(images),
        "equalize": TF.equalize(images),
    }
    chosen = {"geometric": torch.stack([is_op[name] for name in _GEOMETRIC]).any(0)}
    out = images
    for family, result in candidates.items():
        out = torch.where(chosen.get(family, is_op.get(family)).view(-1, 1, 1, 1), result, out)
    return out


def apply_op(name: str, images: Tensor, levels: Tensor) -> Tensor:
    """One RandAugment op on a uint8 batch, image b at signed level levels[b] in [-1, 1] (M / 30)."""
    _check_batch(images)
    if name not in RANDAUGMENT_OPS:
        raise ValueError(f"unknown RandAugment op {name!r}; valid: {', '.join(RANDAUGMENT_OPS)}")
    ops = torch.full((images.shape[0],), _OP_INDEX[name], device=images.device)
    return _apply_ops(images, ops, levels.to(images.device))


class BatchedRandAugment:
    """RandAugment on a batch with a per-image weight w in [0, 1] (as PerSampleRandAugment, batched).

    For each of `num_ops` rounds every image draws an op uniformly, applies it
    with probability w at magnitude M = M_min + (M_max - M_min) * w (0..30
    scale), negated half the time for signed ops. w = 1 with M_min = M_max = M
    is torchvision's RandAugment(num_ops, M) (always applied, fixed magnitude).
    A round is one pass of ``_apply_ops`` over the whole batch: no host sync.
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
        self._op_ids = torch.tensor([_OP_INDEX[name] for name in self.op_names])
        self._signed = torch.tensor([name in _SIGNED for name in RANDAUGMENT_OPS])

    def __call__(self, images: Tensor, weights: Tensor | float = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
        _check_batch(images)
        batch, device = images.shape[0], images.device
        weights = torch.as_tensor(weights, dtype=torch.float32)
        if weights.device.type == "cpu" and bool(((weights < 0) | (weights > 1)).any()):  # no sync on the host
            raise ValueError("augmentation weights must be in [0, 1]")
        weights = weights.to(device).expand(batch)
        level = (self.magnitude_min + (self.magnitude_max - self.magnitude_min) * weights) / _MAX_LEVEL
        op_ids, signed = self._op_ids.to(device), self._signed.to(device)
        identity = _OP_INDEX["identity"]
        out = images
        for _ in range(self.num_ops):
            choice = torch.randint(len(self.op_names), (batch,), generator=generator, device=device)
            apply = torch.rand(batch, generator=generator, device=device) < weights
            negate = torch.rand(batch, generator=generator, device=device) < 0.5
            ops = torch.where(apply, op_ids[choice], identity)
            out = _apply_ops(out, ops, torch.where(negate & signed[ops], -level, level))
        return out
