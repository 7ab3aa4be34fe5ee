"""Backbones: every registered name runs forward and backward; ResNet-32 size; EfficientNet-Lite weights."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.models.backbones import (BACKBONES, build_backbone, efficientnet_lite,
                                       load_efficientnet_lite_weights)

# Smallest input each backbone handles sensibly; torchvision ImageNet models get 64x64.
INPUT = {"resnet32": (3, 32), "resnet_small": (1, 28), "resnet50": (3, 64),
         "resnext50_32x4d": (3, 64), "efficientnet_lite0": (3, 64), "efficientnet_lite2": (3, 64)}
NAMES = BACKBONES.names() + ["timm:test_resnet"]


def test_every_backbone_has_an_input_size():
    assert set(INPUT) == set(BACKBONES.names())


@pytest.mark.parametrize("name", NAMES)
def test_backbone_forward_backward(name):
    torch.manual_seed(0)
    chans, size = INPUT.get(name, (3, 32))
    model = build_backbone(name, in_chans=chans)
    x = torch.randn(2, chans, size, size, requires_grad=True)
    features = model(x)
    assert features.shape == (2, model.num_features)
    assert isinstance(model.num_features, int)
    features.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_resnet32_parameter_count():
    model = build_backbone("resnet32", in_chans=3)
    params = sum(p.numel() for p in model.parameters())
    # 0.46M as reported for CIFAR ResNet-32 (He et al. 2016, table 6); features 64-d.
    assert 0.455e6 < params < 0.47e6
    assert model.num_features == 64


def test_unknown_names_list_valid_ones():
    with pytest.raises(KeyError, match="resnet32"):
        build_backbone("resnet33", in_chans=3)
    with pytest.raises(KeyError, match="timm model"):
        build_backbone("timm:no_such_model_xyz", in_chans=3)


def test_cifar_resnets_refuse_pretrained():
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_backbone("resnet32", in_chans=3, pretrained=True)


def _chelsea(size: int) -> torch.Tensor:
    from skimage import data

    img = torch.from_numpy(np.ascontiguousarray(data.chelsea())).permute(2, 0, 1).float() / 255.0
    img = F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True)
    return (img - 0.5) / 0.5  # TF-style preprocessing of EfficientNet-Lite


@pytest.mark.parametrize("variant,size", [("lite0", 224), ("lite2", 260)])
def test_efficientnet_lite_classifies_chelsea_as_a_cat(variant, size):
    model = efficientnet_lite(variant, num_classes=1000, pretrained=True).eval()
    with torch.no_grad():
        probs = model(_chelsea(size)).softmax(dim=1)[0]
    assert 281 <= int(probs.argmax()) <= 285  # ImageNet's domestic-cat classes
    assert probs[281:286].sum() > 0.8


def test_efficientnet_lite_backbone_matches_full_model_features():
    full = efficientnet_lite("lite0", num_classes=1000, pretrained=True).eval()
    backbone = build_backbone("efficientnet_lite0", in_chans=3, pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(x), full.forward_head(full.forward_features(x), pre_logits=True))


def test_efficientnet_lite_grey_input_sums_first_conv():
    rgb = build_backbone("efficientnet_lite0", in_chans=3, pretrained=True).eval()
    grey = build_backbone("efficientnet_lite0", in_chans=1, pretrained=True).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():  # a grey image seen as R = G = B gives the same features
        assert torch.allclose(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-5)


def test_efficientnet_lite_mismatch_is_a_clear_error():
    import timm

    other = timm.create_model("tf_efficientnet_lite2", num_classes=0)
    with pytest.raises(ValueError, match="tensors"):
        load_efficientnet_lite_weights(other, "lite0")
    widened = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    widened.conv_head = torch.nn.Conv2d(320, 1000, 1, bias=False)
    with pytest.raises(ValueError, match=r"_conv_head.weight has shape \(1280, 320, 1, 1\)"):
        load_efficientnet_lite_weights(widened, "lite0")


def test_resnet_small_is_the_resnet_8_the_docs_name():
    """3x3 convolutions + the classifier count the depth: 1 stem + 2 per block x 3 stages + 1 = 8."""
    model = build_backbone("resnet_small", in_chans=1)
    depth = sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules()) + 1
    assert depth == 8
    root = Path(__file__).resolve().parents[1]
    backbone_line = next(line for line in (root / "params.yaml").read_text().splitlines() if "backbone:" in line)
    assert "ResNet-8 " in backbone_line and "ResNet-8 (`resnet_small`)" in (root / "README.md").read_text()
