"""The per-worker training loop that Ray Train runs on every rank, and the job it receives.

Ray calls stay at the edges: `train_worker` reads rank / world size / device /
checkpoint from Ray and reports one metrics dict (with a checkpoint from rank 0)
per epoch; everything between is plain PyTorch.
"""
from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist

from pipeline.data.loader import steps_per_epoch
from pipeline.distributed import backward_scale
from pipeline.longtail.metrics import long_tail_metrics
from pipeline.samplers import SAMPLERS, ClassSampler, ProgressiveSampler
from pipeline.training import checkpoint
from pipeline.training.augment import normalize
from pipeline.training.checkpoint import BEST_FILE, STATE_FILE, epoch_seed
from pipeline.training.config import StageConfig
from pipeline.training.data import eval_share, open_training_data, stream_batches
from pipeline.training.methods import Method, Task, build_stage1
from pipeline.training.rebalance import build_stage2

__all__ = ["BEST_FILE", "STATE_FILE", "TrainJob", "fit", "gathered_predictions", "train_worker"]


@dataclass(frozen=True)
class TrainJob:
    """Everything a worker needs; plain data with absolute paths (workers run elsewhere)."""

    stage: str  # "stage1" or "stage2"
    config: StageConfig  # the stage being trained
    task: Task
    train_shards: tuple[str, ...]
    val_shards: tuple[str, ...]
    num_train: int
    loader_workers: int = 0
    stage1: StageConfig | None = None  # stage2: how to rebuild the stage-1 model
    stage1_weights: str | None = None  # stage2: the stage-1 best weights


def assemble_method(stage: str, config: StageConfig, task: Task, stage1: StageConfig | None = None,
                    stage1_weights: str | None = None) -> Method:
    """Build a stage's method; a stage-2 method wraps a stage-1 model (with `stage1_weights` if given,
    else random weights that the caller overwrites with a saved stage-2 state dict)."""
    if stage == "stage1":
        return build_stage1(config.method, config.params, task)
    first = build_stage1(stage1.method, stage1.params, task)
    if stage1_weights is not None:
        first.load_state_dict(torch.load(stage1_weights, map_location="cpu", weights_only=True))
    return build_stage2(config.method, config.params, first, task)


def learning_rate_factor(cfg: StageConfig, step: int, steps: int) -> float:
    """lr multiplier at global `step` (of `steps` per epoch): linear warm-up, then cosine / step / constant."""
    epoch = step / steps
    if epoch < cfg.warmup_epochs:
        return (step + 1) / (cfg.warmup_epochs * steps)
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
        return 0.5 * (1.0 + math.cos(math.pi * min((epoch - cfg.warmup_epochs) / span, 1.0)))
    if cfg.schedule == "step":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return 1.0


def make_optimizer(cfg: StageConfig, method: Method, device: torch.device) -> torch.optim.Optimizer:
    """SGD or AdamW updating all parameters in one fused kernel (CUDA) or multi-tensor ops (CPU)."""
    params = [p for p in method.parameters() if p.requires_grad]
    kernel = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kernel)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kernel)


def compile_method(method: Method, cfg: StageConfig, device: torch.device) -> bool:
    """`compile: true`: torch.compile the method in place (state_dict keys stay those of the plain
    module); on CUDA in "reduce-overhead" mode, which replays each step as a CUDA graph. Graphs
    that cannot be captured (host work in a loss, dynamic shapes) run un-graphed: torch falls back
    per graph and says why once. Returns whether steps run as CUDA graphs."""
    if not cfg.compile:
        return False
    graphs = device.type == "cuda"
    method.compile(mode="reduce-overhead" if graphs else None)
    return graphs


def make_sampler(name: str, epochs: int) -> ClassSampler:
    """A registered sampler; the progressive one moves from instance- to class-balanced over `epochs`."""
    cls = SAMPLERS.get(name)
    return cls(epochs) if cls is ProgressiveSampler else cls()


def gather_objects(obj: Any) -> list[Any]:
    """all_gather_object over ranks; [obj] without a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


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


def _cpu_copy(state: dict) -> dict:
    """A detached CPU copy of a state dict (extra states, e.g. a loss tracker, are deep-copied)."""
    return {k: v.detach().cpu().clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in state.items()}


Report = Callable[[dict, "Path | None"], None]  # (metrics, checkpoint directory or None) -> None


def _distributed(method: Method, device: torch.device) -> torch.nn.Module:
    """DDP over the process group Ray Train (or a test) set up; gradients all-reduced across ranks."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(method, device_ids=[device.index] if device.type == "cuda" else None)


