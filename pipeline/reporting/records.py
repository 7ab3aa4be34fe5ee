"""One evaluated run, read from the pipeline's own files, wherever they live.

A run is the set of files the pipeline leaves behind: the params file, the test metrics, the split
statistics, the stage-2 job record and evaluation's per-class table, confusion matrix and predictions,
at the paths (relative to a repository root) that ``RunFiles`` names; the app hands them in. The
workspace, a DVC experiment (read at its git ref) and a kept run (a folder with the same layout,
written by ``keep_run``) are all read through one ``Reader``, so every source gives the same record.
A kept run stores its reliability bins instead of the predictions, which can be large.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq
import yaml

from pipeline.data.errors import DataError
from pipeline.data.split_stats import SplitStats, parse_split_stats
from pipeline.io import atomic_dir
from pipeline.longtail.metrics import ReliabilityBins, reliability_bins

Reader = Callable[[str], "bytes | None"]  # relative path -> its bytes, None when the run lacks it


@dataclass(frozen=True)
class RunFiles:
    """Where a run's files lie, relative to its root (the workspace, an experiment's commit, a kept run's
    folder): the app's layout, handed in."""

    params: str  # the params file the run was made with: its data.dataset labels the run
    test_metrics: str
    split_stats: str
    job: str  # the stage-2 run's job record
    per_class: str
    confusion: str
    predictions: str
    reliability: str  # a kept run's reliability bins, stored instead of its predictions

    @property
    def required(self) -> tuple[str, ...]:
        return (self.test_metrics, self.split_stats, self.job, self.per_class, self.confusion)

    @property
    def kept(self) -> tuple[str, ...]:
        """What ``keep_run`` copies (it writes the reliability bins)."""
        return (self.params, *self.required)


class RunError(DataError):
    """A run's files are missing or unreadable (the message names the run and the file)."""


@dataclass(frozen=True)
class RunLabel:
    """What distinguishes runs in the report; ``group_key`` leaves the seed out (seeds are averaged)."""

    dataset: str
    profile: str
    rho: float
    stage1: str
    stage2: str
    seed: str
    backbone: str
    epochs: str  # "stage1+stage2"
    params: str  # the methods' knobs and the stages' non-default settings (lr, ...), "k=v" joined
    config: str = ""  # digest of the whole resolved run config but its seeds (see ``config_digest``)

    @property
    def group_key(self) -> tuple:
        """Only runs whose resolved config differs in nothing but the seed share a row: a mean +- std
        over anything else would mix configurations."""
        return (self.dataset, self.profile, self.rho, self.stage1, self.stage2, self.backbone,
                self.epochs, self.params, self.config)


@dataclass(frozen=True)
class RunRecord:
    """An evaluated run: its label, test metrics, per-class rows, confusion matrix and reliability bins."""

    name: str
    source: str  # workspace | commit | experiment | kept
    label: RunLabel
    metrics: dict[str, float | None]
    per_class: tuple[dict, ...]
    confusion: np.ndarray = field(repr=False)
    reliability: ReliabilityBins | None = field(repr=False)
    split: SplitStats = field(repr=False)
    digest: str = ""  # of the evaluation's files: the same run found in two places is one run


def _knobs(prefix: str, params: dict) -> list[str]:
    return [f"{prefix}.{k}={v}" for k, v in sorted(params.items())]


