"""Ray Train's entry point for an evaluation worker: the trained run's best model over its share
of the test shards; rank 0 returns every rank's predictions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.training.job import WEIGHTS_FILE, load_job
from pipeline.training.predict import gathered_predictions


@dataclass(frozen=True)
class EvalJob:
    run_dir: str  # absolute: a train_stage output directory
    test_shards: tuple[str, ...]
    batch_size: int = 256
    loader_workers: int = 0


def evaluate_worker(config: dict) -> dict | None:
    """`config["job"]`: the EvalJob. Returns the predictions sorted by key on rank 0, None elsewhere."""
    import ray.train
    import ray.train.torch

    job: EvalJob = config["job"]
    record = load_job(job.run_dir)
    method = record.method()
    method.load_state_dict(torch.load(Path(job.run_dir) / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    device = ray.train.torch.get_device()
    context = ray.train.get_context()
    rank = context.get_world_rank()
    predictions = gathered_predictions(method.to(device), job.test_shards, record.task, device, job.batch_size,
                                       job.loader_workers, rank, context.get_world_size())
    return predictions if rank == 0 else None
