"""Driver side of a training stage: run its TrainJob on Ray, and collect its artifacts into the DVC
workspace (best weights, job description, metrics, history)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import torch

from pipeline.io import atomic_dir, write_json, write_rows
from pipeline.training import checkpoint
from pipeline.training.checkpoint import BEST_FILE, STATE_FILE
from pipeline.training.config import RayConfig
from pipeline.training.job import JOB_FILE, WEIGHTS_FILE, TrainJob, save_job
from pipeline.training.launch import epoch_log, run_on_ray
from pipeline.training.worker import train_worker


def code_digest() -> str:
    """SHA-256 over the library's source files: a changed loop or loss is a different run."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


TIMING_KEYS = ("images_per_s",)  # differ from run to run of the same job


def run_name(job: TrainJob) -> str:
    """Stable per configuration and code, so a rerun of the same job (after a kill) resumes its Ray
    run, while a changed configuration or changed library code starts a fresh one."""
    record = json.dumps(dataclasses.asdict(job), sort_keys=True, default=str) + code_digest()
    return f"{job.stage}-{job.config.method}-{hashlib.sha256(record.encode()).hexdigest()[:12]}"


def train_stage(job: TrainJob, ray_cfg: RayConfig, out_dir: str | Path, metrics_path: str | Path,
                history_path: str | Path) -> str:
    """Train `job` on Ray and write `out_dir` (model.pt = best weights, job.json), the best epoch's
    metrics and the per-epoch history. Returns the one-line summary."""
    started = time.perf_counter()
    result = run_on_ray(train_worker, job, ray_cfg, run_name(job), [epoch_log(history_path)])
    if result.error is not None:
        raise RuntimeError(f"{job.stage} training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError(f"{job.stage}: the run reported no checkpoint; see the Ray log above")
    with result.checkpoint.as_directory() as directory:
        history = checkpoint.load_file(Path(directory) / STATE_FILE)["history"]
        with atomic_dir(out_dir) as tmp:
            best_state = checkpoint.load_file(Path(directory) / BEST_FILE)
            torch.save(best_state, tmp / WEIGHTS_FILE)
            save_job(tmp / JOB_FILE, job)
    best = max(history, key=lambda row: row["val_balanced_accuracy"])
    # Throughput is in the epoch lines only: in these git-tracked files it would make every re-run of
    # the same configuration a change (dvc.lock, `git status`).
    tracked = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]
    best_tracked = tracked[history.index(best)]
    write_json(metrics_path, {k: (None if v != v else v) for k, v in best_tracked.items()})  # NaN -> null
    write_rows(history_path, tracked, list(tracked[0]), delimiter="\t")
    return (f"{job.stage} {job.config.method}: best epoch {best['epoch']}/{len(history)} val balanced acc "
            f"{best['val_balanced_accuracy']:.4f} (many {best['val_many_accuracy']:.3f} / medium "
            f"{best['val_medium_accuracy']:.3f} / few {best['val_few_accuracy']:.3f}) "
            f"in {time.perf_counter() - started:.0f} s")
