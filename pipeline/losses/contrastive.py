"""Supervised contrastive losses: BCL (balanced contrastive learning) and JRCL (one-to-all
contrastive + binary distribution consistency). Both compare samples across the batch, so they
gather the global batch over ranks (pipeline.distributed) and declare cross_batch = True."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import require
from pipeline.distributed import gather_batch, replicated
from pipeline.losses._params import class_counts_tensor, finite, non_negative, positive
from pipeline.losses.cross_entropy import log_prior
from pipeline.precision import float32_compute


def _check_views(view_embeddings: Tensor) -> None:
    if view_embeddings.dim() != 3 or view_embeddings.shape[1] != 2:
        raise ValueError(f"view_embeddings: expected shape (B, 2, d), got {tuple(view_embeddings.shape)}")


def _stack_views(view_embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2, d) -> (2B, d) with all first views, then all second views, and their labels (2B,)."""
    _check_views(view_embeddings)
    return torch.cat(view_embeddings.unbind(1)), labels.repeat(2)


@float32_compute
def balanced_contrastive_loss(views: Tensor, view_labels: Tensor, prototypes: Tensor, tau: float) -> Tensor:
    """L_bcl (docs/methods.md). views (N, d) the anchors, view_labels (N,), prototypes (C, d); all L2-normalised.

    A = views + prototypes. For anchor i: positives = every other element of A with label y_i;
    the denominator sums exp(z_i.z_j / tau) / w_ij over j in A, j != i, where w_ij is the count of
    label y_j in A, minus 1 when y_j == y_i (the anchor does not count itself).
    """
    classes, n = prototypes.shape[0], views.shape[0]
    members = torch.cat([views, prototypes])
    member_labels = torch.cat([view_labels, torch.arange(classes, device=view_labels.device)])
    counts = torch.bincount(member_labels, minlength=classes)

    sim = views @ members.T / tau
    # Row max-stabilisation (a constant per row, so the value is unchanged; detached like the official code).
    sim = sim - sim.max(dim=1, keepdim=True).values.detach()
    same = view_labels[:, None] == member_labels[None, :]
    is_self = F.pad(torch.eye(n, dtype=torch.bool, device=sim.device), (0, classes))
    # Every anchor's class has its prototype in A, so w_ij >= 1 everywhere and the log is finite.
    weights = counts[member_labels].to(sim.dtype)[None, :] - same.to(sim.dtype)
    log_denominator = torch.logsumexp((sim - weights.log()).masked_fill(is_self, float("-inf")), dim=1, keepdim=True)
    positives = same & ~is_self
    log_prob = sim - log_denominator
    return (-(log_prob * positives).sum(1) / positives.sum(1)).mean()


class BCL(nn.Module):
    """Balanced contrastive learning: alpha * LA-CE(z of view 0) + beta * L_bcl.

    Source: official code of BCL, Zhu et al. CVPR 2022 (class-averaging, class-complement prototypes,
    logit-adjusted CE), as described in docs/methods.md.
    forward(logits (B, C) cosine-classifier logits of view 0 (already scaled by s),
    labels (B,), view_embeddings (B, 2, d) L2-normalised contrastive embeddings of views 1 and 2,
    prototypes (C, d) L2-normalised class prototypes). Computed on the global batch across ranks.
    class_counts: training images per class; alpha: weight of the LA-CE term (2 on CIFAR, 1 on
    ImageNet-LT); beta: weight of L_bcl (0.6 / 0.35); tau: contrastive temperature (0.1 / 0.07);
    logit_adjust_tau: the LA-CE's tau (1 in the official code).
    """

    cross_batch = True

    def __init__(self, *, class_counts: Sequence[int], alpha: float = 2.0, beta: float = 0.6,
                 tau: float = 0.1, logit_adjust_tau: float = 1.0) -> None:
        super().__init__()
        self.alpha = non_negative(alpha, "alpha")
        self.beta = non_negative(beta, "beta")
        self.tau = positive(tau, "tau")
        self.logit_adjust_tau = finite(logit_adjust_tau, "logit_adjust_tau")
        self.register_buffer("log_prior", log_prior(class_counts))

    @float32_compute
    def forward(self, logits: Tensor, labels: Tensor, view_embeddings: Tensor,
                prototypes: Tensor) -> dict[str, Tensor]:
        if prototypes.shape[0] != self.log_prior.numel():
            raise ValueError(f"prototypes: expected {self.log_prior.numel()} rows, got {prototypes.shape[0]}")
        _check_views(view_embeddings)  # before gathering, so a bad shape fails on every rank alike
        logits, labels, view_embeddings = gather_batch(logits, labels, view_embeddings)
        ce = F.cross_entropy(logits + self.logit_adjust_tau * self.log_prior.to(logits.dtype), labels)
        views, view_labels = _stack_views(view_embeddings, labels)
        contrastive = balanced_contrastive_loss(views, view_labels, replicated(prototypes), self.tau)
        loss = self.alpha * ce + self.beta * contrastive
        return {"loss": loss, "ce_loss": ce, "contrastive_loss": contrastive}


def normal_mask_from_classes(num_classes: int, normal_classes: Sequence[int]) -> Tensor:
    """Boolean (C,) mask, True for the listed "normal" classes (e.g. chest X-ray "No Finding")."""
    require(isinstance(num_classes, int) and num_classes >= 2, "num_classes",
            f"must be an int >= 2, got {num_classes!r}")
    require(len(normal_classes) > 0 and all(isinstance(c, int) and 0 <= c < num_classes for c in normal_classes),
            "normal_classes", f"expected class indices in [0, {num_classes}), got {list(normal_classes)!r}")
    mask = torch.zeros(num_classes, dtype=torch.bool)
    mask[list(normal_classes)] = True
    return mask


