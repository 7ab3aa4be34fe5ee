"""Cross-entropy family: plain CE, logit-adjusted CE (training and post-hoc), balanced softmax."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.losses._params import class_counts_tensor, finite, non_negative
from pipeline.precision import float32_compute


def log_prior(class_counts: Sequence[int] | Tensor) -> Tensor:
    """log pi_c = log(n_c / sum n), float64, shape (C,)."""
    counts = class_counts_tensor(class_counts)
    return torch.log(counts / counts.sum())


def posthoc_logit_adjust(logits: Tensor, class_counts: Sequence[int] | Tensor, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment (Menon et al., ICLR 2021): returns z - tau * log pi, whose argmax is
    the prediction. logits (B, C); class_counts (C,) training counts; tau >= 0 the adjustment strength."""
    tau = non_negative(tau, "tau")
    prior = log_prior(class_counts).to(device=logits.device, dtype=logits.dtype)
    if prior.numel() != logits.shape[-1]:
        raise ValueError(f"class_counts: {prior.numel()} classes but logits have {logits.shape[-1]}")
    return logits - tau * prior


class CrossEntropy(nn.Module):
    """Plain cross-entropy, the instance-balanced baseline.

    forward(logits (B, C), labels (B,) int64). No coefficients.
    """

    cross_batch = False

    @float32_compute
    def forward(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        loss = F.cross_entropy(logits, labels)
        return {"loss": loss, "ce_loss": loss}


class LogitAdjustedCE(nn.Module):
    """Logit-adjusted cross-entropy, training form: CE(z + tau * log pi, y).

    Source: Menon et al., "Long-tail learning via logit adjustment", ICLR 2021 (docs/methods.md).
    forward(logits (B, C), labels (B,)). class_counts: training images per class (C,);
    tau: adjustment strength (1 in the paper; 0 gives plain CE).
    """

    cross_batch = False

    def __init__(self, *, class_counts: Sequence[int], tau: float = 1.0) -> None:
        super().__init__()
        self.tau = finite(tau, "tau")
        self.register_buffer("log_prior", log_prior(class_counts))

    @float32_compute
    def forward(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        shift = self.tau * self.log_prior.to(logits.dtype)
        loss = F.cross_entropy(logits + shift, labels)
        return {"loss": loss, "ce_loss": loss}


class BalancedSoftmax(nn.Module):
    """Balanced softmax: CE(z + log n_c, y), the tau = 1 member of the logit-adjustment family.

    Source: Ren et al., "Balanced Meta-Softmax", NeurIPS 2020 (docs/methods.md).
    forward(logits (B, C), labels (B,)). class_counts: training images per class (C,). No other
    coefficient. (Same value as LogitAdjustedCE(tau=1): log n_c and log pi_c differ by a constant.)
    """

    cross_batch = False

    def __init__(self, *, class_counts: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("log_counts", torch.log(class_counts_tensor(class_counts)))

    @float32_compute
    def forward(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        loss = F.cross_entropy(logits + self.log_counts.to(logits.dtype), labels)
        return {"loss": loss, "ce_loss": loss}
