"""Two gloo processes on 127.0.0.1: the cross-batch losses (BCL, JRCL, CLIP InfoNCE) return, on each
rank, the single-process loss of the concatenated batch; each rank's input gradients are the matching
slices of the single-process gradients (replicated inputs: 1/world_size of it); and the trainer rule,
loss * backward_scale(loss) under DDP, reproduces the single-process parameter gradients.
Local batch sizes are uneven (3 and 5) on purpose.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tools import spawn_ranks
from pipeline.distributed import backward_scale, gather_batch, replicated, world_size
from pipeline.losses import BCL, JRCL, ClipInfoNCE, CrossEntropy

WORLD = 2
SIZES = (3, 5)
C, D = 5, 4
COUNTS = [40, 20, 9, 4, 2]
DT = torch.float64
REPLICATED = {"prototypes", "logit_scale"}  # the same tensor on every rank, not split
TIMEOUT_S = 90

LOSSES = {
    "bcl": lambda: BCL(class_counts=COUNTS, alpha=2.0, beta=0.6, tau=0.2),
    "jrcl": lambda: JRCL(class_counts=COUNTS, normal_mask=[True, True, False, False, False], tau=0.2,
                         lambda_con=0.5, lambda_bdc=0.3, logit_adjust_tau=1.0),
    "clip_infonce": lambda: ClipInfoNCE(),
}
INPUTS = {
    "bcl": ("logits", "labels", "view_embeddings", "prototypes"),
    "jrcl": ("logits", "labels", "view_embeddings", "binary_logits"),
    "clip_infonce": ("image_embeddings", "text_embeddings", "logit_scale"),
}


def _batch() -> dict[str, torch.Tensor]:
    """The global batch of 8; classes 2 and 4 absent, class 0 repeated."""
    g = torch.Generator().manual_seed(0)
    n = sum(SIZES)
    return {
        "labels": torch.tensor([0, 0, 1, 3, 0, 1, 3, 0]),
        "logits": torch.randn(n, C, generator=g, dtype=DT) * 3,
        "view_embeddings": F.normalize(torch.randn(n, 2, D, generator=g, dtype=DT), dim=-1),
        "prototypes": F.normalize(torch.randn(C, D, generator=g, dtype=DT), dim=-1),
        "binary_logits": torch.randn(n, 2, generator=g, dtype=DT),
        "image_embeddings": torch.randn(n, D, generator=g, dtype=DT),
        "text_embeddings": torch.randn(n, D, generator=g, dtype=DT),
        "logit_scale": torch.tensor(2.5, dtype=DT),
        "pixels": torch.randn(n, 3, 3, generator=g, dtype=DT),  # for the DDP model
        "captions": torch.randn(n, 3, generator=g, dtype=DT),
    }


def _part(rank: int) -> slice:
    start = sum(SIZES[:rank])
    return slice(start, start + SIZES[rank])


def _run_loss(name: str, part: slice | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss value and gradients w.r.t. each float input; part=None is the single-process run."""
    batch = _batch()
    leaves = {}
    for key in INPUTS[name]:
        value = batch[key] if part is None or key in REPLICATED else batch[key][part]
        leaves[key] = value.clone().requires_grad_() if value.is_floating_point() else value
    loss = LOSSES[name]()(**leaves)["loss"]
    loss.backward()
    return loss.detach(), {k: v.grad for k, v in leaves.items() if v.is_floating_point()}


class _Tiny(nn.Module):
    """Just enough model for all three cross-batch losses, with shared (replicated) parameters."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(3, D)
        self.classifier = nn.Parameter(torch.randn(C, D))
        self.prototype_head = nn.Linear(D, D)
        self.binary_head = nn.Linear(D, 2)
        self.text = nn.Linear(3, D)
        self.log_scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, pixels: torch.Tensor, captions: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.encoder(pixels)  # (b, 3 views, D)
        return {
            "logits": 10 * F.normalize(f[:, 0], dim=-1) @ F.normalize(self.classifier, dim=-1).T,
            "view_embeddings": F.normalize(f[:, 1:], dim=-1),
            "prototypes": F.normalize(self.prototype_head(self.classifier), dim=-1),
            "binary_logits": self.binary_head(f[:, 0]),
            "image_embeddings": f[:, 0],
            "text_embeddings": self.text(captions),
            "logit_scale": self.log_scale.exp(),
        }


def _model_grads(part: slice | None) -> dict[str, torch.Tensor]:
    """Parameter gradients of sum of the three losses; under DDP with the trainer rule when part is set."""
    batch = _batch()
    model = _Tiny().double()
    wrapped = nn.parallel.DistributedDataParallel(model) if part is not None else model
    take = slice(None) if part is None else part
    outputs = wrapped(batch["pixels"][take], batch["captions"][take])
    outputs["labels"] = batch["labels"][take]
    total = 0
    for name in LOSSES:
        loss_fn = LOSSES[name]()
        total = total + loss_fn(**{k: outputs[k] for k in INPUTS[name]})["loss"] * backward_scale(loss_fn)
    total.backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    # Loopback only: the rendezvous and gloo's own sockets both stay on 127.0.0.1 / lo.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results = {name: _run_loss(name, _part(rank)) for name in LOSSES}
        results["scale"] = {name: backward_scale(LOSSES[name]()) for name in LOSSES}
        results["scale"]["ce"] = backward_scale(CrossEntropy())
        results["ddp"] = _model_grads(_part(rank))
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(out_dir: Path) -> list[dict]:
    spawn_ranks(_worker, (str(out_dir),), WORLD, TIMEOUT_S)
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(WORLD)]


def test_two_ranks_equal_single_process_on_concatenated_batch(tmp_path):
    results = _spawn(tmp_path)

    for name in LOSSES:
        full_loss, full_grads = _run_loss(name, None)
        for rank, result in enumerate(results):
            loss, grads = result[name]
            assert torch.allclose(loss, full_loss, rtol=1e-12, atol=1e-12), (name, rank)
            for key, grad in grads.items():
                expected = full_grads[key] / WORLD if key in REPLICATED else full_grads[key][_part(rank)]
                assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-12), (name, rank, key)
        for key in REPLICATED & set(full_grads):  # after the trainer's factor, every rank holds the full gradient
            assert torch.allclose(sum(r[name][1][key] for r in results), full_grads[key]), (name, key)

    for result in results:
        assert result["scale"] == {"bcl": 2.0, "jrcl": 2.0, "clip_infonce": 2.0, "ce": 1.0}

    # Trainer rule under DDP: loss * backward_scale, DDP averages -> exact single-process gradients.
    reference = _model_grads(None)
    for rank, result in enumerate(results):
        assert result["ddp"].keys() == reference.keys()
        for key, grad in result["ddp"].items():
            assert torch.allclose(grad, reference[key], rtol=1e-10, atol=1e-12), (rank, key)


def test_without_process_group_gather_and_replicated_are_identity():
    assert not dist.is_initialized() and world_size() == 1
    x, y = torch.randn(3, 2, requires_grad=True), torch.tensor([0, 1, 1])
    gx, gy = gather_batch(x, y)
    assert gx is x and gy is y
    assert replicated(x) is x
    assert backward_scale(ClipInfoNCE()) == 1.0


def test_gather_batch_rejects_mismatched_local_sizes():
    with pytest.raises(ValueError, match="^tensors:"):
        gather_batch(torch.zeros(3, 2), torch.zeros(4))
