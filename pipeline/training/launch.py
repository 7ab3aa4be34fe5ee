"""Starting Ray (local or a cluster) and running a TrainJob in a Ray Train TorchTrainer."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.training.config import RayConfig
from pipeline.training.loop import TrainJob, train_worker


# Ray replaces a 127.0.0.1 node address by the machine's outward IP unless cluster mode is off, as it
# is on laptops (macOS / Windows); a local run keeps every connection, DDP rendezvous included, on
# loopback. Set before Ray is imported: its constants are read at import time.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def init_ray(cfg: RayConfig) -> None:
    """Join `ray.address` or $RAY_ADDRESS when given; otherwise start a local Ray on 127.0.0.1."""
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.update(LOOPBACK_ONLY)
    import ray

    if ray.is_initialized():
        return
    # Ray's own INFO lines (one per report) would drown the per-epoch progress lines.
    quiet = ray.LoggingConfig(log_level="WARNING")
    if address:
        ray.init(address=address, logging_config=quiet)
    else:
        cpus = max(os.cpu_count() or 1, int(cfg.num_workers * cfg.cpus_per_worker + 0.999))
        ray.init(address="local", num_cpus=cpus, _node_ip_address="127.0.0.1", logging_config=quiet)


def run_training(job: TrainJob, cfg: RayConfig, run_name: str):
    """Fit `job` with cfg.num_workers DDP workers; a rerun with the same `run_name` resumes from
    its last checkpoint under cfg.storage_path. Returns Ray's Result."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    init_ray(cfg)
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.gpus_per_worker:
        resources["GPU"] = cfg.gpus_per_worker
    storage = cfg.storage_path if "://" in cfg.storage_path else str(Path(cfg.storage_path).resolve())
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=run_name, storage_path=storage,
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    return trainer.fit()
