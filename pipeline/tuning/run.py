"""Driver side of the tune stage: check the sweep against the methods, train the fixed stage-1 model a
stage-2 sweep needs, run the sweep, and write its outputs."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError
from pipeline.data.contracts import SplitOutput
from pipeline.training.config import RayConfig, StageConfig
from pipeline.training.job import WEIGHTS_FILE, TrainJob, assemble_method, train_job
from pipeline.training.methods import Task
from pipeline.training.registry import method_class
from pipeline.training.run import train_stage
from pipeline.tuning import outputs, results
from pipeline.tuning.config import TuneConfig
from pipeline.tuning.space import default_values, overlay, resolve_space
from pipeline.tuning.sweep import SweepJob, run_sweep, total_epochs

FIXED_STAGE1_DIR = "fixed_stage1"


@dataclasses.dataclass(frozen=True)
class TuneOutputs:
    out_dir: Path  # trials.parquet, best_params.yaml, plots/, fixed_stage1/
    summary: Path  # metrics/tune.json
    history: Path  # metrics/tune_history.csv
    importances: Path  # metrics/tune_importances.csv


def apply_overlay(params: dict[str, Any], overlay_: dict[str, Any], section: str) -> dict[str, Any]:
    """`params[section]` with the sweep's best values of that section set (method params merged)."""
    tuned = dict(params.get(section) or {})
    for key, value in (overlay_.get(section) or {}).items():
        tuned[key] = {**(tuned.get(key) or {}), **value} if key == "params" else value
    return tuned


def no_sweep(paths: TuneOutputs) -> str:
    """tune.trials = 0: empty outputs, so stage1 / stage2 train with params.yaml's values."""
    _write(paths, [], [], {"enabled": False}, {}, {}, [])
    return "tune: no sweep (tune.trials = 0); stage1 / stage2 use the values in params.yaml"


def tune_stage(cfg: TuneConfig, stages: dict[str, StageConfig], task: Task, split: SplitOutput,
               ray_cfg: RayConfig, paths: TuneOutputs) -> str:
    """Run the sweep `cfg` over the stage configurations `stages` (keys stage1, stage2) on `split`."""
    started = time.perf_counter()
    dims = resolve_space(cfg.space, {s: stages[s].method for s in cfg.stages})
    configs = {}
    for stage in cfg.stages:
        config = stages[stage]
        if cfg.epochs is not None:
            config = dataclasses.replace(config, epochs=cfg.epochs, warmup_epochs=min(config.warmup_epochs, cfg.epochs))
        configs[stage] = config
    cfg = dataclasses.replace(cfg, grace_epochs=grace_epochs(cfg, configs[cfg.stages[0]], cfg.stages[0]))
    jobs = {stage: train_job(stage, config, task, split, ray_cfg) for stage, config in configs.items()}
    first_point = default_values(dims, configs)
    _check_methods(jobs)
    if cfg.stage == "stage2":
        jobs["stage2"] = _on_fixed_stage1(jobs["stage2"], stages["stage1"], ray_cfg, paths)
    elif cfg.stage == "both":
        jobs["stage2"] = dataclasses.replace(jobs["stage2"], stage1=configs["stage1"])

    trial_ray = dataclasses.replace(ray_cfg, num_workers=cfg.workers_per_trial, cpus_per_worker=cfg.cpus_per_worker,
                                    gpus_per_worker=cfg.gpus_per_worker)
    sweep = SweepJob(jobs, tuple(dims), cfg, trial_ray)
    storage = cfg.storage_path or ray_cfg.storage_path
    print(f"tune: {cfg.trials} trials of {' + '.join(f'{s} {jobs[s].config.method}' for s in jobs)} over "
          f"{', '.join(d.name for d in dims)}; objective {cfg.metric}; up to {total_epochs(sweep)} epochs each, "
          f"{cfg.concurrency} at a time", flush=True)
    records = run_sweep(sweep, ray_cfg, storage, first_point, started)
    wall_s = round(time.perf_counter() - started, 1)  # as the last progress line counts it

    max_epochs = total_epochs(sweep)
    last_stage_from = max_epochs - jobs[cfg.stages[-1]].config.epochs
    rows = results.trial_rows(records, dims, cfg.metric, max_epochs, last_stage_from)
    best = results.best_row(rows)
    history = results.history_rows(rows)
    importances = results.importances(rows, dims, cfg.seed)
    counts = {status: sum(r["status"] == status for r in rows) for status in results.STATUSES}
    default_row = rows[0] if first_point is not None and rows else None  # points_to_evaluate runs first
    summary = {"enabled": True, "stage": cfg.stage, "methods": {s: j.config.method for s, j in jobs.items()},
               "objective": cfg.metric, "num_trials": len(rows),
               "num_completed": counts["completed"], "num_stopped_early": counts["stopped_early"],
               "num_errors": counts["error"], "best_trial": best["trial_id"] if best else None,
               "best_value": best["best_objective"] if best else None,
               "best_params": {d.name: best[d.name] for d in dims} if best else {},
               "default_params": first_point or {},
               "default_value": default_row["best_objective"] if default_row else None,
               "wall_s": wall_s}
    best_overlay = overlay(dims, summary["best_params"]) if best else {}
    _write(paths, rows, dims, summary, best_overlay, importances, history, default_first=first_point is not None)
    if best is None:
        raise RuntimeError(f"tune: none of the {len(rows)} trials reported {cfg.metric}; see the errors above")
    values = ", ".join(f"{k}={v:.4g}" for k, v in summary["best_params"].items())
    versus = (f" (params.yaml values: {summary['default_value']:.4f})"
              if summary["default_value"] is not None else "")
    return (f"tune: {len(rows)} trials ({counts['completed']} completed, {counts['stopped_early']} stopped early, "
            f"{counts['error']} failed) in {summary['wall_s']:.0f} s; best {cfg.metric} "
            f"{summary['best_value']:.4f}{versus} with {values}")


