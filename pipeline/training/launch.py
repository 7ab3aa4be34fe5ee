"""Starting Ray (local or a cluster) and running a TrainJob in a Ray Train TorchTrainer."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from pipeline.io import atomic_file
from pipeline.training.config import RayConfig
from pipeline.training.loop import TrainJob, train_worker


# Ray replaces a 127.0.0.1 node address by the machine's outward IP unless cluster mode is off, as it
# is on laptops (macOS / Windows); a local run keeps every connection, DDP rendezvous included, on
# loopback. Set before Ray is imported: its constants are read at import time.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _quiet():
    import ray

    # Ray's own INFO lines (one per report and per worker) would drown the per-epoch progress lines.
    return ray.LoggingConfig(log_level="WARNING")


def init_ray(cfg: RayConfig) -> None:
    """Join `ray.address` or $RAY_ADDRESS when given; otherwise start a local Ray on 127.0.0.1."""
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.update(LOOPBACK_ONLY)
    import ray

    if ray.is_initialized():
        return
    # Workers print their per-epoch line once, unpatched (Ray Train would re-log every print).
    runtime_env = {"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}
    if address:
        ray.init(address=address, logging_config=_quiet(), runtime_env=runtime_env)
    else:
        cpus = max(os.cpu_count() or 1, int(cfg.num_workers * cfg.cpus_per_worker + 0.999))
        ray.init(address="local", num_cpus=cpus, _node_ip_address="127.0.0.1", logging_config=_quiet(),
                 runtime_env=runtime_env)


def _epoch_log(path: Path):
    """A Ray Train callback (it runs in the controller) that writes rank 0's metrics to a TSV file
    after every epoch, so the history can be watched (and plotted by DVC) while training runs."""
    from ray.train import UserCallback

    class EpochLog(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            row = metrics[0]
            rows = []
            if path.exists():  # a resumed run: keep the epochs before this one
                with open(path) as handle:
                    rows = [r for r in csv.DictReader(handle, delimiter="\t") if int(r["epoch"]) < row["epoch"]]
            with atomic_file(path) as handle:
                writer = csv.DictWriter(handle, fieldnames=list(row), delimiter="\t", lineterminator="\n",
                                        extrasaction="ignore")
                writer.writeheader()
                writer.writerows([*rows, row])

    return EpochLog()


def run_training(job: TrainJob, cfg: RayConfig, run_name: str, history_path: str | Path):
    """Fit `job` with cfg.num_workers DDP workers; a rerun with the same `run_name` resumes from
    its last checkpoint under cfg.storage_path. Each epoch's metrics are appended to
    `history_path` as they come. Returns Ray's Result."""
    init_ray(cfg)  # first: it sets the environment Ray reads when imported
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
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
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             callbacks=[_epoch_log(Path(history_path).resolve())],
                             logging_config=_quiet()),
    )
    return trainer.fit()
