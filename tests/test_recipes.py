"""Every shipped params file runs: fetch -> prepare -> split (the real stages) on a dataset generated
in the official format of the recipe's source, then one training step of its stage-1 method and
its stage-2 method through the training loop (in-process, no Ray).

Sizes are shrunk so the whole file runs in about a minute on 2 cores: fewer images (the generated
dataset), a smaller carve-out and n_max, 16-pixel inputs (32 for the tiny CLIP), and an epoch of exactly one step of BATCH
images (the job's num_train says one batch; the stream stops there) before the validation pass. Everything that makes the recipe what it is stays: the data source and its format,
the profile, the stage-1 and stage-2 methods with their knobs, the optimiser and schedule kind, the
backbone (CLIP towers excepted: no pretrained weights offline, so the tiny test CLIP stands in).
The full-size CIFAR-100 split of the CIFAR recipes is tests/test_split.py (slow).
"""
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from datagen import make_cifar_archive, make_idx_dataset, make_split_lists
from pipeline.config import parse_section
from pipeline.data.contracts import read_split
from pipeline.training.checkpoint import BEST_FILE
from pipeline.training.config import ModelConfig, RayConfig, Stage1Config, Stage2Config, StageConfig
from pipeline.training.job import task_of, train_job
from pipeline.training.loop import fit
from stages.__main__ import main as ltp

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.name for p in ROOT.glob("params*.yaml"))
PER_CLASS = 6  # generated training images per class (array sources)
VAL_PER_CLASS = 1  # the shrunk carve-out
BATCH = 16  # the one training step's batch
CLIP_METHODS = ("clip", "zeroshot_clip")
SPLITLIST_COUNTS = {"train": [12, 8, 5, 3, 2, 1], "val": [2] * 6, "test": [1] * 6}


def test_every_recipe_is_covered():
    assert {"params.yaml", "params-cifar100-lt.yaml", "params-cifar100-lt-decreg.yaml",
            "params-imagenet-lt-bcl.yaml", "params-imagenet-lt-ecvl.yaml", "params-places-lt-jrcl.yaml"} <= set(RECIPES)


def generate_source(data: dict, root: Path) -> tuple[dict, int]:
    """Write the recipe's dataset in its official format under `root`; returns the data section that
    points at it and the number of classes."""
    dataset = data["dataset"]
    if dataset == "fashion-mnist":
        make_idx_dataset(root, per_class_train=PER_CLASS, per_class_test=1)
        return {**data, "path": str(root), "download": False, "verify": False}, 10
    if dataset == "cifar100":
        root.mkdir(parents=True)
        make_cifar_archive(root / "cifar-100-python.tar.gz", "cifar100", train_per_class=PER_CLASS, test_per_class=1)
        return {**data, "path": str(root / "cifar-100-python.tar.gz"), "download": False, "verify": False}, 100
    if dataset == "splitlist":
        make_split_lists(root, data["lists"], SPLITLIST_COUNTS, data.get("class_names"))
        return {**data, "path": str(root)}, len(SPLITLIST_COUNTS["train"])
    raise AssertionError(f"no generator for data.dataset {dataset!r}: add one to this test")


def shrink(params: dict, data: dict) -> dict:
    split = dict(params["split"])
    if split["val_source"] == "carve":
        split["val_per_class"] = VAL_PER_CLASS
    if split["n_max"] is not None:
        split["n_max"] = PER_CLASS - VAL_PER_CLASS  # the recipe's rule: what every class has after the carve-out
    if split["profile"] != "none":
        split["imbalance_ratio"] = min(split["imbalance_ratio"], PER_CLASS - VAL_PER_CLASS)
    split.update(many_threshold=5, few_threshold=2)
    clip = any(params[s]["method"] in CLIP_METHODS for s in ("stage1", "stage2"))
    model = dict(params["model"], pretrained=False, image_size=32 if clip else 16)  # the tiny CLIP takes 32
    stages = {}
    for stage in ("stage1", "stage2"):
        cfg = dict(params[stage], epochs=min(params[stage]["epochs"], 1), warmup_epochs=0, milestones=[],
                   compile=False)
        if cfg["method"] in CLIP_METHODS:
            cfg["params"] = {k: v for k, v in cfg["params"].items() if k not in ("arch", "pretrained")}
            cfg["params"]["kind"] = "tiny"
        stages[stage] = cfg
    return {**params, "data": data, "split": split, "model": model, **stages}


def run_data_stages(params_file: Path, work: Path) -> Path:
    for stage, args in [("fetch", ["--out", str(work / "raw")]),
                        ("prepare", ["--raw", str(work / "raw"), "--out", str(work / "prepared")]),
                        ("split", ["--prepared", str(work / "prepared"), "--out", str(work / "split"),
                                   "--stats", str(work / "stats.json"), "--class-counts", str(work / "counts.csv")])]:
        assert ltp([stage, "--params", str(params_file), *args]) == 0, stage
    return work / "split"


def train_once(stage: str, cfg: StageConfig, split_dir: Path, model: ModelConfig, out: Path,
               stage1: StageConfig | None = None) -> list[dict]:
    """One epoch of `stage` with one step of BATCH images; keeps the checkpoint in `out`."""
    split_data = read_split(split_dir)
    task = task_of(split_data.stats, model)
    cfg = dataclasses.replace(cfg, batch_size=BATCH)
    extra = {"stage1": stage1, "stage1_weights": str(out.parent / "stage1" / BEST_FILE)} if stage == "stage2" else {}
    job = dataclasses.replace(train_job(stage, cfg, task, split_data, RayConfig(), **extra), num_train=BATCH)
    reports = []

    def report(metrics, directory):
        reports.append(metrics)
        shutil.copytree(directory, out, dirs_exist_ok=True)

    torch.set_num_threads(2)
    fit(job, rank=0, world=1, device=torch.device("cpu"), resume=None, report=report)
    return reports


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_data_stages_and_a_training_step(recipe, tmp_path):
    params = yaml.safe_load((ROOT / recipe).read_text())
    data, classes = generate_source(params["data"], tmp_path / "source")
    small = shrink(params, data)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small))
    split_dir = run_data_stages(tmp_path / "params.yaml", tmp_path / "work")

    stats = json.loads((tmp_path / "work" / "stats.json").read_text())
    counts = list(stats["class_counts"].values())
    assert stats["num_classes"] == classes
    if small["split"]["profile"] == "none":
        assert counts == SPLITLIST_COUNTS["train"] and stats["val_total"] == sum(SPLITLIST_COUNTS["val"])
    else:
        assert counts[0] == PER_CLASS - small["split"]["val_per_class"]  # nothing lost to the carve-out
        assert stats["val_total"] == classes * small["split"]["val_per_class"]
    assert stats["train_total"] == sum(counts)

    model = parse_section(ModelConfig, small, "model")
    stage1 = parse_section(Stage1Config, small, "stage1")
    first = train_once("stage1", stage1, split_dir, model, tmp_path / "runs" / "stage1")
    assert [r["epoch"] for r in first] == [1] and math.isfinite(first[0]["train_loss"])
    assert (first[0]["train_loss"] > 0) == (stage1.method != "zeroshot_clip" and stage1.epochs > 0)
    stage2 = parse_section(Stage2Config, small, "stage2")
    second = train_once("stage2", stage2, split_dir, model, tmp_path / "runs" / "stage2", stage1=stage1)
    assert [r["epoch"] for r in second] == [1] and 0.0 <= second[0]["val_balanced_accuracy"] <= 1.0
    assert math.isfinite(second[0]["train_loss"])
