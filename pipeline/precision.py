"""Float32 islands inside mixed-precision training.

Under autocast the backbone runs in bfloat16, but what the losses and heads compute is sensitive to
its 8-bit mantissa: cosine similarities scaled by s = 30, log-sum-exp over a batch, angular margins,
KL terms of nearly equal distributions. Each autocast backend also keeps different ops in float32
(CPU autocast leaves ``pow`` in bfloat16, CUDA autocast promotes it), so code that only works by the
backend's choice of ops breaks on the other one. ``float32_compute`` makes a function independent of
the policy: half-precision tensor arguments are cast to float32 at its boundary and autocast is off
inside, so everything it computes, and what it returns, is float32 whatever the caller's precision.
Gradients flow back through the casts in the callers' dtypes. float64 stays float64 (gradient checks).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])

_HALF = (torch.bfloat16, torch.float16)


def to_float32(value: Any) -> Any:
    """A half-precision tensor as float32; anything else (float32, float64, ints, non-tensors) unchanged."""
    if torch.is_tensor(value) and value.dtype in _HALF:
        return value.float()
    return value


@contextlib.contextmanager
def autocast_off():
    """Leave every autocast region that is active here (CPU and CUDA alike) for the block."""
    with contextlib.ExitStack() as stack:
        for device_type in ("cpu", "cuda"):
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def float32_compute(function: F) -> F:
    """Decorate a function or forward: half-precision tensor arguments become float32 and autocast is
    off while it runs (see the module docstring). The signature is kept (inspect follows __wrapped__)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = tuple(to_float32(a) for a in args)
        kwargs = {k: to_float32(v) for k, v in kwargs.items()}
        with autocast_off():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