def grace_epochs(cfg: TuneConfig, first: StageConfig, stage: str) -> int:
    """ASHA's grace period: never within the first swept stage's learning-rate warm-up, where a
    trial's early score says little about where it ends (None: the first epoch after warm-up)."""
    if cfg.grace_epochs is None:
        return max(1, min(first.warmup_epochs + 1, first.epochs))
    if cfg.grace_epochs <= first.warmup_epochs:
        raise ConfigError(f"tune.grace_epochs: {cfg.grace_epochs} would let ASHA stop trials during "
                          f"{stage}'s {first.warmup_epochs} warm-up epochs; use more than "
                          f"{first.warmup_epochs}, or null for warm-up + 1")
    return cfg.grace_epochs


def _check_methods(jobs: dict[str, TrainJob]) -> None:
    """Every swept method must learn something; stage-1 params must build (fails before Ray starts)."""
    for stage, job in jobs.items():
        if not method_class(stage, job.config.method).trains or job.config.epochs == 0:
            raise ConfigError(f"tune.stage: {stage} method {job.config.method!r} with {job.config.epochs} epochs "
                              "learns nothing; there is nothing to sweep")
        if stage == "stage1":
            assemble_method(stage, job.config, job.task)


def _on_fixed_stage1(job: TrainJob, stage1: StageConfig, ray_cfg: RayConfig, paths: TuneOutputs) -> TrainJob:
    """A stage-2 sweep runs on one stage-1 model: params.yaml's stage 1, trained here under the same Ray
    run name as the stage1 stage would use, so that stage later resumes the finished run at no cost."""
    fixed = dataclasses.replace(job, stage="stage1", config=stage1)
    directory = paths.out_dir / FIXED_STAGE1_DIR
    print(train_stage(fixed, ray_cfg, directory, directory / "metrics.json", directory / "history.tsv"), flush=True)
    return dataclasses.replace(job, stage1=stage1, stage1_weights=str((directory / WEIGHTS_FILE).resolve()))


def _write(paths: TuneOutputs, rows, dims, summary, best_overlay, importances, history,
           default_first: bool = False) -> None:
    paths.out_dir.mkdir(parents=True, exist_ok=True)
    plots = paths.out_dir / outputs.PLOTS_DIR
    plots.mkdir(exist_ok=True)
    outputs.write_trials(paths.out_dir / outputs.TRIALS_FILE, rows, dims)
    outputs.write_best_params(paths.out_dir / outputs.BEST_PARAMS_FILE, best_overlay, summary)
    outputs.plot_sweep(plots, rows, history, importances, dims, summary.get("objective", ""), default_first)
    outputs.write_metrics(paths.summary, paths.history, paths.importances, summary, history, importances)
