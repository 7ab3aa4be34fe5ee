"""Published figures (docs/methods.md section 7) and when a run may sit beside them.

A figure is comparable only under its protocol: the same dataset and imbalance, the same
backbone and the same training length. Anything else is reported as not comparable, saying why.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.reporting.records import RunLabel


@dataclass(frozen=True)
class Protocol:
    benchmark: str
    dataset: str  # data.dataset of the pipeline
    profile: str
    rho: float
    backbone: str
    stage1_epochs: int


@dataclass(frozen=True)
class Figure:
    method: str  # as published
    ours: tuple[str, str] | None  # (stage1, stage2) of our pipeline that implements it, if any
    top1: str  # a value or a range, in %
    groups: tuple[float, float, float] | None = None  # many / medium / few, in %


CIFAR100_LT = Protocol("CIFAR-100-LT, rho=100, ResNet-32, 200 epochs", "cifar100", "exp", 100.0, "resnet32", 200)
PUBLISHED: dict[Protocol, tuple[Figure, ...]] = {
    CIFAR100_LT: (
        Figure("CE", ("ce", "none"), "39.1", (66.1, 37.3, 10.6)),
        Figure("LA", ("la", "none"), "44.1"),
        Figure("LDAM-DRW", ("ldam_drw", "none"), "42.0"),
        Figure("cRT-style decoupling", ("ce", "crt"), "43.3", (64.0, 44.8, 18.1)),
        Figure("RIDE", None, "48.6", (67.0, 49.9, 25.7)),
        Figure("weight balancing", None, "52.0-53.4"),
        Figure("BCL", ("bcl", "none"), "51.9-53.9"),
        Figure("PaCo (400 ep)", None, "52.0"),
        Figure("ProCo", None, "52.8"),
        Figure("LIFT (CLIP ViT-B/16)", None, "81.7"),
    ),
}
# ImageNet-LT (CE ResNeXt-50 44.4 (65.9/37.5/7.7); cRT 49.6; BCL 57.1; PaCo 58.2; zero-shot CLIP ViT-B/16 68.3;
# LIFT 78.3) is read through the generic `splitlist` source, whose runs do not name the benchmark,
# so no run is matched to it automatically; the report lists it as not comparable.


def mismatch(protocol: Protocol, label: RunLabel) -> list[str]:
    """How `label` departs from `protocol` (empty: comparable)."""
    stage1_epochs = int(label.epochs.split("+")[0])
    checks = (("dataset", label.dataset, protocol.dataset), ("profile", label.profile, protocol.profile),
              ("rho", label.rho, protocol.rho), ("backbone", label.backbone, protocol.backbone),
              ("stage-1 epochs", stage1_epochs, protocol.stage1_epochs))
    return [f"{name} {ours} (published: {theirs})" for name, ours, theirs in checks if ours != theirs]


def comparable(label: RunLabel) -> tuple[Protocol | None, Figure | None, str]:
    """The protocol and published figure this run's configuration matches, or a sentence saying why none does."""
    for protocol, figures in PUBLISHED.items():
        if label.dataset != protocol.dataset:
            continue
        differences = mismatch(protocol, label)
        if differences:
            return None, None, f"not comparable with {protocol.benchmark}: " + "; ".join(differences)
        for figure in figures:
            if figure.ours == (label.stage1, label.stage2):
                return protocol, figure, f"same protocol as {protocol.benchmark}"
        return protocol, None, f"{protocol.benchmark}: no published figure for {label.stage1} + {label.stage2}"
    return None, None, (f"no published figures for dataset {label.dataset!r} (docs/methods.md lists "
                        f"{', '.join(p.benchmark for p in PUBLISHED)} and ImageNet-LT)")
