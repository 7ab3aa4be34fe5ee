"""The training checkpoint: what `fit` saves after every epoch and reads back to resume.

Everything in it is tensors and plain Python values (dicts, lists, numbers,
strings), so it is read with ``torch.load(weights_only=True)``: a tampered
file on shared run storage (NFS, s3://) cannot run code in a worker; it fails
to load with an error naming the file.

No random-generator state is stored because none is carried across epochs:
every random draw of epoch e (augmentation, sampling, shuffling) comes from
generators seeded by (seed, rank, e) at the start of that epoch (``epoch_seed``),
so a run resumed at epoch e draws exactly what the uninterrupted run drew.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"  # the latest full training state (resume)
BEST_FILE = "best_model.pt"  # weights of the best epoch by validation balanced accuracy
FORMAT = 2  # 2: weights_only-safe, per-epoch seeds (1 held pickled numpy generator state)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read safely (tampered, truncated or of an older format)."""


def epoch_seed(seed: int, rank: int, epoch: int, purpose: str = "") -> int:
    """A 63-bit seed for (run seed, rank, epoch, purpose): independent streams per rank and epoch."""
    digest = hashlib.sha256(f"{seed}/{rank}/{epoch}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def save(directory: Path, state: dict[str, Any], best_state: dict[str, Any]) -> None:
    """Write the full state (method, optimizer, scheduler, epoch, best, history) and the best weights."""
    torch.save({"format": FORMAT, **state}, directory / STATE_FILE)
    torch.save(best_state, directory / BEST_FILE)


def load_file(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """One checkpoint file, read with weights_only=True (no code runs from it)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a safe checkpoint (only tensors and plain values are read): "
                              f"{str(exc).splitlines()[0]}") from exc


def load(directory: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint directory's full state plus its best weights (under "best_state")."""
    state = load_file(directory / STATE_FILE, device)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{directory / STATE_FILE}: checkpoint format {state.get('format')!r}, "
                              f"expected {FORMAT}; delete the run directory to start afresh")
    state["best_state"] = load_file(directory / BEST_FILE, "cpu")
    return state
