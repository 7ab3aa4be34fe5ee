"""Gathering across torch.distributed ranks: a batch for losses that compare samples, and any
picklable object (predictions, counts).

Why: a contrastive loss (BCL, JRCL, CLIP InfoNCE) contrasts every sample with
every other sample of the *global* batch, so each rank needs the other ranks'
embeddings. ``gather_batch`` all-gathers them without autograd and puts the
local tensor back into this rank's slice, so gradients reach exactly the local
inputs. The returned loss is then, on every rank, the single-process loss on the
concatenated global batch, and the gradient w.r.t. each rank's local inputs is
the matching slice of the single-process gradient.

The rule for the trainer (a ``cross_batch`` loss):
    DDP averages parameter gradients over the N ranks, but each rank already
    holds the gradient of the *whole* global loss w.r.t. its own slice; the
    exact global gradient is the SUM of the slices' contributions. So the
    trainer backpropagates ``loss * backward_scale(loss_fn)``, which is
    ``world_size`` for losses with ``cross_batch = True`` and 1 otherwise.
    Report the unscaled loss.

Inputs that are identical on every rank rather than split across them (BCL's
class prototypes, CLIP's logit scale) pass through ``replicated``: every rank
computes their full gradient, so it is divided by ``world_size`` on the way
back; after the trainer's factor and DDP's average it is again exact.

Without an initialised process group (or with world size 1) every function
here is the identity and ``backward_scale`` returns 1.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    """Number of ranks, 1 when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (pickled), in rank order; [obj] without a process group."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def _all_gather(tensor: Tensor) -> list[Tensor]:
    # gloo has no bool all_gather; go through uint8 and back.
    as_bool = tensor.dtype == torch.bool
    payload = tensor.to(torch.uint8) if as_bool else tensor.contiguous()
    parts = [torch.empty_like(payload) for _ in range(world_size())]
    with torch.no_grad():
        dist.all_gather(parts, payload)
    return [part.bool() for part in parts] if as_bool else parts


def gather_batch(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Concatenate each tensor over all ranks along dim 0 (rank order), keeping
    autograd only for this rank's slice.

    All tensors must share the local batch size (dim 0); the batch size may
    differ between ranks (sizes are gathered first, slices padded to the
    largest and trimmed again). Trailing dimensions must match across ranks.
    Every rank must call this with the same number of tensors, in the same order.
    """
    if not tensors:
        raise ValueError("tensors: gather_batch needs at least one tensor")
    local = tensors[0].shape[0]
    for t in tensors:
        if t.shape[0] != local:
            raise ValueError(f"tensors: all local batch sizes must match, got {[t.shape[0] for t in tensors]}")
    if world_size() == 1:
        return tuple(tensors)
    sizes = [int(s) for s in _all_gather(torch.tensor([local], device=tensors[0].device))]
    largest, rank = max(sizes), dist.get_rank()
    gathered = []
    for t in tensors:
        padded = t.detach()
        if local < largest:
            padded = torch.cat([padded, t.new_zeros((largest - local, *t.shape[1:]))])
        parts = [part[:n] for part, n in zip(_all_gather(padded), sizes)]
        parts[rank] = t  # the local slice keeps its autograd history
        gathered.append(torch.cat(parts))
    return tuple(gathered)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def replicated(tensor: Tensor) -> Tensor:
    """Identity for an input that is the same on every rank; its gradient is
    divided by world_size (see the module docstring for why)."""
    n = world_size()
    if n == 1 or not tensor.requires_grad:
        return tensor
    return _ScaleGrad.apply(tensor, 1.0 / n)


def backward_scale(loss_module: nn.Module) -> float:
    """Factor the trainer multiplies the loss by before backward():
    world_size for a ``cross_batch`` loss, 1 otherwise."""
    if not hasattr(type(loss_module), "cross_batch"):
        raise TypeError(f"{type(loss_module).__name__} does not declare the class attribute cross_batch")
    return float(world_size()) if type(loss_module).cross_batch else 1.0