def normal_mask_from_counts(class_counts: Sequence[int], many_threshold: int = 100) -> Tensor:
    """Boolean (C,) mask, True for the many-shot ("head") classes: n_c > many_threshold."""
    require(isinstance(many_threshold, int) and many_threshold >= 0, "many_threshold",
            f"must be an int >= 0, got {many_threshold!r}")
    return class_counts_tensor(class_counts) > many_threshold


@float32_compute
def one_to_all_contrastive_loss(view_embeddings: Tensor, labels: Tensor, tau: float) -> Tensor:
    """L_o2a. view_embeddings (B, 2, d) L2-normalised, labels (B,). Every view is an anchor; its only
    positive is the other view of the same image; the denominator holds that positive and every
    embedding of a different class (same-class embeddings other than the positive are left out)."""
    z, y = _stack_views(view_embeddings, labels)
    count = z.shape[0]
    sim = z @ z.T / tau
    partner = (torch.arange(count, device=z.device) + count // 2) % count
    is_partner = F.one_hot(partner, count).bool()
    in_denominator = (y[:, None] != y[None, :]) | is_partner
    log_denominator = torch.logsumexp(sim.masked_fill(~in_denominator, float("-inf")), dim=1)
    return (log_denominator - sim.gather(1, partner[:, None]).squeeze(1)).mean()


@float32_compute
def binary_distribution_consistency(logits: Tensor, binary_logits: Tensor, normal_mask: Tensor) -> Tensor:
    """Symmetric KL, KL(q_bin || q_mc) + KL(q_mc || q_bin), averaged over the batch.
    q_mc = (sum of softmax(logits) over normal classes, over the rest); q_bin = softmax(binary_logits),
    column 0 = normal, column 1 = rest. logits (B, C), binary_logits (B, 2), normal_mask (C,) bool."""
    log_p = F.log_softmax(logits, dim=1)
    log_q_mc = torch.stack([log_p.masked_fill(~normal_mask, float("-inf")).logsumexp(1),
                            log_p.masked_fill(normal_mask, float("-inf")).logsumexp(1)], dim=1)
    log_q_bin = F.log_softmax(binary_logits, dim=1)
    # KL(a||b) + KL(b||a) = sum (a - b)(log a - log b)
    return ((log_q_bin.exp() - log_q_mc.exp()) * (log_q_bin - log_q_mc)).sum(1).mean()


class JRCL(nn.Module):
    """Joint representation and classifier learning: CE (or LA-CE) + lambda_con * L_o2a
    + lambda_bdc * (L_bdc + L_bin).

    Source: reconstructed from the abstract (our formulation, docs/methods.md).
    forward(logits (B, C) multi-class logits, labels (B,), view_embeddings (B, 2, d) L2-normalised
    contrastive embeddings of two views, binary_logits (B, 2) auxiliary binary head on the same
    feature, column 0 = "normal", column 1 = rest). Computed on the global batch across ranks.
    class_counts: training images per class; normal_mask: (C,) bool, the "normal" side of the binary
    partition (see normal_mask_from_classes / normal_mask_from_counts); tau: contrastive temperature;
    lambda_con: weight of L_o2a; lambda_bdc: weight of L_bdc + L_bin (binary CE on normal-vs-rest);
    logit_adjust_tau: 0 gives plain CE, > 0 the LA-CE with that tau.
    """

    cross_batch = True

    # tau, lambda_con and lambda_bdc have no published values (reconstructed method): no defaults.
    def __init__(self, *, class_counts: Sequence[int], normal_mask: Sequence[bool] | Tensor, tau: float,
                 lambda_con: float, lambda_bdc: float, logit_adjust_tau: float = 0.0) -> None:
        super().__init__()
        prior = log_prior(class_counts)
        mask = torch.as_tensor(normal_mask)
        require(mask.dtype == torch.bool and mask.shape == prior.shape, "normal_mask",
                f"expected {prior.numel()} booleans, got {tuple(mask.shape)} of {mask.dtype}")
        require(bool(mask.any()) and not bool(mask.all()), "normal_mask", "both sides of the partition need a class")
        self.tau = positive(tau, "tau")
        self.lambda_con = non_negative(lambda_con, "lambda_con")
        self.lambda_bdc = non_negative(lambda_bdc, "lambda_bdc")
        self.logit_adjust_tau = finite(logit_adjust_tau, "logit_adjust_tau")
        self.register_buffer("log_prior", prior)
        self.register_buffer("normal_mask", mask.clone())

    @float32_compute
    def forward(self, logits: Tensor, labels: Tensor, view_embeddings: Tensor,
                binary_logits: Tensor) -> dict[str, Tensor]:
        _check_views(view_embeddings)
        logits, labels, view_embeddings, binary_logits = gather_batch(
            logits, labels, view_embeddings, binary_logits)
        ce = F.cross_entropy(logits + self.logit_adjust_tau * self.log_prior.to(logits.dtype), labels)
        contrastive = one_to_all_contrastive_loss(view_embeddings, labels, self.tau)
        bdc = binary_distribution_consistency(logits, binary_logits, self.normal_mask)
        binary = F.cross_entropy(binary_logits, (~self.normal_mask[labels]).long())
        loss = ce + self.lambda_con * contrastive + self.lambda_bdc * (bdc + binary)
        return {"loss": loss, "ce_loss": ce, "contrastive_loss": contrastive,
                "bdc_loss": bdc, "binary_loss": binary}
