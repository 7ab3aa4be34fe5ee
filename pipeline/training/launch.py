"""The one place Ray starts: joining a cluster or starting a local Ray, and running a worker function
on Ray Train workers (`run_on_ray`, used by training, evaluation and each sweep trial)."""
from __future__ import annotations

import csv
import math
import os
import socket
from pathlib import Path
from typing import Any, Callable

from pipeline.io import write_rows
from pipeline.training.config import RayConfig
from pipeline.training.loopback import in_local_session, leave_session_env, start_session_env


# Ray replaces a 127.0.0.1 node address by the machine's outward IP unless cluster mode is off, as it
# is on laptops (macOS / Windows); a local run keeps every connection, DDP rendezvous included, on
# loopback. Set before Ray is imported: its constants are read at import time.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _quiet():
    import ray

    # Ray's own INFO lines (one per report and per worker) would drown the per-epoch progress lines.
    return ray.LoggingConfig(log_level="WARNING")


def init_ray(cfg: RayConfig, *, min_cpus: float = 0, log_to_driver: bool = True) -> None:
    """Join `ray.address` or $RAY_ADDRESS when given; otherwise start a local Ray with at least
    `min_cpus` logical CPUs (default: enough for one run of cfg), every listener on 127.0.0.1 and a
    token of its own (pipeline.training.loopback). `log_to_driver=False` keeps the workers' output
    out of this process's (a sweep prints its own progress)."""
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.update(LOOPBACK_ONLY)
    import ray

    if ray.is_initialized():
        return
    # Workers print their per-epoch line once, unpatched (Ray Train would re-log every print).
    runtime_env = {"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}
    if address:
        leave_session_env()
        # A cluster job's driver inherits the job's runtime env (its working_dir among it); passing one
        # here would replace it and Ray would delete the working directory under the running driver.
        # cluster/runtime_env.yaml sets the print patch variable for submitted jobs instead.
        ray.init(address=address, logging_config=_quiet(), log_to_driver=log_to_driver)
    else:
        cpus = max(os.cpu_count() or 1, math.ceil(max(min_cpus, cfg.num_workers * cfg.cpus_per_worker)))
        # Ray Train's placement-group cleaner looks its cluster up through the state API, which gives up
        # when several Ray instances run on the host (two pipelines, a test beside a run) and then never
        # frees finished runs' resources. Naming this instance's dashboard removes the ambiguity.
        port = _free_port()
        api = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
        os.environ.update(api)
        start_session_env()
        runtime_env["env_vars"].update(api)
        ray.init(address="local", num_cpus=cpus, _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1",
                 dashboard_port=port, logging_config=_quiet(), runtime_env=runtime_env, log_to_driver=log_to_driver)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def epoch_log(path: str | Path):
    """A Ray Train callback (it runs in the controller) that writes rank 0's metrics to a TSV file
    after every epoch, so the history can be watched (and plotted by DVC) while training runs."""
    from ray.train import UserCallback

    path = Path(path).resolve()

    class EpochLog(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            row = metrics[0]
            rows = []
            if path.exists():  # a resumed run: keep the epochs before this one
                with open(path) as handle:
                    rows = [r for r in csv.DictReader(handle, delimiter="\t") if int(r["epoch"]) < row["epoch"]]
            write_rows(path, [*rows, row], list(row), delimiter="\t", extrasaction="ignore")

    return EpochLog()


def _torch_config():
    """Ray Train's TorchConfig for this process: in a local session (its driver, or a Tune trial
    inside it) the DDP rendezvous on 127.0.0.1 only; on a cluster Ray's own."""
    if not in_local_session():
        return None
    from pipeline.training.loopback_store import LoopbackTorchConfig

    return LoopbackTorchConfig()


def storage_uri(path: str) -> str:
    """Ray's storage_path: a URL as given, a local path made absolute (workers run elsewhere)."""
    return path if "://" in path else str(Path(path).resolve())


def run_on_ray(worker: Callable[[dict], Any], payload: Any, ray_cfg: RayConfig, name: str, callbacks: list):
    """Run `worker({"job": payload})` on ray_cfg.num_workers Ray Train workers in one DDP process group;
    a rerun with the same `name` resumes from its last checkpoint under ray_cfg.storage_path, and
    worker failures are retried from it (ray.max_failures). `callbacks` are Ray Train UserCallbacks
    (e.g. `epoch_log`). Returns Ray's Result (its error, checkpoint and rank 0's return value)."""
    init_ray(ray_cfg)  # first: it sets the environment Ray reads when imported
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    resources = {"CPU": ray_cfg.cpus_per_worker}
    if ray_cfg.gpus_per_worker:
        resources["GPU"] = ray_cfg.gpus_per_worker
    trainer = TorchTrainer(
        worker,
        train_loop_config={"job": payload},
        torch_config=_torch_config(),
        scaling_config=ScalingConfig(num_workers=ray_cfg.num_workers, use_gpu=ray_cfg.gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=storage_uri(ray_cfg.storage_path),
                             failure_config=FailureConfig(max_failures=ray_cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             callbacks=callbacks,
                             logging_config=_quiet()),
    )
    return trainer.fit()
