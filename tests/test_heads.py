"""Heads: every registered head runs forward and backward; the formulas of docs/methods.md hold."""
import pytest
import torch
import torch.nn.functional as F

from pipeline.models.heads import (HEADS, BalancedAdapterHead, CosineHead, LWSHead, ProjectionMLP,
                                   TauNormHead, build_head, tau_normalize)

D, C, B = 16, 5, 4
# Heads that need more than (in_features, num_classes) get it here.
EXTRA = {"balanced_adapter": lambda: {"class_embeddings": torch.randn(C, D)}}


@pytest.mark.parametrize("name", HEADS.names())
def test_head_forward_backward(name):
    torch.manual_seed(0)
    head = build_head(name, in_features=D, num_classes=C, **EXTRA.get(name, dict)())
    x = torch.randn(B, D, requires_grad=True)
    logits = head(x)
    assert logits.shape == (B, C)
    assert head.weight.shape == (C, D)
    F.cross_entropy(logits, torch.arange(B) % C).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    trainable = [p for p in head.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)


def test_unknown_head_lists_valid_names():
    with pytest.raises(KeyError, match="cosine"):
        build_head("nope", in_features=D, num_classes=C)


def test_cosine_head_is_scaled_cosine():
    head = CosineHead(D, C, scale=30.0)
    x = torch.randn(B, D)
    expected = 30.0 * F.cosine_similarity(x[:, None, :], head.weight[None, :, :], dim=-1)
    assert torch.allclose(head(x), expected, atol=1e-5)
    assert head(x).abs().max() <= 30.0 + 1e-4


def test_tau_norm_t0_keeps_w_and_t1_gives_unit_rows():
    w = torch.randn(C, D) * torch.arange(1, C + 1)[:, None]
    assert torch.equal(tau_normalize(w, 0.0), w)
    assert torch.allclose(tau_normalize(w, 1.0).norm(dim=1), torch.ones(C))
    with pytest.raises(ValueError):
        tau_normalize(w, 2.5)


def test_tau_norm_head_from_linear_drops_bias():
    linear = torch.nn.Linear(D, C)
    head = TauNormHead.from_linear(linear, t=1.0)
    x = torch.randn(B, D)
    assert torch.allclose(head(x), x @ F.normalize(linear.weight, dim=1).t(), atol=1e-6)


def test_lws_scales_a_frozen_classifier():
    linear = torch.nn.Linear(D, C)
    head = LWSHead.from_linear(linear)
    x = torch.randn(B, D)
    assert torch.allclose(head(x), linear(x))  # scales start at 1
    with torch.no_grad():
        head.scales.copy_(torch.arange(1.0, C + 1))
    assert torch.allclose(head(x), linear(x) * torch.arange(1.0, C + 1))
    assert [n for n, p in head.named_parameters() if p.requires_grad] == ["scales"]


def test_balanced_adapter_alpha0_is_normalised_input():
    text = torch.randn(C, D)
    head = BalancedAdapterHead(D, C, class_embeddings=text, alpha=0.0, logit_scale=10.0)
    with torch.no_grad():  # the adapter's own weights must not matter at alpha = 0
        head.adapter.weight.normal_()
    x = torch.randn(B, D)
    assert torch.allclose(head.adapt(x), F.normalize(x, dim=1))
    assert torch.allclose(head(x), 10.0 * F.normalize(x, dim=1) @ F.normalize(text, dim=1).t(), atol=1e-5)


def test_balanced_adapter_mixes_adapter_and_feature():
    head = BalancedAdapterHead(D, C, class_embeddings=torch.randn(C, D), alpha=0.3)
    with torch.no_grad():
        head.adapter.weight.normal_()
        head.adapter.bias.normal_()
    x = torch.randn(B, D)
    mixed = 0.3 * (x @ head.adapter.weight.t() + head.adapter.bias) + 0.7 * x
    assert torch.allclose(head.adapt(x), F.normalize(mixed, dim=1), atol=1e-6)
    assert not head.weight.requires_grad  # class-text embeddings stay frozen
    with pytest.raises(ValueError, match="alpha"):
        BalancedAdapterHead(D, C, class_embeddings=torch.randn(C, D), alpha=1.5)


def test_projection_mlp_embeds_features_and_classifier_rows():
    proj, proto = ProjectionMLP(D, 8), ProjectionMLP(D, 8)
    views = proj(torch.randn(B, D))
    prototypes = proto(CosineHead(D, C).weight)
    assert views.shape == (B, 8) and prototypes.shape == (C, 8)
    assert torch.allclose(views.norm(dim=1), torch.ones(B), atol=1e-6)
    assert [type(m).__name__ for m in proj.net] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