def _format(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _settings(prefix: str, stage: dict) -> list[str]:
    """The stage's settings besides method, knobs, epochs and seed that differ from StageConfig's
    defaults (the tuned lr or weight decay among them), so rows that differ say how."""
    from pipeline.training.config import StageConfig

    shown = ("method", "params", "epochs", "seed")
    defaults = {f.name: f.default for f in dataclasses.fields(StageConfig)
                if f.name not in shown and f.default is not dataclasses.MISSING}
    return [f"{prefix}.{k}={_format(stage[k])}" for k, default in defaults.items()
            if k in stage and _json_value(stage[k]) != _json_value(default)]


def _json_value(value):
    return json.loads(json.dumps(value))  # tuples as lists, as job.json stores them


def config_digest(params: dict, job: dict, split: SplitStats) -> str:
    """SHA-256 (12 hex) of everything that resolves a run but its seeds: the dataset, the split's
    profile, both stages' full configs (tuned values included, as job.json records what trained)
    and the task (model, classes, thresholds)."""
    resolved = {"dataset": (params.get("data") or {}).get("dataset"),
                "split": {k: v for k, v in dataclasses.asdict(split).items() if k != "seed"},
                "stage1": {k: v for k, v in job["stage1"].items() if k != "seed"},
                "stage2": {k: v for k, v in job["config"].items() if k != "seed"},
                "task": job["task"]}
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_label(params: dict, job: dict, split: SplitStats) -> RunLabel:
    """The label from the run's params (dataset), its stage-2 job record (methods, seeds) and split stats."""
    stage1, stage2 = job["stage1"], job["config"]
    seeds = {stage1["seed"], stage2["seed"]}
    return RunLabel(
        dataset=str((params.get("data") or {}).get("dataset", "unknown")),
        profile=split.profile, rho=split.imbalance_ratio,
        stage1=stage1["method"], stage2=stage2["method"],
        seed=str(stage1["seed"]) if len(seeds) == 1 else f"{stage1['seed']}/{stage2['seed']}",
        backbone=job["task"]["model"]["backbone"],
        epochs=f"{stage1['epochs']}+{stage2['epochs']}",
        params=", ".join(_knobs("s1", stage1.get("params") or {}) + _settings("s1", stage1)
                         + _knobs("s2", stage2.get("params") or {}) + _settings("s2", stage2)),
        config=config_digest(params, job, split),
    )


def _bins_from_predictions(data: bytes) -> ReliabilityBins:
    table = pq.read_table(io.BytesIO(data), columns=["label", "logits"]).to_pydict()
    logits = np.asarray(table["logits"], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    correct = probabilities.argmax(axis=1) == np.asarray(table["label"])
    return reliability_bins(probabilities.max(axis=1), correct)


def _bins_to_json(bins: ReliabilityBins) -> dict:
    return {"edges": bins.edges.tolist(), "count": bins.count.tolist(),
            "confidence": [None if np.isnan(v) else float(v) for v in bins.confidence],
            "accuracy": [None if np.isnan(v) else float(v) for v in bins.accuracy]}


def _bins_from_json(data: bytes) -> ReliabilityBins:
    raw = json.loads(data)
    as_float = lambda key: np.array([np.nan if v is None else v for v in raw[key]], dtype=np.float64)  # noqa: E731
    return ReliabilityBins(edges=np.asarray(raw["edges"], dtype=np.float64), confidence=as_float("confidence"),
                           accuracy=as_float("accuracy"), count=np.asarray(raw["count"], dtype=np.int64))


def _per_class_rows(data: bytes) -> tuple[dict, ...]:
    rows = []
    for row in csv.DictReader(io.StringIO(data.decode())):
        rows.append({"name": row["name"], "train_count": int(row["train_count"]), "group": row["group"],
                     "support": int(row["support"]), "accuracy": float(row["accuracy"]),
                     "f1": float(row["f1"])})
    return tuple(rows)


def load_run(read: Reader, files: RunFiles, name: str, source: str) -> RunRecord:
    """Read one run's `files` through `read`; RunError names the run and the first missing file."""
    content = {}
    for path in files.required:
        data = read(path)
        if data is None:
            raise RunError(f"run {name!r} ({source}): {path} is missing")
        content[path] = data
    params = yaml.safe_load(read(files.params) or b"{}") or {}
    split, job = parse_split_stats(content[files.split_stats], files.split_stats), json.loads(content[files.job])
    predictions = read(files.predictions)
    if predictions is not None:
        reliability = _bins_from_predictions(predictions)
    else:
        stored = read(files.reliability)
        reliability = _bins_from_json(stored) if stored is not None else None
    digested = (files.test_metrics, files.job, files.per_class)
    digest = hashlib.sha256(b"\0".join(content[p] for p in digested)).hexdigest()
    return RunRecord(name=name, source=source, label=run_label(params, job, split),
                     metrics=json.loads(content[files.test_metrics]),
                     per_class=_per_class_rows(content[files.per_class]),
                     confusion=np.loadtxt(io.StringIO(content[files.confusion].decode()), delimiter=",",
                                          dtype=np.int64, ndmin=2),
                     reliability=reliability, split=split, digest=digest)


def directory_reader(root: str | Path) -> Reader:
    """Files under `root` (the workspace or a kept run's folder)."""
    root = Path(root)

    def read(path: str) -> bytes | None:
        target = root / path
        return target.read_bytes() if target.is_file() else None

    return read


def keep_run(root: str | Path, files: RunFiles, kept_dir: str | Path, name: str) -> Path:
    """Copy the workspace's evaluated run (its small files + reliability bins) to kept_dir/name, in the
    same layout."""
    if not name or "/" in name or name.startswith("."):
        raise RunError(f"kept run name {name!r}: use a plain folder name")
    root = Path(root)
    record = load_run(directory_reader(root), files, name, "workspace")  # checks the run is complete
    target = root / kept_dir / name  # an absolute kept_dir stays as it is
    with atomic_dir(target) as tmp:
        for path in files.kept:
            if (root / path).is_file():
                (tmp / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / path, tmp / path)
        if record.reliability is not None:
            (tmp / files.reliability).write_text(json.dumps(_bins_to_json(record.reliability), indent=1) + "\n")
    return target
