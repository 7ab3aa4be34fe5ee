"""The evaluate stage: the best model of the last training stage over the test shards, on Ray workers
(each test image exactly once), then predictions and the metrics of docs/methods.md written to disk."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.longtail.metrics import confusion_matrix, long_tail_metrics, per_class_table
from pipeline.io import atomic_dir, write_json, write_rows
from pipeline.training.config import RayConfig
from pipeline.training.launch import _quiet, init_ray, storage_uri, torch_config
from pipeline.training.loop import assemble_method, gathered_predictions
from pipeline.training.run import WEIGHTS_FILE, load_job


@dataclass(frozen=True)
class EvalJob:
    run_dir: str  # absolute: a train_stage output directory
    test_shards: tuple[str, ...]
    batch_size: int = 256
    loader_workers: int = 0


def evaluate_worker(config: dict) -> dict | None:
    """Ray Train entry point: rank 0 returns all ranks' predictions, sorted by key."""
    import ray.train
    import ray.train.torch

    job: EvalJob = config["job"]
    stage, stage_cfg, task, stage1_cfg = load_job(job.run_dir)
    method = assemble_method(stage, stage_cfg, task, stage1_cfg)
    method.load_state_dict(torch.load(Path(job.run_dir) / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    device = ray.train.torch.get_device()
    context = ray.train.get_context()
    rank = context.get_world_rank()
    predictions = gathered_predictions(method.to(device), job.test_shards, task, device, job.batch_size,
                                       job.loader_workers, rank, context.get_world_size())
    return predictions if rank == 0 else None


def predict_on_ray(job: EvalJob, cfg: RayConfig) -> dict:
    init_ray(cfg)  # first: it sets the environment Ray reads when imported
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if cfg.gpus_per_worker else {})}
    trainer = TorchTrainer(evaluate_worker, train_loop_config={"job": job}, torch_config=torch_config(),
                           scaling_config=ScalingConfig(num_workers=cfg.num_workers,
                                                        use_gpu=cfg.gpus_per_worker > 0,
                                                        resources_per_worker=resources),
                           run_config=RunConfig(name=f"evaluate-{int(time.time())}", storage_path=storage_uri(cfg.storage_path),
                                                logging_config=_quiet()))
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"evaluation failed: {result.error}") from result.error
    return result.return_value


def write_evaluation(predictions: dict, run_dir: str | Path, out_dir: str | Path,
                     metrics_path: str | Path) -> dict:
    """predictions.parquet (key, label, predicted, top5, logits), per_class.csv, confusion.csv
    in `out_dir`; the summary metrics as JSON at `metrics_path`. Returns the metrics."""
    _, _, task, _ = load_job(run_dir)
    logits = torch.from_numpy(np.asarray(predictions["logits"], dtype=np.float64))
    probabilities = torch.softmax(logits, dim=1).numpy()
    labels = np.asarray(predictions["labels"], dtype=np.int64)
    predicted = probabilities.argmax(1)
    top5 = np.argsort(-probabilities, axis=1)[:, : min(5, task.num_classes)]
    metrics = long_tail_metrics(labels, predicted, probabilities, task.class_counts,
                                task.many_threshold, task.few_threshold)
    with atomic_dir(out_dir) as tmp:
        table = pa.table({"key": predictions["keys"], "label": labels, "predicted": predicted,
                          "top5": [row.tolist() for row in top5],
                          "logits": [row.tolist() for row in np.asarray(predictions["logits"], np.float32)]})
        pq.write_table(table, tmp / "predictions.parquet")
        rows = per_class_table(labels, predicted, task.class_counts, task.class_names,
                               task.many_threshold, task.few_threshold)
        write_rows(tmp / "per_class.csv", rows, list(rows[0]))
        matrix = confusion_matrix(labels, predicted, task.num_classes)
        np.savetxt(tmp / "confusion.csv", matrix, fmt="%d", delimiter=",")
    write_json(metrics_path, {k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()})
    return metrics
