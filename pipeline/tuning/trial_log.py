"""Each trial's reports, kept beside the sweep so that a rerun replays them instead of restoring Tune.

A rerun of an interrupted sweep starts a fresh Tuner with the same seeded searcher and a fresh ASHA;
trial n replays what trial n reported before (when it proposes the same values) and only then trains.
Searcher and scheduler see the same results in the same order, so with one trial at a time they make
the same decisions as in an uninterrupted sweep, and a finished trial keeps its results.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from pipeline.io import atomic_file
from pipeline.storage import exists, is_url, join, open_binary


def trial_key(index: int, values: dict[str, Any]) -> str:
    """Stable across reruns (Tune's trial ids are not): creation index and the proposed values."""
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
    return f"{index}-{digest}"


class TrialLog:
    """The reports of one trial, [{"stage": ..., **metrics}, ...] in order, in one JSON file."""

    def __init__(self, directory: str, key: str) -> None:
        self.location = join(directory, f"{key}.json")

    def load(self) -> list[dict]:
        if not exists(self.location):
            return []
        with open_binary(self.location) as handle:
            return json.load(handle)

    def seen(self, reports: list[dict], stage: str, epoch: int) -> bool:
        return any(r["stage"] == stage and r["epoch"] == epoch for r in reports)

    def save(self, reports: list[dict]) -> None:
        data = json.dumps(reports).encode()
        if is_url(self.location):  # object stores replace an object whole on close
            with open_binary(self.location, "wb") as handle:
                handle.write(data)
        else:  # a kill mid-write must not leave half a file for the next rerun
            with atomic_file(self.location, "wb") as handle:
                handle.write(data)
