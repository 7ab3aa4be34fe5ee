"""Predictions of a method over batches, gathered across ranks, and the validation metrics of them:
what the training loop's validation and the evaluate stage's workers share."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from pipeline.distributed import gather_objects
from pipeline.longtail.metrics import long_tail_metrics
from pipeline.training.augment import normalize
from pipeline.training.data import eval_share, stream_batches
from pipeline.training.methods import Method, Task


@torch.no_grad()
def predict(method: Method, batches: Iterable, task: Task, device: torch.device) -> dict:
    """Predictions over `batches` (objects with image, label, key): keys, labels, logits on the host."""
    method.eval()
    keys, labels, logits = [], [], []
    for batch in batches:
        images = normalize(batch.image.to(device), task.model.mean, task.model.std)
        logits.append(method.logits(images).float())
        labels.append(batch.label)
        keys.extend(batch.key)
    num_classes = task.num_classes
    return {"keys": keys,
            "labels": torch.cat(labels).cpu().numpy() if labels else np.zeros(0, np.int64),
            "logits": torch.cat(logits).cpu().numpy() if logits else np.zeros((0, num_classes), np.float32)}


def gather_predictions(mine: dict) -> dict:
    """All ranks' predictions, concatenated and sorted by key (every rank gets them)."""
    parts = gather_objects(mine)
    keys = [k for p in parts for k in p["keys"]]
    order = np.argsort(np.array(keys))
    return {"keys": [keys[i] for i in order],
            "labels": np.concatenate([p["labels"] for p in parts])[order],
            "logits": np.concatenate([p["logits"] for p in parts])[order]}


def gathered_predictions(method: Method, shards: tuple[str, ...], task: Task, device: torch.device,
                         batch_size: int, loader_workers: int, rank: int, world: int) -> dict:
    """Predictions of all ranks over `shards`, each rank streaming its `eval_share` once."""
    batches = stream_batches(eval_share(shards, rank, world), task, batch_size, loader_workers)
    return gather_predictions(predict(method, batches, task, device))


def validation_metrics(predictions: dict, task: Task) -> dict[str, float]:
    logits = torch.from_numpy(predictions["logits"]).double()
    probabilities = torch.softmax(logits, dim=1).numpy()
    metrics = long_tail_metrics(predictions["labels"], probabilities.argmax(1), probabilities,
                                task.class_counts, task.many_threshold, task.few_threshold)
    return {f"val_{k}": v for k, v in metrics.items() if not k.startswith("num_")}
