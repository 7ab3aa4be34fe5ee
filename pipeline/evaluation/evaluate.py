"""The evaluate stage: the best model of the last training stage over the test shards, on Ray workers
(pipeline.evaluation.worker; each test image exactly once), then predictions and the metrics of
docs/methods.md written to disk."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.evaluation.worker import EvalJob, evaluate_worker
from pipeline.io import atomic_dir, write_json, write_rows
from pipeline.longtail.metrics import confusion_matrix, long_tail_metrics, per_class_table
from pipeline.training.config import RayConfig
from pipeline.training.job import load_job
from pipeline.training.launch import run_on_ray


def predict_on_ray(job: EvalJob, cfg: RayConfig) -> dict:
    """Every test image's prediction (keys, labels, logits), sorted by key."""
    result = run_on_ray(evaluate_worker, job, cfg, f"evaluate-{int(time.time())}", [])
    if result.error is not None:
        raise RuntimeError(f"evaluation failed: {result.error}") from result.error
    return result.return_value


def write_evaluation(predictions: dict, run_dir: str | Path, out_dir: str | Path,
                     metrics_path: str | Path) -> dict:
    """predictions.parquet (key, label, predicted, top5, logits), per_class.csv, confusion.csv
    in `out_dir`; the summary metrics as JSON at `metrics_path`. Returns the metrics."""
    task = load_job(run_dir).task
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
