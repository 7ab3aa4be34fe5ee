"""Golden values, gradients, coverage of every loss and parameter checks for pipeline.losses.

Reference values are computed with plain Python loops over anchors/samples, independently of the
vectorised implementation.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ConfigError
from pipeline.distributed import backward_scale
from pipeline.losses import (
    BCL,
    JRCL,
    LDAMDRW,
    BalancedSoftmax,
    ClipClassText,
    ClipInfoNCE,
    CrossEntropy,
    DecoupledRegularisation,
    LogitAdjustedCE,
    angular_margin_logits,
    balanced_contrastive_loss,
    binary_distribution_consistency,
    drw_weights,
    feature_norm_hinge,
    hyperspherical_uniformity,
    ldam_margins,
    loss_inputs,
    normal_mask_from_classes,
    normal_mask_from_counts,
    one_to_all_contrastive_loss,
    posthoc_logit_adjust,
)
from tools import loss_classes

DT = torch.float64
COUNTS = [50, 20, 8, 3, 1]  # C = 5


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=_gen(seed), dtype=DT), dim=-1)


def _ce_loop(logits: torch.Tensor, labels: torch.Tensor) -> float:
    total = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        total += -(row[y] - math.log(sum(math.exp(v) for v in row)))
    return total / len(labels)


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum(x * y for x, y in zip(a.tolist(), b.tolist()))


# ---------- reference loops ----------

def bcl_loop(views: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, tau: float) -> float:
    """views (B, 2, d). A = the 2B views + C prototypes; only views are anchors."""
    members = [(views[b, v], int(labels[b])) for v in range(2) for b in range(views.shape[0])]
    members += [(prototypes[c], c) for c in range(prototypes.shape[0])]
    anchors = 2 * views.shape[0]
    total = 0.0
    for i in range(anchors):
        z_i, y_i = members[i]
        denominator = 0.0
        for j, (z_j, y_j) in enumerate(members):
            if j == i:
                continue
            w_ij = sum(1 for _, y_k in members if y_k == y_j) - (1 if y_j == y_i else 0)
            denominator += math.exp(_dot(z_i, z_j) / tau) / w_ij
        positives = [j for j, (_, y_j) in enumerate(members) if j != i and y_j == y_i]
        total += -sum(_dot(z_i, members[p][0]) / tau - math.log(denominator) for p in positives) / len(positives)
    return total / anchors


def o2a_loop(views: torch.Tensor, labels: torch.Tensor, tau: float) -> float:
    b = views.shape[0]
    z = [views[k, 0] for k in range(b)] + [views[k, 1] for k in range(b)]
    y = labels.tolist() * 2
    total = 0.0
    for i in range(2 * b):
        partner = (i + b) % (2 * b)
        denominator = sum(math.exp(_dot(z[i], z[j]) / tau) for j in range(2 * b)
                          if j != i and (y[j] != y[i] or j == partner))
        total += -(_dot(z[i], z[partner]) / tau - math.log(denominator))
    return total / (2 * b)


def bdc_loop(logits: torch.Tensor, binary_logits: torch.Tensor, normal: list[bool]) -> float:
    total = 0.0
    for row, brow in zip(logits.tolist(), binary_logits.tolist()):
        p = [math.exp(v) / sum(math.exp(u) for u in row) for v in row]
        q_mc = [sum(pc for pc, n in zip(p, normal) if n), sum(pc for pc, n in zip(p, normal) if not n)]
        q_bin = [math.exp(v) / sum(math.exp(u) for u in brow) for v in brow]
        total += sum(a * math.log(a / c) for a, c in zip(q_bin, q_mc))  # KL(q_bin || q_mc)
        total += sum(c * math.log(c / a) for a, c in zip(q_bin, q_mc))  # KL(q_mc || q_bin)
    return total / len(logits)


def infonce_loop(images: torch.Tensor, texts: torch.Tensor, scale: float) -> float:
    n = images.shape[0]
    im = [images[i] / images[i].norm() for i in range(n)]
    tx = [texts[i] / texts[i].norm() for i in range(n)]
    s = [[scale * _dot(im[i], tx[j]) for j in range(n)] for i in range(n)]
    i2t = sum(-(s[i][i] - math.log(sum(math.exp(s[i][j]) for j in range(n)))) for i in range(n)) / n
    t2i = sum(-(s[j][j] - math.log(sum(math.exp(s[i][j]) for i in range(n)))) for j in range(n)) / n
    return (i2t + t2i) / 2


# Labels with class 0 repeated, classes 2 and 4 absent from the batch.
LABELS = torch.tensor([0, 0, 1, 3, 0, 1])


# ---------- cross-entropy family ----------

def test_logit_adjusted_equals_ce_on_shifted_logits():
    logits = torch.randn(6, 5, generator=_gen(1), dtype=DT)
    prior = torch.tensor(COUNTS, dtype=DT) / sum(COUNTS)
    out = LogitAdjustedCE(class_counts=COUNTS, tau=1.5)(logits, LABELS)
    assert out["loss"].item() == pytest.approx(_ce_loop(logits + 1.5 * prior.log(), LABELS), abs=1e-12)


def test_balanced_softmax_equals_ce_on_logits_plus_log_counts():
    logits = torch.randn(6, 5, generator=_gen(2), dtype=DT)
    out = BalancedSoftmax(class_counts=COUNTS)(logits, LABELS)
    expected = _ce_loop(logits + torch.tensor(COUNTS, dtype=DT).log(), LABELS)
    assert out["loss"].item() == pytest.approx(expected, abs=1e-12)
    la = LogitAdjustedCE(class_counts=COUNTS, tau=1.0)(logits, LABELS)["loss"]
    assert out["loss"].item() == pytest.approx(la.item(), abs=1e-12)
    assert CrossEntropy()(logits, LABELS)["loss"].item() == pytest.approx(_ce_loop(logits, LABELS), abs=1e-12)


def test_posthoc_logit_adjustment_moves_argmax_to_rarer_class():
    logits = torch.tensor([[1.0, 0.5], [3.0, 0.0]], dtype=DT)
    counts = [90, 10]
    adjusted = posthoc_logit_adjust(logits, counts, tau=1.0)
    expected = logits - torch.log(torch.tensor([0.9, 0.1], dtype=DT))
    assert torch.allclose(adjusted, expected)
    assert adjusted.argmax(1).tolist() == [1, 0]  # a close call flips to the tail class, a clear one does not
    assert logits.argmax(1).tolist() == [0, 0]
    assert torch.equal(posthoc_logit_adjust(logits, counts, tau=0.0), logits)


# ---------- LDAM-DRW ----------

def test_ldam_margins_exact():
    margins = ldam_margins([10000, 100, 1], max_margin=0.5)
    assert margins.tolist() == pytest.approx([0.05, 0.5 / math.sqrt(10), 0.5], abs=1e-12)
    assert ldam_margins([16, 1], max_margin=0.4).tolist() == pytest.approx([0.2, 0.4], abs=1e-12)


def test_ldam_drw_weights_switch_on_at_drw_start_epoch():
    counts, beta, s = [100, 10, 1], 0.9999, 30.0
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    weights = [w * 3 / sum(raw) for w in raw]
    assert drw_weights(counts, beta).tolist() == pytest.approx(weights, rel=1e-12)
    assert sum(weights) == pytest.approx(3.0)

    logits = torch.rand(5, 3, generator=_gen(3), dtype=DT) * 2 - 1  # cosines
    labels = torch.tensor([0, 1, 2, 0, 2])
    margins = [0.5 * n**-0.25 for n in counts]
    margins = [m / max(margins) * 0.5 for m in margins]
    per_sample = []
    for row, y in zip(logits.tolist(), labels.tolist()):
        z = [s * (v - (margins[y] if c == y else 0.0)) for c, v in enumerate(row)]
        per_sample.append(-(z[y] - math.log(sum(math.exp(v) for v in z))))
    plain = sum(per_sample) / len(per_sample)
    label_weights = [weights[y] for y in labels.tolist()]
    weighted = sum(w * l for w, l in zip(label_weights, per_sample)) / sum(label_weights)

    loss = LDAMDRW(class_counts=counts, max_margin=0.5, s=s, beta=beta, drw_start_epoch=4)
    assert loss(logits, labels, epoch=0)["loss"].item() == pytest.approx(plain, abs=1e-10)
    assert loss(logits, labels, epoch=3)["loss"].item() == pytest.approx(plain, abs=1e-10)
    assert loss(logits, labels, epoch=4)["loss"].item() == pytest.approx(weighted, abs=1e-10)
    assert loss(logits, labels, epoch=9)["loss"].item() == pytest.approx(weighted, abs=1e-10)
    assert weighted != pytest.approx(plain)


# ---------- decoupling and regularisation ----------

def test_angular_margin_true_class_logit_is_s_cos_theta_plus_m():
    features = torch.randn(4, 6, generator=_gen(4), dtype=DT) * 3
    weight = torch.randn(5, 6, generator=_gen(5), dtype=DT)
    labels = torch.tensor([1, 0, 4, 1])
    s, m = 16.0, 0.3
    logits = angular_margin_logits(features, weight, labels, s, m)
    for i in range(4):
        for j in range(5):
            cos = _dot(features[i], weight[j]) / (features[i].norm().item() * weight[j].norm().item())
            expected = s * math.cos(math.acos(cos) + m) if j == labels[i] else s * cos
            assert logits[i, j].item() == pytest.approx(expected, abs=1e-10)


def test_uniformity_lower_for_spread_out_weights():
    spread = torch.eye(4, dtype=DT)  # orthonormal: ||w_i - w_j||^2 = 2 for every pair
    clustered = torch.tensor([1.0, 0, 0, 0], dtype=DT) + 0.1 * torch.randn(4, 4, generator=_gen(6), dtype=DT)
    assert hyperspherical_uniformity(spread, t=2.0).item() == pytest.approx(-4.0, abs=1e-12)
    assert hyperspherical_uniformity(spread * 7, t=2.0).item() == pytest.approx(-4.0, abs=1e-12)  # rows are normalised
    assert hyperspherical_uniformity(spread, 2.0) < hyperspherical_uniformity(clustered, 2.0)


def test_feature_norm_hinge_values():
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0], [3.0, 4.0]], dtype=DT)  # norms 1, 3, 5
    assert feature_norm_hinge(features, radius=4.0).item() == pytest.approx((9 + 1 + 0) / 3)
    assert feature_norm_hinge(features, radius=0.5).item() == 0.0


def test_decreg_total_combines_its_parts():
    features = torch.randn(4, 6, generator=_gen(7), dtype=DT)
    weight = torch.randn(5, 6, generator=_gen(8), dtype=DT)
    labels = torch.tensor([1, 0, 4, 1])
    out = DecoupledRegularisation(m=0.2, lambda_u=0.5, lambda_n=0.25, radius=3.0, s=10.0)(features, weight, labels)
    aam = _ce_loop(angular_margin_logits(features, weight, labels, 10.0, 0.2), labels)
    assert out["aam_loss"].item() == pytest.approx(aam, abs=1e-12)
    uniformity, norm = hyperspherical_uniformity(weight, 2.0).item(), feature_norm_hinge(features, 3.0).item()
    expected = aam + 0.5 * uniformity + 0.25 * norm
    assert out["loss"].item() == pytest.approx(expected, abs=1e-12)


# ---------- BCL ----------

def test_bcl_contrastive_matches_loop_with_absent_and_repeated_classes():
    views, prototypes = _unit(6, 2, 4, seed=9), _unit(5, 4, seed=10)
    stacked = torch.cat(views.unbind(1))
    value = balanced_contrastive_loss(stacked, LABELS.repeat(2), prototypes, tau=0.1)
    assert value.item() == pytest.approx(bcl_loop(views, LABELS, prototypes, 0.1), abs=1e-6)


def test_bcl_total_is_alpha_la_ce_plus_beta_bcl():
    views, prototypes = _unit(6, 2, 4, seed=11), _unit(5, 4, seed=12)
    logits = torch.randn(6, 5, generator=_gen(13), dtype=DT) * 5
    out = BCL(class_counts=COUNTS, alpha=2.0, beta=0.6, tau=0.2)(logits, LABELS, views, prototypes)
    prior = torch.tensor(COUNTS, dtype=DT) / sum(COUNTS)
    la_ce = _ce_loop(logits + prior.log(), LABELS)
    contrastive = bcl_loop(views, LABELS, prototypes, 0.2)
    assert out["ce_loss"].item() == pytest.approx(la_ce, abs=1e-6)
    assert out["contrastive_loss"].item() == pytest.approx(contrastive, abs=1e-6)
    assert out["loss"].item() == pytest.approx(2.0 * la_ce + 0.6 * contrastive, abs=1e-6)


def test_bcl_gradcheck():
    loss = BCL(class_counts=COUNTS, alpha=1.0, beta=1.0, tau=0.5)

    def f(logits, views, prototypes):
        return loss(logits, LABELS, F.normalize(views, dim=-1), F.normalize(prototypes, dim=-1))["loss"]

    inputs = (torch.randn(6, 5, generator=_gen(14), dtype=DT), torch.randn(6, 2, 3, generator=_gen(15), dtype=DT),
              torch.randn(5, 3, generator=_gen(16), dtype=DT))
    assert torch.autograd.gradcheck(f, [t.requires_grad_() for t in inputs])


# ---------- JRCL ----------

def test_one_to_all_contrastive_matches_loop():
    views = _unit(6, 2, 4, seed=17)
    value = one_to_all_contrastive_loss(views, LABELS, tau=0.1)
    assert value.item() == pytest.approx(o2a_loop(views, LABELS, 0.1), abs=1e-6)


def test_jrcl_total_and_bdc_match_loops():
    normal = [True, True, False, False, False]
    views = _unit(6, 2, 4, seed=18)
    logits = torch.randn(6, 5, generator=_gen(19), dtype=DT)
    binary = torch.randn(6, 2, generator=_gen(20), dtype=DT)
    loss = JRCL(class_counts=COUNTS, normal_mask=normal, tau=0.2, lambda_con=0.5, lambda_bdc=0.3)
    out = loss(logits, LABELS, views, binary)
    binary_labels = torch.tensor([0 if normal[y] else 1 for y in LABELS.tolist()])
    bdc, binary_ce = bdc_loop(logits, binary, normal), _ce_loop(binary, binary_labels)
    assert out["bdc_loss"].item() == pytest.approx(bdc, abs=1e-10)
    assert out["binary_loss"].item() == pytest.approx(binary_ce, abs=1e-12)
    expected = _ce_loop(logits, LABELS) + 0.5 * o2a_loop(views, LABELS, 0.2) + 0.3 * (bdc + binary_ce)
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)
    la = JRCL(class_counts=COUNTS, normal_mask=normal, tau=0.2, lambda_con=0.5, lambda_bdc=0.3, logit_adjust_tau=1.0)
    prior = torch.tensor(COUNTS, dtype=DT) / sum(COUNTS)
    assert la(logits, LABELS, views, binary)["ce_loss"].item() == pytest.approx(_ce_loop(logits + prior.log(), LABELS))


def test_bdc_is_zero_when_distributions_agree():
    logits = torch.log(torch.tensor([[0.3, 0.1, 0.6]], dtype=DT))
    binary = torch.log(torch.tensor([[0.4, 0.6]], dtype=DT))
    mask = torch.tensor([True, True, False])
    assert binary_distribution_consistency(logits, binary, mask).item() == pytest.approx(0.0, abs=1e-12)


def test_normal_mask_helpers():
    assert normal_mask_from_counts([150, 101, 100, 5], many_threshold=100).tolist() == [True, True, False, False]
    assert normal_mask_from_classes(4, [0, 2]).tolist() == [True, False, True, False]


def test_jrcl_gradcheck():
    loss = JRCL(class_counts=COUNTS, normal_mask=[True, False, False, True, False], tau=0.5,
                lambda_con=1.0, lambda_bdc=1.0)

    def f(logits, views, binary):
        return loss(logits, LABELS, F.normalize(views, dim=-1), binary)["loss"]

    inputs = (torch.randn(6, 5, generator=_gen(21), dtype=DT), torch.randn(6, 2, 3, generator=_gen(22), dtype=DT),
              torch.randn(6, 2, generator=_gen(23), dtype=DT))
    assert torch.autograd.gradcheck(f, [t.requires_grad_() for t in inputs])


# ---------- CLIP ----------

def test_clip_class_text_equals_ce_on_scaled_cosines():
    images = torch.randn(4, 5, generator=_gen(24), dtype=DT)
    texts = torch.randn(3, 5, generator=_gen(25), dtype=DT)
    labels = torch.tensor([2, 0, 1, 2])
    scale = torch.tensor(14.0, dtype=DT)
    cos = torch.tensor([[_dot(i, t) / (i.norm().item() * t.norm().item()) for t in texts] for i in images], dtype=DT)
    out = ClipClassText()(images, texts, labels, scale)
    assert out["loss"].item() == pytest.approx(_ce_loop(14.0 * cos, labels), abs=1e-12)


def test_clip_infonce_matches_loop():
    images = torch.randn(5, 4, generator=_gen(26), dtype=DT)
    texts = torch.randn(5, 4, generator=_gen(27), dtype=DT)
    out = ClipInfoNCE()(images, texts, torch.tensor(3.0, dtype=DT))
    assert out["loss"].item() == pytest.approx(infonce_loop(images, texts, 3.0), abs=1e-12)
    assert out["image_to_text_loss"].item() != pytest.approx(out["text_to_image_loss"].item())


def test_clip_infonce_gradcheck():
    def f(images, texts, scale):
        return ClipInfoNCE()(images, texts, scale)["loss"]

    inputs = (torch.randn(5, 3, generator=_gen(28), dtype=DT), torch.randn(5, 3, generator=_gen(29), dtype=DT),
              torch.tensor(2.0, dtype=DT))
    assert torch.autograd.gradcheck(f, [t.requires_grad_() for t in inputs])


# ---------- every loss runs forward and backward ----------

C, B, D = 5, 6, 4


def _t(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed)).requires_grad_()


def _views(seed: int) -> torch.Tensor:
    return _t(B, 2, D, seed=seed)


_LABELS = torch.tensor([0, 0, 1, 3, 0, 4])
_CE_INPUTS = lambda: {"logits": _t(B, C, seed=30), "labels": _LABELS}  # noqa: E731

LOSS_CASES = {
    CrossEntropy: ({}, _CE_INPUTS),
    LogitAdjustedCE: ({"class_counts": COUNTS}, _CE_INPUTS),
    BalancedSoftmax: ({"class_counts": COUNTS}, _CE_INPUTS),
    LDAMDRW: ({"class_counts": COUNTS, "drw_start_epoch": 1},
                 lambda: {"logits": _t(B, C, seed=31), "labels": _LABELS, "epoch": 1}),
    BCL: ({"class_counts": COUNTS},
            lambda: {"logits": _t(B, C, seed=32), "labels": _LABELS, "view_embeddings": _views(33),
                     "prototypes": _t(C, D, seed=34)}),
    JRCL: ({"class_counts": COUNTS, "normal_mask": normal_mask_from_counts(COUNTS, 10), "tau": 0.1,
              "lambda_con": 1.0, "lambda_bdc": 1.0},
             lambda: {"logits": _t(B, C, seed=35), "labels": _LABELS, "view_embeddings": _views(36),
                      "binary_logits": _t(B, 2, seed=37)}),
    DecoupledRegularisation: ({"m": 0.3, "lambda_u": 0.1, "lambda_n": 0.1, "radius": 5.0},
               lambda: {"features": _t(B, 8, seed=38), "weight": _t(C, 8, seed=39), "labels": _LABELS}),
    ClipClassText: ({}, lambda: {"image_embeddings": _t(B, D, seed=40), "class_text_embeddings": _t(C, D, seed=41),
                                     "labels": _LABELS, "logit_scale": torch.tensor(10.0, requires_grad=True)}),
    ClipInfoNCE: ({}, lambda: {"image_embeddings": _t(B, D, seed=42), "text_embeddings": _t(B, D, seed=43),
                                  "logit_scale": torch.tensor(10.0, requires_grad=True)}),
}


def test_the_table_covers_every_loss_the_package_exports():
    assert set(LOSS_CASES) == set(loss_classes())


@pytest.mark.parametrize("cls", list(LOSS_CASES), ids=lambda cls: cls.__name__)
def test_every_loss_runs_forward_and_backward(cls):
    kwargs, build = LOSS_CASES[cls]
    loss_fn = cls(**kwargs)
    inputs = build()
    if "view_embeddings" in inputs:  # contrastive losses expect unit embeddings
        inputs["view_embeddings"] = F.normalize(inputs["view_embeddings"], dim=-1)
        inputs["view_embeddings"].retain_grad()
    assert set(loss_inputs(loss_fn)) == set(inputs)
    out = loss_fn(**inputs)
    assert set(out) >= {"loss"} and all(k == "loss" or k.endswith("_loss") for k in out)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.requires_grad:
            assert value.grad is not None and torch.isfinite(value.grad).all(), key
    assert backward_scale(loss_fn) == 1.0  # not distributed here
    assert cls.cross_batch == (cls in {BCL, JRCL, ClipInfoNCE})


def test_backward_scale_requires_declared_cross_batch():
    with pytest.raises(TypeError, match="cross_batch"):
        backward_scale(nn.CrossEntropyLoss())


# ---------- bad parameters ----------

def _jrcl(**overrides) -> JRCL:
    kwargs = {"class_counts": COUNTS, "normal_mask": [True, False, False, False, False], "tau": 0.1,
              "lambda_con": 1.0, "lambda_bdc": 1.0}
    return JRCL(**{**kwargs, **overrides})


# Constructor and helper arguments: configuration, so a ConfigError naming the argument.
BAD_CONFIG = [
    ("class_counts", lambda: LogitAdjustedCE(class_counts=[10, 0])),
    ("class_counts", lambda: BalancedSoftmax(class_counts=[])),
    ("class_counts", lambda: BalancedSoftmax(class_counts=[2.5, 1])),
    ("tau", lambda: LogitAdjustedCE(class_counts=COUNTS, tau=float("nan"))),
    ("tau", lambda: posthoc_logit_adjust(torch.zeros(1, 5), COUNTS, tau=-1.0)),
    ("max_margin", lambda: LDAMDRW(class_counts=COUNTS, max_margin=0.0)),
    ("s", lambda: LDAMDRW(class_counts=COUNTS, s=-30.0)),
    ("beta", lambda: LDAMDRW(class_counts=COUNTS, beta=1.0)),
    ("drw_start_epoch", lambda: LDAMDRW(class_counts=COUNTS, drw_start_epoch=-1)),
    ("m", lambda: DecoupledRegularisation(m=-0.1, lambda_u=0.1, lambda_n=0.1, radius=1.0)),
    ("m", lambda: DecoupledRegularisation(m=2.0, lambda_u=0.1, lambda_n=0.1, radius=1.0)),
    ("lambda_u", lambda: DecoupledRegularisation(m=0.1, lambda_u=-1.0, lambda_n=0.1, radius=1.0)),
    ("lambda_n", lambda: DecoupledRegularisation(m=0.1, lambda_u=0.1, lambda_n=-1.0, radius=1.0)),
    ("radius", lambda: DecoupledRegularisation(m=0.1, lambda_u=0.1, lambda_n=0.1, radius=-1.0)),
    ("t", lambda: DecoupledRegularisation(m=0.1, lambda_u=0.1, lambda_n=0.1, radius=1.0, t=0.0)),
    ("tau", lambda: BCL(class_counts=COUNTS, tau=0.0)),
    ("alpha", lambda: BCL(class_counts=COUNTS, alpha=-1.0)),
    ("beta", lambda: BCL(class_counts=COUNTS, beta=-0.5)),
    ("normal_mask", lambda: _jrcl(normal_mask=[True, False])),
    ("normal_mask", lambda: _jrcl(normal_mask=[True] * 5)),
    ("normal_mask", lambda: _jrcl(normal_mask=[1, 0, 0, 0, 0])),
    ("tau", lambda: _jrcl(tau=-0.1)),
    ("lambda_con", lambda: _jrcl(lambda_con=-1.0)),
    ("lambda_bdc", lambda: _jrcl(lambda_bdc=-1.0)),
    ("normal_classes", lambda: normal_mask_from_classes(3, [5])),
    ("many_threshold", lambda: normal_mask_from_counts(COUNTS, -1)),
]
# Tensors handed to forward (or to a helper) that do not fit: a ValueError naming the argument.
BAD_INPUTS = [
    ("class_counts", lambda: posthoc_logit_adjust(torch.zeros(1, 4), COUNTS)),
    ("epoch", lambda: LDAMDRW(class_counts=COUNTS)(torch.zeros(1, 5), torch.tensor([0]), epoch=-1)),
    ("view_embeddings", lambda: BCL(class_counts=COUNTS)(torch.zeros(2, 5), torch.tensor([0, 1]),
                                                         torch.zeros(2, 3, 4), torch.zeros(5, 4))),
    ("prototypes", lambda: BCL(class_counts=COUNTS)(torch.zeros(2, 5), torch.tensor([0, 1]),
                                                    torch.zeros(2, 2, 4), torch.zeros(4, 4))),
    ("text_embeddings", lambda: ClipInfoNCE()(torch.zeros(3, 4), torch.zeros(2, 4), 1.0)),
    ("logit_scale", lambda: ClipClassText()(torch.ones(3, 4), torch.ones(2, 4), torch.tensor([0, 1, 0]),
                                            torch.ones(2))),
]


@pytest.mark.parametrize("name,make", BAD_CONFIG, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_CONFIG)])
def test_bad_parameter_raises_config_error_naming_it(name, make):
    with pytest.raises(ConfigError, match=rf"^{name}:"):
        make()


@pytest.mark.parametrize("name,make", BAD_INPUTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_value_error_naming_it(name, make):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        make()
