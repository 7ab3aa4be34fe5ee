"""Driver side of a training stage: build the TrainJob from the split, run it on Ray, and collect
its artifacts into the DVC workspace (best weights, job description, metrics, history)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import torch

from pipeline.config import from_mapping
from pipeline.data.errors import DataError
from pipeline.data.manifest import read_manifest
from pipeline.data.verify import verify_shards
from pipeline.io import atomic_dir, write_json, write_rows
from pipeline.storage import absolute, exists, join, open_binary
from pipeline.training.config import STAGE_CONFIGS, ModelConfig, RayConfig, Stage1Config, StageConfig
from pipeline.training.launch import epoch_log, run_training
from pipeline.training import checkpoint
from pipeline.training.checkpoint import BEST_FILE, STATE_FILE
from pipeline.training.loop import TrainJob
from pipeline.training.methods import Task

JOB_FILE = "job.json"
WEIGHTS_FILE = "model.pt"


def load_task(split_dir: str | Path, model: ModelConfig) -> tuple[Task, dict[str, tuple[str, ...]], int]:
    """The Task of a split stage output, its shards per role and the training size. `split_dir`
    may be a path (made absolute) or an fsspec URL on shared storage; shards are named the same way.
    Every shard is checked against the manifest first (pipeline.data.verify)."""
    split_dir = absolute(split_dir)
    _require_file(join(split_dir, "stats.json"), "the split stage (dvc repro split)")
    with open_binary(join(split_dir, "stats.json")) as handle:
        stats = json.load(handle)
    task = Task(class_counts=tuple(stats["class_counts"].values()), class_names=tuple(stats["class_counts"]),
                many_threshold=stats["thresholds"]["many_above"], few_threshold=stats["thresholds"]["few_below"],
                model=model)
    manifest_path = join(split_dir, "manifest.parquet")
    with open_binary(manifest_path) as handle:
        manifest = read_manifest(handle, ["key", "label", "role", "shard", "size", "sha256"], manifest_path)
    verify_shards(manifest, split_dir, "split shards")  # before any Ray worker reads them
    shards = {role: tuple(sorted({join(split_dir, r["shard"]) for r in manifest if r["role"] == role}))
              for role in ("train", "val")}
    return task, shards, stats["train_total"]


def _require_file(path: str | Path, producer: str) -> None:
    if not exists(str(path)):
        raise DataError(f"{path} not found; run {producer} first")


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


def save_job(path: Path, job: TrainJob) -> None:
    record = {"stage": job.stage, "config": dataclasses.asdict(job.config), "task": dataclasses.asdict(job.task),
              "stage1": dataclasses.asdict(job.stage1) if job.stage1 else None}
    write_json(path, record)


def load_job(run_dir: str | Path) -> tuple[str, StageConfig, Task, StageConfig | None]:
    """(stage, stage config, task, stage-1 config) recorded by `train_stage` in `run_dir`."""
    _require_file(Path(run_dir) / JOB_FILE, "the training stage that writes it (dvc repro stage1 / stage2)")
    record = json.loads((Path(run_dir) / JOB_FILE).read_text())
    stage1 = from_mapping(Stage1Config, record["stage1"], "stage1") if record["stage1"] else None
    return (record["stage"], from_mapping(STAGE_CONFIGS[record["stage"]], record["config"], record["stage"]),
            from_mapping(Task, record["task"], "task"), stage1)


def train_stage(job: TrainJob, ray_cfg: RayConfig, out_dir: str | Path, metrics_path: str | Path,
                history_path: str | Path) -> str:
    """Train `job` on Ray and write `out_dir` (model.pt = best weights, job.json), the best epoch's
    metrics and the per-epoch history. Returns the one-line summary."""
    started = time.perf_counter()
    result = run_training(job, ray_cfg, run_name(job), [epoch_log(history_path)])
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
