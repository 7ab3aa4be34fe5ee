"""Augmentation presets for training views, applied per sample to uint8 images (C, H, W).

A method names one preset per view it needs (e.g. BCL: basic for the classifier
view, strong for the two contrastive views). Normalisation to float happens
once, after augmentation, in `normalize`. Each preset has a batched twin
(`BATCHED_AUGMENTATIONS`, pipeline.augment.batched) that runs on the batch's
device: the GPU fast path (`stage1.batched_augment`).
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
from torchvision.transforms import v2

from pipeline.augment.batched import BatchedRandAugment, random_crop_flip
from pipeline.registry import Registry

Preset = Callable[[int], Callable[[torch.Tensor], torch.Tensor]]  # image_size -> per-image transform
AUGMENTATIONS: Registry[Preset] = Registry("augmentation")


def _crop_padding(image_size: int) -> int:
    return max(image_size // 8, 1)  # 4 pixels at 32x32, as in the CIFAR-LT recipes


@AUGMENTATIONS.register("none")
def no_augmentation(image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda image: image


@AUGMENTATIONS.register("basic")
def basic(image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random crop with 1/8 zero padding + horizontal flip (the CIFAR-LT standard)."""
    return v2.Compose([v2.RandomCrop(image_size, padding=_crop_padding(image_size)), v2.RandomHorizontalFlip()])


@AUGMENTATIONS.register("strong")
def strong(image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """basic + RandAugment (2 ops, magnitude 9), the contrastive views of BCL / JRCL."""
    return v2.Compose([v2.RandomCrop(image_size, padding=_crop_padding(image_size)), v2.RandomHorizontalFlip(),
                       v2.RandAugment(num_ops=2, magnitude=9)])


BatchedPreset = Callable[[int], Callable[[torch.Tensor], torch.Tensor]]  # image_size -> batch transform
BATCHED_AUGMENTATIONS: Registry[BatchedPreset] = Registry("batched augmentation")


@BATCHED_AUGMENTATIONS.register("none")
def no_augmentation_batched(image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda images: images


@BATCHED_AUGMENTATIONS.register("basic")
def basic_batched(image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """`basic` as batched tensor ops (same padding, crop and flip)."""
    return lambda images: random_crop_flip(images, _crop_padding(image_size))


@BATCHED_AUGMENTATIONS.register("strong")
def strong_batched(image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """`strong` as batched tensor ops: RandAugment(2, 9) is every op applied at the fixed magnitude 9."""
    randaugment = BatchedRandAugment(num_ops=2, magnitude_max=9.0, magnitude_min=9.0)
    return lambda images: randaugment(random_crop_flip(images, _crop_padding(image_size)))


def augment_views(images: torch.Tensor, presets: Sequence[str], image_size: int,
                  batched: bool = False) -> list[torch.Tensor]:
    """One augmented uint8 batch per preset; every image gets its own random draw. `batched`: one
    tensor op per batch on the batch's device, else per-image torchvision transforms."""
    if batched:
        return [BATCHED_AUGMENTATIONS.get(name)(image_size)(images) for name in presets]
    views = []
    for name in presets:
        transform = AUGMENTATIONS.get(name)(image_size)
        views.append(images if name == "none" else torch.stack([transform(image) for image in images]))
    return views


@functools.lru_cache(maxsize=16)
def _constants(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """mean and std as (1, C, 1, 1) tensors on `device`, made once (a copy to the GPU per step otherwise)."""
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1), torch.tensor(std, device=device).view(1, -1, 1, 1))


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C, H, W): scale to [0, 1], then (x - mean) / std per channel."""
    mean_t, std_t = _constants(tuple(mean), tuple(std), images.device)
    return (images.float() / 255.0 - mean_t) / std_t
