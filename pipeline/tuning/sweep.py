"""Running a sweep on Ray Tune: OptunaSearch (seeded TPE) proposes, ASHA stops poor trials early.

Ray Train V2 runs under Tune through a driver function per trial (a V2 trainer is not a Tune
trainable itself): each trial fits one TorchTrainer per swept stage and forwards every epoch's
validation metrics to Tune, recording them first in its trial log
(pipeline.tuning.trial_log). The sweep is named after a hash of its
configuration and the library source. A rerun does not restore Tune's state
(which holds neither ASHA's rungs nor a finished trial's results reliably): it
starts the same seeded sweep afresh, and each trial replays its log before
training, so finished trials cost nothing and searcher and scheduler decide as
in an uninterrupted sweep; a trial cut short resumes its Ray Train run (named
after the trial key) from its last epoch checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.storage import list_files
from pipeline.training.checkpoint import BEST_FILE
from pipeline.training.config import RayConfig
from pipeline.training.job import TrainJob
from pipeline.training.launch import init_ray, run_on_ray, storage_uri
from pipeline.training.run import code_digest
from pipeline.training.worker import train_worker
from pipeline.tuning.config import TuneConfig
from pipeline.tuning.space import Dimension, apply_values
from pipeline.tuning.trial_log import TrialLog, trial_key


# A trial's driver function only waits on its TorchTrainer, whose workers hold the trial's CPUs and
# GPUs; Tune cannot place an empty resource request, so the driver asks for a sliver of a CPU.
DRIVER_CPUS = 0.01


@dataclass(frozen=True)
class SweepJob:
    """Everything a trial needs; plain data with absolute paths (trials run in Ray actors)."""

    jobs: dict[str, TrainJob]  # swept stage -> its base job (stage2 without stage-1 weights when both)
    dims: tuple[Dimension, ...]
    tune: TuneConfig
    trial_ray: RayConfig  # the Ray Train scaling of one trial
    trial_logs: str = ""  # where each trial's reports are kept (set by run_sweep)


@dataclass(frozen=True)
class TrialRecord:
    """One finished (or stopped, or failed) trial as Tune left it."""

    trial_id: str  # the stable trial key (trial_log.trial_key)
    values: dict[str, Any]  # the sampled value of each dimension
    history: list[dict]  # every epoch's report, in order (stage 1's then stage 2's when both)
    error: str | None


def experiment_name(sweep: SweepJob) -> str:
    """Stable per sweep configuration and code: a rerun restores, a changed sweep starts afresh."""
    record = json.dumps(dataclasses.asdict(sweep), sort_keys=True, default=str) + code_digest()
    return f"tune-{hashlib.sha256(record.encode()).hexdigest()[:12]}"


def total_epochs(sweep: SweepJob) -> int:
    """ASHA's max_t: a trial's epochs over all its stages (one report per epoch)."""
    return sum(job.config.epochs for job in sweep.jobs.values())


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during the sweep; the message says how to resume. A KeyboardInterrupt, so no error
    boundary mistakes it for a failure and the stage's Ctrl-C handler reports it."""


def _trial_index(directory: str) -> int:
    """A trial directory is <trainable>_<trial id>_<creation index>_<values>_<date>."""
    return int(re.search(r"_[0-9a-f]+_(\d+)_", Path(directory).name).group(1))


