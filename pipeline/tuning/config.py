"""Typed configuration of a sweep (params section `tune`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import require

OBJECTIVES = ("balanced_accuracy", "few_accuracy", "macro_f1")  # on the validation split, never test


@dataclass(frozen=True)
class TuneConfig:
    """A Ray Tune sweep: OptunaSearch (seeded TPE) proposes, ASHA stops poor trials early."""

    trials: int = 0  # 0: no sweep; stage1 / stage2 train with the values of params.yaml
    stage: Literal["stage1", "stage2", "both"] = "stage1"  # stage2: on one fixed stage-1 model
    objective: str = "balanced_accuracy"  # validation metric to maximise
    space: dict[str, tuple[float, float]] = field(default_factory=dict)  # parameter -> [low, high]
    epochs: int | None = None  # epochs per trial and stage; None: the stage's own `epochs`
    grace_epochs: int | None = None  # ASHA: no trial stops before this many epochs; None: warm-up + 1
    reduction_factor: int = 2  # ASHA: keep the best 1 / reduction_factor at each rung
    concurrency: int = 1  # trials running at once
    time_budget_s: float | None = None  # end the sweep (running trials included) after this many seconds
    seed: int = 0  # TPE sampler seed
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # fractional: 0.25 puts four single-worker trials on one GPU
    storage_path: str | None = None  # Tune's experiment storage; None: ray.storage_path
    apply: bool = True  # stage1 / stage2 train with the best values found (runs/tune/best_params.yaml)

    def __post_init__(self) -> None:
        require(self.trials >= 0, "tune.trials", "must be >= 0")
        require(self.objective in OBJECTIVES, "tune.objective",
                f"{self.objective!r} is not one of {', '.join(OBJECTIVES)} (validation metrics)")
        require(self.epochs is None or self.epochs >= 1, "tune.epochs", "must be >= 1 or null")
        require(self.grace_epochs is None or self.grace_epochs >= 1, "tune.grace_epochs", "must be >= 1 or null")
        require(self.reduction_factor >= 2, "tune.reduction_factor", "must be >= 2")
        require(self.concurrency >= 1, "tune.concurrency", "must be >= 1")
        require(self.time_budget_s is None or self.time_budget_s > 0, "tune.time_budget_s", "must be > 0 or null")
        require(self.workers_per_trial >= 1, "tune.workers_per_trial", "must be >= 1")
        require(self.cpus_per_worker > 0, "tune.cpus_per_worker", "must be > 0")
        require(self.gpus_per_worker >= 0, "tune.gpus_per_worker", "must be >= 0")

    @property
    def metric(self) -> str:
        """The name of the objective in the training loop's reports."""
        return f"val_{self.objective}"

    @property
    def stages(self) -> tuple[str, ...]:
        return ("stage1", "stage2") if self.stage == "both" else (self.stage,)
