"""The job a training worker receives (built in one place, `train_job`), the method it trains, and
the record a trained run leaves beside its weights (job.json: what stage 2, evaluation and the
report rebuild the model from)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.config import from_mapping
from pipeline.data.contracts import SplitOutput
from pipeline.data.split_stats import SplitStats
from pipeline.data.errors import DataError
from pipeline.io import write_json
from pipeline.training.config import STAGE_CONFIGS, ModelConfig, RayConfig, Stage1Config, StageConfig
from pipeline.training.methods import Method, Task
from pipeline.training.registry import build_stage1, build_stage2

JOB_FILE = "job.json"
WEIGHTS_FILE = "model.pt"


@dataclass(frozen=True)
class TrainJob:
    """Everything a worker needs; plain data with absolute paths (workers run elsewhere)."""

    stage: str  # "stage1" or "stage2"
    config: StageConfig  # the stage being trained
    task: Task
    train_shards: tuple[str, ...]
    val_shards: tuple[str, ...]
    num_train: int
    loader_workers: int = 0
    stage1: StageConfig | None = None  # stage2: how to rebuild the stage-1 model
    stage1_weights: str | None = None  # stage2: the stage-1 best weights


def task_of(stats: SplitStats, model: ModelConfig) -> Task:
    """The Task of a split: its training class counts and group thresholds, for `model`'s input."""
    return Task(class_counts=tuple(stats.class_counts.values()), class_names=tuple(stats.class_counts),
                many_threshold=stats.thresholds.many_above, few_threshold=stats.thresholds.few_below, model=model)


def train_job(stage: str, config: StageConfig, task: Task, split: SplitOutput, ray_cfg: RayConfig, *,
              stage1: StageConfig | None = None, stage1_weights: str | None = None) -> TrainJob:
    """The job training `config` as `stage` on the split's shards; a stage-2 job names the stage-1
    model it re-balances (`stage1`, and its weights unless the caller trains them first)."""
    return TrainJob(stage=stage, config=config, task=task, train_shards=split.shards.train,
                    val_shards=split.shards.val, num_train=split.stats.train_total,
                    loader_workers=ray_cfg.loader_workers, stage1=stage1, stage1_weights=stage1_weights)


def assemble_method(stage: str, config: StageConfig, task: Task, stage1: StageConfig | None = None,
                    stage1_weights: str | None = None) -> Method:
    """Build a stage's method; a stage-2 method wraps a stage-1 model (with `stage1_weights` if given,
    else random weights that the caller overwrites with a saved stage-2 state dict)."""
    if stage == "stage1":
        return build_stage1(config.method, config.params, task)
    first = build_stage1(stage1.method, stage1.params, task)
    if stage1_weights is not None:
        first.load_state_dict(torch.load(stage1_weights, map_location="cpu", weights_only=True))
    return build_stage2(config.method, config.params, first, task)


@dataclass(frozen=True)
class JobRecord:
    """What a trained run was (its job.json): enough to rebuild its method and read its weights."""

    stage: str
    config: StageConfig
    task: Task
    stage1: StageConfig | None  # stage2: the stage-1 model it wraps

    def method(self) -> Method:
        """The run's method with random weights (load the run's WEIGHTS_FILE into it)."""
        return assemble_method(self.stage, self.config, self.task, self.stage1)


def save_job(path: Path, job: TrainJob) -> None:
    record = {"stage": job.stage, "config": dataclasses.asdict(job.config), "task": dataclasses.asdict(job.task),
              "stage1": dataclasses.asdict(job.stage1) if job.stage1 else None}
    write_json(path, record)


def load_job(run_dir: str | Path) -> JobRecord:
    """The record `save_job` left in `run_dir`."""
    path = Path(run_dir) / JOB_FILE
    if not path.exists():
        raise DataError(f"{path} not found; run the training stage that writes it (dvc repro stage1 / stage2) first")
    record = json.loads(path.read_text())
    stage1 = from_mapping(Stage1Config, record["stage1"], "stage1") if record["stage1"] else None
    return JobRecord(record["stage"], from_mapping(STAGE_CONFIGS[record["stage"]], record["config"], record["stage"]),
                     from_mapping(Task, record["task"], "task"), stage1)
