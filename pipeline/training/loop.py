"""The per-worker training loop, plain PyTorch: `fit` gets its rank, world size, device, the
checkpoint to resume from and a report function from its caller (pipeline.training.worker on Ray,
or a test) and calls `report` once per epoch with the metrics (and rank 0's checkpoint).
"""
from __future__ import annotations

import copy
import math
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.data.loader import steps_per_epoch
from pipeline.distributed import backward_scale, gather_objects
from pipeline.samplers import SAMPLERS, ClassSampler, ProgressiveSampler
from pipeline.training import checkpoint
from pipeline.training.augment import normalize
from pipeline.training.checkpoint import epoch_seed
from pipeline.training.config import StageConfig
from pipeline.training.data import open_training_data
from pipeline.training.job import TrainJob, assemble_method
from pipeline.training.methods import Method
from pipeline.training.predict import gather_predictions, predict, validation_metrics


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
