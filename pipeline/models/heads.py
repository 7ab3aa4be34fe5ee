"""Classifier heads by name: every head maps features (B, in_features) to logits (B, C).

``HEADS`` entries are built as ``build_head(name, in_features=..., num_classes=..., **kwargs)``
(a stage-1 method names its classifier head in its ``classifier`` attribute) and expose ``.weight`` (C, in_features), the class weight matrix that losses
such as BCL (class prototypes) or the uniformity regulariser read.
Every classifier head computes in float32 and returns float32 logits, whatever
the feature dtype or autocast policy (pipeline.precision): the head is a tiny
share of the compute, and its logits feed scaled softmaxes.
``ProjectionMLP`` is BCL's embedding head; it is not a classifier, so it is
not in the registry.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.precision import float32_compute, to_float32
from pipeline.registry import Registry

HEADS: Registry[type[nn.Module]] = Registry("head")


def build_head(name: str, *, in_features: int, num_classes: int, **kwargs) -> nn.Module:
    """Build head `name`; extra keyword arguments are the head's own knobs (scale, t, alpha...)."""
    return HEADS.get(name)(in_features, num_classes, **kwargs)


@HEADS.register("linear")
class LinearHead(nn.Linear):
    """Plain linear classifier z = W f + b (the CE baseline; cRT re-initialises and retrains it)."""

    def __init__(self, in_features: int, num_classes: int, *, bias: bool = True) -> None:
        super().__init__(in_features, num_classes, bias=bias)
        self.num_classes = num_classes

    @float32_compute
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features)


@HEADS.register("cosine")
class CosineHead(nn.Module):
    """Cosine ("normed linear") classifier z = s * normalize(f) . normalize(W) (BCL, Zhu et al. 2022)."""

    def __init__(self, in_features: int, num_classes: int, *, scale: float = 30.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"cosine head scale must be > 0, got {scale}")
        self.in_features, self.num_classes, self.scale = in_features, num_classes, scale
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        # Row norms do not matter (they are normalised away); uniform init as nn.Linear.
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    @float32_compute
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).t()


@HEADS.register("lws")
class LWSHead(nn.Module):
    """Learnable weight scaling: z_c = g_c (w_c . f + b_c) on a frozen linear classifier (Kang et al. 2020).

    Only the per-class scales g (init 1) are trainable. Build from the stage-1
    classifier with ``LWSHead.from_linear(linear)``.
    """

    def __init__(self, in_features: int, num_classes: int, *, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.num_classes = in_features, num_classes
        self.linear = nn.Linear(in_features, num_classes, bias=bias).requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(num_classes))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "LWSHead":
        head = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        head.linear.load_state_dict(linear.state_dict())
        return head

    @property
    def weight(self) -> torch.Tensor:
        """The effective class weights g_c * w_c."""
        return self.scales[:, None] * self.linear.weight

    @float32_compute
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scales * self.linear(features)


def tau_normalize(weight: torch.Tensor, t: float) -> torch.Tensor:
    """tau-normalisation w_c <- w_c / ||w_c||^t (Kang et al. 2020); t=0 keeps W, t=1 gives unit rows."""
    if not 0.0 <= t <= 2.0:
        raise ValueError(f"tau-norm exponent t must be in [0, 2], got {t}")
    return weight / weight.norm(dim=1, keepdim=True).pow(t)


@HEADS.register("tau_norm")
class TauNormHead(nn.Module):
    """tau-normalised linear classifier without bias, z = tau_normalize(W, t) f (Kang et al. 2020).

    A post-hoc head: build it from the stage-1 classifier with
    ``TauNormHead.from_linear(linear, t=...)``; the bias is dropped, as in the paper.
    """

    def __init__(self, in_features: int, num_classes: int, *, t: float = 1.0) -> None:
        super().__init__()
        tau_normalize(torch.ones(1, 1), t)  # validates t once, at construction
        self.in_features, self.num_classes, self.t = in_features, num_classes, t
        self.raw_weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.raw_weight, a=5 ** 0.5)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, t: float = 1.0) -> "TauNormHead":
        head = cls(linear.in_features, linear.out_features, t=t)
        with torch.no_grad():
            head.raw_weight.copy_(linear.weight)
        return head

    @property
    def weight(self) -> torch.Tensor:
        return tau_normalize(self.raw_weight, self.t)

    @float32_compute
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight.t()


@HEADS.register("balanced_adapter")
class BalancedAdapterHead(nn.Module):
    """ECVL stage 2 balanced linear adapter (BALLAD-style residual adapter, reconstructed; docs/methods.md).

    f' = alpha * (A f + b) + (1 - alpha) * f; logits = logit_scale * normalize(f') . T,
    with T the frozen, L2-normalised class-text embeddings (C, in_features).
    alpha in [0, 1] is the tuned residual factor; A is initialised to the
    identity and b to zero, so training starts from zero-shot CLIP.
    """

    def __init__(self, in_features: int, num_classes: int, *, class_embeddings: torch.Tensor,
                 alpha: float = 0.2, logit_scale: float = 100.0) -> None:
        super().__init__()
        if tuple(class_embeddings.shape) != (num_classes, in_features):
            raise ValueError(f"class_embeddings must have shape ({num_classes}, {in_features}), "
                             f"got {tuple(class_embeddings.shape)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"balanced adapter alpha must be in [0, 1], got {alpha}")
        self.in_features, self.num_classes = in_features, num_classes
        self.alpha, self.logit_scale = alpha, logit_scale
        self.adapter = nn.Linear(in_features, in_features)
        with torch.no_grad():
            self.adapter.weight.copy_(torch.eye(in_features))
            self.adapter.bias.zero_()
        self.register_buffer("weight", F.normalize(class_embeddings.detach().float(), dim=1))

    def adapt(self, features: torch.Tensor) -> torch.Tensor:
        """The normalised adapted feature normalize(f')."""
        mixed = self.alpha * self.adapter(features) + (1.0 - self.alpha) * features
        return F.normalize(mixed, dim=1)

    @float32_compute
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * self.adapt(features) @ self.weight.t()


class ProjectionMLP(nn.Module):
    """BCL's projection head (Zhu et al. 2022): Linear, BN, ReLU, Linear, then L2 normalisation.

    BCL uses two of these: one maps backbone features to view embeddings, a
    second maps each row of the classifier weight W to a class prototype.
    """

    def __init__(self, in_features: int, out_features: int = 128,
                 hidden_features: int | None = None) -> None:
        super().__init__()
        hidden = hidden_features or in_features
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_features),
        )
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The MLP runs in the caller's precision; the unit vectors the contrastive loss compares are float32.
        return F.normalize(to_float32(self.net(x)), dim=1)
