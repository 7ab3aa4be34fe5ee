"""The training losses (formulas in docs/methods.md), one file per family.

Every loss is an nn.Module whose forward takes explicit tensors and returns
{"loss": total, "<part>_loss": ...}. Losses with ``cross_batch = True`` gather
the global batch across ranks; see pipeline.distributed for the backward rule.
Every forward computes in float32 and returns float32 whatever the input dtype or
autocast policy (pipeline.precision.float32_compute).
"""
from __future__ import annotations

import inspect

from torch import nn

from pipeline.losses.clip import ClipClassText, ClipInfoNCE
from pipeline.losses.contrastive import (
    BCL,
    JRCL,
    balanced_contrastive_loss,
    binary_distribution_consistency,
    normal_mask_from_classes,
    normal_mask_from_counts,
    one_to_all_contrastive_loss,
)
from pipeline.losses.cross_entropy import (
    BalancedSoftmax,
    CrossEntropy,
    LogitAdjustedCE,
    log_prior,
    posthoc_logit_adjust,
)
from pipeline.losses.margins import (
    LDAMDRW,
    DecoupledRegularisation,
    angular_margin_logits,
    drw_weights,
    feature_norm_hinge,
    hyperspherical_uniformity,
    ldam_margins,
)


def loss_inputs(loss: nn.Module) -> tuple[str, ...]:
    """Names of the forward arguments of a loss, e.g. ("logits", "labels"), so a trainer can pick
    them from the model's output dict without knowing which loss it holds."""
    return tuple(inspect.signature(loss.forward).parameters)


__all__ = [
    "loss_inputs",
    "CrossEntropy", "LogitAdjustedCE", "BalancedSoftmax", "posthoc_logit_adjust", "log_prior",
    "LDAMDRW", "ldam_margins", "drw_weights",
    "DecoupledRegularisation", "angular_margin_logits", "hyperspherical_uniformity", "feature_norm_hinge",
    "BCL", "balanced_contrastive_loss",
    "JRCL", "one_to_all_contrastive_loss", "binary_distribution_consistency",
    "normal_mask_from_classes", "normal_mask_from_counts",
    "ClipClassText", "ClipInfoNCE",
]
