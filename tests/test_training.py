"""Every stage-1 and stage-2 method trains in the real loop (in-process, no Ray) on digits, and the
saved best weights reproduce the validation metrics that were reported for them."""
import math
import shutil
from pathlib import Path

import pytest
import torch

from datagen import make_digits_split
from pipeline.data.contracts import read_split
from pipeline.training.config import STAGE_CONFIGS, ModelConfig, RayConfig
from pipeline.training import checkpoint
from pipeline.training.checkpoint import BEST_FILE, STATE_FILE
from pipeline.training.job import TrainJob, assemble_method, task_of, train_job
from pipeline.training.loop import fit
from pipeline.training.predict import gathered_predictions, validation_metrics
from pipeline.training.methods import STAGE1
from pipeline.training.rebalance import STAGE2

GREY = ModelConfig(backbone="resnet_small", channels=1, image_size=16, mean=(0.5,), std=(0.5,))
RGB = ModelConfig(backbone="resnet_small", channels=3, image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
CLIP_METHODS = {"clip", "zeroshot_clip"}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    return make_digits_split(tmp_path_factory.mktemp("digits"))


def run(job: TrainJob, out: Path, resume: dict | None = None) -> list[dict]:
    """fit() on one process, keeping the last checkpoint in `out`; returns the reported metrics."""
    reports = []

    def report(metrics, directory):
        reports.append(metrics)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(directory, out)

    fit(job, rank=0, world=1, device=CPU, resume=resume, report=report)
    return reports


def job_for(split_dir: Path, stage: str, method: str, model: ModelConfig, epochs: int = 1, **extra) -> TrainJob:
    split_data = read_split(split_dir)
    task = task_of(split_data.stats, model)
    params = {"kind": "tiny"} if method in CLIP_METHODS else {}
    config = STAGE_CONFIGS[stage](method=method, params=params, epochs=epochs, batch_size=32, lr=0.05)
    return train_job(stage, config, task, split_data, RayConfig(), **extra)


def check_best_weights_reproduce_metrics(job: TrainJob, out: Path, reports: list[dict]) -> None:
    method = assemble_method(job.stage, job.config, job.task, job.stage1, job.stage1_weights)
    method.load_state_dict(torch.load(out / BEST_FILE, weights_only=True))
    again = validation_metrics(gathered_predictions(method, job.val_shards, job.task, CPU, 64, 0, 0, 1), job.task)
    best = max(reports, key=lambda r: r["val_balanced_accuracy"])
    assert again["val_balanced_accuracy"] == pytest.approx(best["val_balanced_accuracy"])
    assert again["val_top1"] == pytest.approx(best["val_top1"])


@pytest.mark.parametrize("method", STAGE1.names())
def test_stage1_method_trains_and_checkpoints(split_dir, tmp_path, method):
    job = job_for(split_dir, "stage1", method, RGB if method in CLIP_METHODS else GREY)
    reports = run(job, tmp_path / "ckpt")
    assert [r["epoch"] for r in reports] == [1]
    assert math.isfinite(reports[0]["train_loss"])
    assert (reports[0]["train_loss"] > 0) == (method != "zeroshot_clip")  # zero-shot trains nothing
    assert 0.0 <= reports[0]["val_balanced_accuracy"] <= 1.0
    check_best_weights_reproduce_metrics(job, tmp_path / "ckpt", reports)


@pytest.fixture(scope="module")
def stage1_weights(split_dir, tmp_path_factory):
    """A CE and a CLIP stage-1 model (1 epoch each) for the stage-2 methods to build on."""
    out = tmp_path_factory.mktemp("stage1")
    weights = {}
    for method, model in (("ce", GREY), ("clip", RGB)):
        job = job_for(split_dir, "stage1", method, model)
        run(job, out / method)
        weights[method] = (job.config, str(out / method / BEST_FILE))
    return weights


@pytest.mark.parametrize("method", STAGE2.names())
def test_stage2_method_trains_on_frozen_stage1(split_dir, stage1_weights, tmp_path, method):
    first = "clip" if method == "balanced_adapter" else "ce"
    stage1_config, weights = stage1_weights[first]
    job = job_for(split_dir, "stage2", method, RGB if first == "clip" else GREY,
                  stage1=stage1_config, stage1_weights=weights)
    before = torch.load(weights, weights_only=True)
    reports = run(job, tmp_path / "ckpt")
    assert len(reports) == 1 and math.isfinite(reports[0]["train_loss"])
    check_best_weights_reproduce_metrics(job, tmp_path / "ckpt", reports)
    after = torch.load(tmp_path / "ckpt" / BEST_FILE, weights_only=True)
    for name, value in before.items():  # the stage-1 model stayed frozen
        assert torch.equal(after[f"stage1.{name}"], value), name


def test_resume_continues_at_the_next_epoch(split_dir, tmp_path):
    job = job_for(split_dir, "stage1", "ce", GREY, epochs=3)
    straight = run(job, tmp_path / "straight")
    first: list[dict] = []

    class Stop(Exception):
        pass

    def report_once(metrics, directory):  # the run dies right after its first checkpoint
        first.append(metrics)
        shutil.copytree(directory, tmp_path / "after1")
        raise Stop

    with pytest.raises(Stop):
        fit(job, rank=0, world=1, device=CPU, resume=None, report=report_once)
    resumed = run(job, tmp_path / "resumed", resume=checkpoint.load(tmp_path / "after1", CPU))
    assert [r["epoch"] for r in first] == [1] and [r["epoch"] for r in resumed] == [2, 3]
    history = torch.load(tmp_path / "resumed" / STATE_FILE, weights_only=True)["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    # Same data order, same RNG state: resuming reproduces the uninterrupted run.
    assert [r["train_loss"] for r in first + resumed] == pytest.approx([r["train_loss"] for r in straight])
