"""Head / medium / tail: a class's group from its TRAINING count (docs/methods.md section 1)."""
from __future__ import annotations

from typing import Sequence

GROUPS = ("many", "medium", "few")


def assign_groups(counts: Sequence[int], many_threshold: int, few_threshold: int) -> list[str]:
    """many if n_c > many_threshold, few if n_c < few_threshold, medium otherwise (inclusive)."""
    return ["many" if n > many_threshold else "few" if n < few_threshold else "medium" for n in counts]