def _recording_callback(log: TrialLog, stage: str, reports: list[dict]):
    """Ray Train callback: record each new epoch's report in the trial log, then forward it to Tune;
    an epoch the log already holds (replayed) is not forwarded twice."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class RecordedReport(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            if log.seen(reports, stage, metrics[0]["epoch"]):
                return
            reports.append({"stage": stage, **metrics[0]})
            log.save(reports)
            super().after_report(run_context, metrics, checkpoint)

    return RecordedReport()


def run_trial(values: dict, sweep: SweepJob) -> None:
    """Tune's driver function for one trial: replay what this trial reported in an earlier run of
    the sweep, then train each swept stage with the trial's values (finished Ray Train runs return
    at once, an interrupted one resumes from its checkpoint)."""
    from ray import tune

    key = trial_key(_trial_index(tune.get_context().get_trial_dir()), values)
    log = TrialLog(sweep.trial_logs, key)
    reports = log.load()
    for report in reports:
        tune.report({k: v for k, v in report.items() if k != "stage"})
    stage1_weights, stage1_config = None, None
    for stage, base in sweep.jobs.items():
        job = dataclasses.replace(base, config=apply_values(stage, base.config, list(sweep.dims), values))
        if stage == "stage2" and stage1_config is not None:  # both stages: on this trial's stage-1 model
            job = dataclasses.replace(job, stage1=stage1_config, stage1_weights=stage1_weights)
        result = run_on_ray(train_worker, job, sweep.trial_ray, f"{key}-{stage}",
                            [_recording_callback(log, stage, reports)])
        if result.error is not None:
            raise RuntimeError(f"{stage} of trial {key} failed: {result.error}")
        reports = log.load()  # what the callback recorded (it ran in Ray Train's controller)
        if stage == "stage1":
            stage1_config, stage1_weights = job.config, str(Path(result.checkpoint.path) / BEST_FILE)


def _search_space(dims: tuple[Dimension, ...]) -> dict:
    from ray import tune

    space = {}
    for dim in dims:
        if dim.scale == "int":
            space[dim.name] = tune.randint(int(dim.low), int(dim.high) + 1)  # upper bound exclusive
        elif dim.scale == "log":
            space[dim.name] = tune.loguniform(dim.low, dim.high)
        else:
            space[dim.name] = tune.uniform(dim.low, dim.high)
    return space


def _progress(metric: str, num_trials: int, max_epochs: int, started: float, names: tuple[str, ...]):
    """A Tune callback printing one compact line whenever a trial ends or the best value improves;
    trials are named by their key (trial_log.trial_key), as in the sweep's outputs."""
    from ray.tune import Callback

    def _key(trial) -> str:  # a trial's experiment tag is <creation index>_<values>
        return trial_key(int(trial.experiment_tag.split("_")[0]), {n: trial.config[n] for n in names})

    def _best(trials) -> tuple[float, str] | None:
        """(best value, trial id) over every result the trials have reported."""
        values = [(t.metric_analysis[metric]["max"], _key(t)) for t in trials if metric in t.metric_analysis]
        return max(values, default=None)

    class SweepProgress(Callback):
        # Counts are read off the trials on every event, not kept here.
        def __init__(self) -> None:
            self.best = None
            self.started = started  # the stage's start: the summary's wall time counts from there too

        def _line(self, trials, ended=None, failed: bool = False, latest: tuple | None = None) -> None:
            over = {t.trial_id: t for t in trials if t.status in ("TERMINATED", "ERROR")}
            errors = {t.trial_id for t in over.values() if t.status == "ERROR"}
            if ended is not None:
                over[ended.trial_id] = ended
            if failed:
                errors.add(ended.trial_id)
            early = sum(key not in errors and (t.last_result or {}).get("training_iteration", 0) < max_epochs
                        for key, t in over.items())
            running = sum(t.status == "RUNNING" and t.trial_id not in over for t in trials)
            # Tune adds a result to the trial's metric analysis after the callbacks: `latest` is that result
            best = max(filter(None, (_best(trials), latest)), default=None)
            best = f"{best[0]:.4f} (trial {best[1]})" if best else "-"
            print(f"tune: {len(over)}/{num_trials} done ({early} stopped early, {len(errors)} failed), "
                  f"{running} running, best {metric} {best}, {time.perf_counter() - self.started:.0f} s",
                  flush=True)

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if self.best is None:  # start from what the other trials reached
                self.best = (_best([t for t in trials if t is not trial]) or (None,))[0]
            value = result.get(metric)
            if value is not None and (self.best is None or value > self.best):
                self.best = value
                self._line(trials, latest=(value, _key(trial)))

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self._line(trials, ended=trial)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._line(trials, ended=trial, failed=True)

    return SweepProgress()


def run_sweep(sweep: SweepJob, ray_cfg: RayConfig, storage_path: str,
              first_point: dict[str, Any] | None, started: float) -> list[TrialRecord]:
    """Run (or rerun, replaying finished trials) the sweep; `first_point` (the params.yaml values) is
    evaluated first so the best trial is compared with the defaults under the same budget. Returns
    the trials in the order they were created. Ctrl-C raises SweepInterrupted."""
    cfg = sweep.tune
    # Tune's own tables and banners would bury the one progress line (verbose=0 keeps the new
    # console reporter's banners; the legacy one prints nothing).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C raises KeyboardInterrupt at once instead of Tune's graceful stop and its hint to call
    # Tuner.restore, which is not how this sweep resumes.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    trial_cpus = cfg.workers_per_trial * cfg.cpus_per_worker + DRIVER_CPUS
    init_ray(ray_cfg, min_cpus=cfg.concurrency * trial_cpus, log_to_driver=False)
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    storage = storage_uri(storage_path)
    name = experiment_name(sweep)
    max_epochs = total_epochs(sweep)
    logs = f"{storage}/{name}-trials"
    # Each trial's Ray Train runs (their epoch checkpoints) sit beside the experiment, not among others.
    sweep = dataclasses.replace(sweep, trial_logs=logs, trial_ray=dataclasses.replace(
        sweep.trial_ray, storage_path=f"{storage}/{name}-train"))
    recorded = len(list_files(logs))
    if recorded:
        print(f"tune: resuming {name}: {recorded} trials recorded in {logs} are replayed, not retrained",
              flush=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trainable = tune.with_parameters(run_trial, sweep=sweep)
    trainable = tune.with_resources(trainable, {"CPU": DRIVER_CPUS})
    run_config = tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                callbacks=[_progress(cfg.metric, cfg.trials, max_epochs, started,
                                                           tuple(d.name for d in sweep.dims))])
    searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=cfg.seed), metric=cfg.metric, mode="max",
                            points_to_evaluate=[first_point] if first_point else None)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_epochs, grace_period=cfg.grace_epochs,
                              reduction_factor=cfg.reduction_factor)
    tuner = tune.Tuner(trainable, param_space=_search_space(sweep.dims), run_config=run_config,
                       tune_config=tune.TuneConfig(metric=cfg.metric, mode="max", search_alg=searcher,
                                                   scheduler=scheduler, num_samples=cfg.trials,
                                                   max_concurrent_trials=cfg.concurrency,
                                                   time_budget_s=cfg.time_budget_s))
    try:
        grid = tuner.fit()
    except KeyboardInterrupt:
        raise SweepInterrupted(f"tune: interrupted; run the same command again (`ltp tune` or `dvc repro tune`) "
                               f"to resume: the trials recorded in {logs} are replayed, not retrained") from None
    records = []
    for result in grid:
        frame = result.metrics_dataframe
        history = frame.to_dict("records") if frame is not None else []
        values = {dim.name: result.config[dim.name] for dim in sweep.dims}
        index = _trial_index(result.path)
        records.append((index, TrialRecord(trial_key(index, values), values, history,
                                           None if result.error is None else str(result.error))))
    return [record for _, record in sorted(records, key=lambda pair: pair[0])]
