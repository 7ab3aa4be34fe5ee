"""Ray Train's entry point for a training worker: `fit` with Ray's rank, device and checkpoint;
its reports go to Ray. Ray is imported when the worker runs: the driver imports this module before
the launcher has set the environment Ray reads at import (pipeline.training.launch.init_ray)."""
from __future__ import annotations

import logging
from pathlib import Path

from pipeline.training import checkpoint
from pipeline.training.loop import fit


def _quiet_reports() -> None:
    """Ray Train V2 logs every report at INFO under a logger named by its source file, not "ray.train",
    so LoggingConfig(log_level="WARNING") does not reach it; this worker's epoch line says enough.
    Ray offers no public handle on that logger: its name is the file of the private module."""
    from ray.train.v2._internal.execution import context as report_context

    logging.getLogger(report_context.__file__).setLevel(logging.WARNING)


def train_worker(config: dict) -> None:
    """`config["job"]`: the TrainJob (pipeline.training.launch.run_on_ray passes it so)."""
    import ray.train
    import ray.train.torch

    _quiet_reports()
    context = ray.train.get_context()
    device = ray.train.torch.get_device()
    latest = ray.train.get_checkpoint()  # Ray's; not to be confused with our `checkpoint` module
    resume = None
    if latest is not None:
        with latest.as_directory() as directory:
            resume = checkpoint.load(Path(directory), device)

    def report(metrics: dict, directory: Path | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory) if directory else None)

    fit(config["job"], rank=context.get_world_rank(), world=context.get_world_size(), device=device,
        resume=resume, report=report)
