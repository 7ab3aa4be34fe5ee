"""Margin losses: LDAM-DRW and the decoupling-and-regularisation loss (angular margin,
hyperspherical uniformity, feature-norm hinge)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import require
from pipeline.losses._params import class_counts_tensor, non_negative, positive
from pipeline.precision import float32_compute


def ldam_margins(class_counts: Sequence[int] | Tensor, max_margin: float = 0.5) -> Tensor:
    """m_c proportional to n_c ** (-1/4), rescaled so the largest is max_margin. float64, (C,)."""
    margins = class_counts_tensor(class_counts) ** -0.25
    return margins * (positive(max_margin, "max_margin") / margins.max())


def drw_weights(class_counts: Sequence[int] | Tensor, beta: float = 0.9999) -> Tensor:
    """Class-balanced ("effective number") weights (1 - beta) / (1 - beta ** n_c), normalised to
    sum to C. float64, (C,)."""
    require(isinstance(beta, (int, float)) and 0 <= beta < 1, "beta", f"must be in [0, 1), got {beta!r}")
    counts = class_counts_tensor(class_counts)
    weights = (1 - beta) / (1 - beta**counts)
    return weights * (counts.numel() / weights.sum())


class LDAMDRW(nn.Module):
    """LDAM loss with deferred re-weighting (DRW).

    Source: official code of LDAM-DRW, Cao et al. NeurIPS 2019: margins m_c ~ n_c ** (-1/4)
    rescaled to max_margin, m_y subtracted from the true-class logit, everything scaled by s,
    CE; from drw_start_epoch on, CE is weighted by drw_weights (weighted mean over the batch,
    sum_i w_yi * l_i / sum_i w_yi, as torch's weighted CE and the official code do).
    forward(logits (B, C) cosine logits in [-1, 1] of a normed-linear classifier, labels (B,),
    *, epoch: int the current 0-based epoch).
    class_counts: training images per class; max_margin: the largest margin (0.5); s: logit scale (30);
    beta: effective-number beta of the DRW weights (0.9999); drw_start_epoch: first re-weighted
    epoch (160 of 200 on CIFAR).
    """

    cross_batch = False

    def __init__(self, *, class_counts: Sequence[int], max_margin: float = 0.5, s: float = 30.0,
                 beta: float = 0.9999, drw_start_epoch: int = 160) -> None:
        super().__init__()
        require(isinstance(drw_start_epoch, int) and not isinstance(drw_start_epoch, bool)
                and drw_start_epoch >= 0, "drw_start_epoch", f"must be an int >= 0, got {drw_start_epoch!r}")
        self.s = positive(s, "s")
        self.drw_start_epoch = drw_start_epoch
        self.register_buffer("margins", ldam_margins(class_counts, max_margin))
        self.register_buffer("drw_weights", drw_weights(class_counts, beta))

    @float32_compute
    def forward(self, logits: Tensor, labels: Tensor, *, epoch: int) -> dict[str, Tensor]:
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: must be an int >= 0, got {epoch!r}")
        margin = self.margins.to(logits.dtype)[labels]
        true_class = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        scaled = self.s * (logits - margin[:, None] * true_class)
        weight = self.drw_weights.to(logits.dtype) if epoch >= self.drw_start_epoch else None
        loss = F.cross_entropy(scaled, labels, weight=weight)
        return {"loss": loss, "ldam_loss": loss}


@float32_compute
def angular_margin_logits(features: Tensor, weight: Tensor, labels: Tensor, s: float, m: float) -> Tensor:
    """ArcFace-form logits: s * cos(theta_j) for j != y, s * cos(theta_y + m) for the true class.
    features (B, D), weight (C, D); theta_j is the angle between f and w_j."""
    cos = F.normalize(features, dim=1) @ F.normalize(weight, dim=1).T
    cos_y = cos.gather(1, labels[:, None])
    # cos(theta + m) = cos theta cos m - sin theta sin m with sin theta >= 0 on [0, pi]; the clamp
    # keeps the sqrt's gradient finite when f is exactly parallel to w_y (changes the value by < 1e-6).
    sin_y = torch.sqrt((1 - cos_y**2).clamp_min(1e-12))
    cos_y_margin = cos_y * math.cos(m) - sin_y * math.sin(m)
    return s * cos.scatter(1, labels[:, None], cos_y_margin)


@float32_compute
def hyperspherical_uniformity(weight: Tensor, t: float = 2.0) -> Tensor:
    """log( mean over i != j of exp(-t * ||w_i - w_j||^2) ) on L2-normalised rows of weight (C, D).
    Lower means the class directions are spread more evenly."""
    w = F.normalize(weight, dim=1)
    classes = w.shape[0]
    if classes < 2:
        raise ValueError(f"weight: uniformity needs at least 2 classes, got {classes}")
    sq_dist = (2 - 2 * w @ w.T).clamp_min(0)  # ||a - b||^2 for unit vectors
    off_diagonal = ~torch.eye(classes, dtype=torch.bool, device=w.device)
    return torch.logsumexp(-t * sq_dist[off_diagonal], dim=0) - math.log(classes * (classes - 1))


@float32_compute
def feature_norm_hinge(features: Tensor, radius: float) -> Tensor:
    """mean( max(0, R - ||f||)^2 ): penalises features shorter than R. features (B, D)."""
    return F.relu(radius - features.norm(dim=1)).pow(2).mean()


class DecoupledRegularisation(nn.Module):
    """Decoupling and regularisation loss: L_aam + lambda_u * L_u + lambda_n * L_norm.

    Source: reconstructed from the abstract (our formulation, docs/methods.md).
    forward(features (B, D) un-normalised backbone features, weight (C, D) classifier weights,
    labels (B,)).
    s: logit scale of the angular-margin CE; m: additive angular margin in radians (the swept
    "margin"); lambda_u: weight of the hyperspherical uniformity of the normalised class weights;
    t: uniformity temperature (2); lambda_n: weight of the feature-norm hinge; radius: the norm R
    below which features are penalised. No theta + m > pi fallback: the spec says cos(theta_y + m).
    """

    cross_batch = False

    # m, lambda_u, lambda_n and radius have no published values (reconstructed method): params.yaml
    # must choose them, so they have no defaults here.
    def __init__(self, *, m: float, lambda_u: float, lambda_n: float, radius: float,
                 s: float = 30.0, t: float = 2.0) -> None:
        super().__init__()
        self.s = positive(s, "s")
        self.m = non_negative(m, "m")
        require(self.m < math.pi / 2, "m", f"must be below pi/2 radians, got {m!r}")
        self.lambda_u = non_negative(lambda_u, "lambda_u")
        self.t = positive(t, "t")
        self.lambda_n = non_negative(lambda_n, "lambda_n")
        self.radius = non_negative(radius, "radius")

    @float32_compute
    def forward(self, features: Tensor, weight: Tensor, labels: Tensor) -> dict[str, Tensor]:
        aam = F.cross_entropy(angular_margin_logits(features, weight, labels, self.s, self.m), labels)
        uniformity = hyperspherical_uniformity(weight, self.t)
        norm = feature_norm_hinge(features, self.radius)
        loss = aam + self.lambda_u * uniformity + self.lambda_n * norm
        return {"loss": loss, "aam_loss": aam, "uniformity_loss": uniformity, "norm_loss": norm}