def fit(job: TrainJob, *, rank: int, world: int, device: torch.device, resume: dict | None,
        report: Report) -> None:
    """Train `job` on this rank from epoch 0 or from `resume`; after every epoch call `report`
    with the metrics and, on rank 0, a directory holding the checkpoint (it is deleted after).

    Every random draw of epoch e is seeded by (seed, rank, e) when the epoch starts, so a run
    resumed from the checkpoint of epoch e - 1 trains exactly as the uninterrupted run did.
    """
    cfg, task = job.config, job.task
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    method = assemble_method(job.stage, cfg, task, job.stage1, job.stage1_weights).to(device)
    if device.type == "cuda":
        method = method.to(memory_format=torch.channels_last)
    graphs = compile_method(method, cfg, device)
    trains = method.trains and cfg.epochs > 0
    epochs = cfg.epochs if trains else 1
    steps = steps_per_epoch(job.num_train, cfg.batch_size, world)
    # Nothing to learn (zero-shot, tau-norm, none): a placeholder keeps one checkpoint format.
    placeholder = [torch.zeros(1, requires_grad=True)]
    optimizer = make_optimizer(cfg, method, device) if trains else torch.optim.SGD(placeholder, lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate_factor(cfg, s, steps))

    start_epoch, best, history, best_state = 0, -math.inf, [], None
    if resume is not None:
        method.load_state_dict(resume["method"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        start_epoch, best, history = resume["epoch"] + 1, resume["best"], resume["history"]
        best_state = resume["best_state"]
    model = _distributed(method, device) if trains and world > 1 else method
    sampler = make_sampler(cfg.sampler or method.default_sampler, epochs)
    counts = np.asarray(task.class_counts)
    data = open_training_data(job, rank, world, device, trains, sampler.repeat_factors(counts, start_epoch))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    for epoch in range(start_epoch, epochs):
        torch.manual_seed(epoch_seed(cfg.seed, rank, epoch, "augment"))
        started, seen = time.perf_counter(), 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # read once per epoch: no sync per step
        if trains:
            model.train()
            factors = sampler.repeat_factors(counts, epoch)
            for batch in data.train.epoch(epoch, factors, steps):
                if cfg.batched_augment:  # uint8 to the device (4x less traffic than float), augment there
                    views = method.augment(batch.image.to(device, non_blocking=True), batch.key, batched=True)
                else:
                    views = [v.to(device, non_blocking=True) for v in method.augment(batch.image.cpu(), batch.key)]
                views = [normalize(v, task.model.mean, task.model.std) for v in views]
                if device.type == "cuda":
                    views = [v.contiguous(memory_format=torch.channels_last) for v in views]
                labels = batch.label.to(device, non_blocking=True)
                if graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                with autocast:
                    out = model(views, labels, batch.key, epoch)
                optimizer.zero_grad(set_to_none=True)
                (out["loss"] * backward_scale(method.loss_fn)).backward()
                optimizer.step()
                scheduler.step()
                loss_sum += out["loss"].detach() * len(batch.key)
                seen += len(batch.key)
            method.end_epoch(epoch)
        predictions = gather_predictions(predict(method, data.validation(cfg.batch_size * 2), task, device))
        metrics = validation_metrics(predictions, task)
        throughput = sum(gather_objects(seen)) / max(time.perf_counter() - started, 1e-9)
        metrics.update(epoch=epoch + 1, train_loss=float(loss_sum) / max(seen, 1),
                       lr=optimizer.param_groups[0]["lr"], images_per_s=throughput)
        if metrics["val_balanced_accuracy"] > best or best_state is None:
            best = metrics["val_balanced_accuracy"]
            best_state = _cpu_copy(method.state_dict())
        metrics["best_val_balanced_accuracy"] = best
        history.append(metrics)
        if rank == 0:
            print(f"[{job.stage}] epoch {epoch + 1}/{epochs} loss {metrics['train_loss']:.4f} "
                  f"val bal-acc {metrics['val_balanced_accuracy']:.4f} (best {best:.4f}) "
                  f"few {metrics['val_few_accuracy']:.4f} lr {metrics['lr']:.4g} "
                  f"{throughput:.0f} img/s", flush=True)
        with tempfile.TemporaryDirectory() as directory:
            if rank == 0:
                checkpoint.save(Path(directory), {
                    "method": method.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch, "best": best, "history": history},
                    best_state)
            report(metrics, Path(directory) if rank == 0 else None)


def train_worker(config: dict) -> None:
    """Ray Train entry point: `fit` with Ray's rank, device and checkpoint; reports go to Ray."""
    import logging

    import ray.train
    import ray.train.torch
    from ray.train.v2._internal.execution import context as report_context

    # Ray Train V2 logs every report at INFO under a logger named by its source file, not "ray.train",
    # so LoggingConfig(log_level="WARNING") does not reach it; this worker's epoch line says enough.
    logging.getLogger(report_context.__file__).setLevel(logging.WARNING)
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
