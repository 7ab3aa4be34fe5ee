"""Training and evaluation on a real local Ray with 2 DDP workers (one Ray session for the module)."""
import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from datagen import make_digits_split
from pipeline.data.contracts import read_split
from pipeline.evaluation.evaluate import predict_on_ray, write_evaluation
from pipeline.evaluation.worker import EvalJob
from pipeline.longtail.metrics import long_tail_metrics
from pipeline.training.config import ModelConfig, RayConfig, Stage1Config
from pipeline.training.job import WEIGHTS_FILE, assemble_method, task_of, train_job
from pipeline.training.launch import init_ray
from pipeline.training.run import train_stage

pytestmark = pytest.mark.ray
MODEL = ModelConfig(backbone="resnet_small", channels=1, image_size=16, mean=(0.5,), std=(0.5,))


@pytest.fixture(scope="module")
def ray_cfg(tmp_path_factory):
    import ray

    cfg = RayConfig(num_workers=2, cpus_per_worker=1, storage_path=str(tmp_path_factory.mktemp("ray_runs")))
    init_ray(cfg)
    yield cfg
    ray.shutdown()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    return root, make_digits_split(root)


@pytest.fixture(scope="module")
def trained(digits, ray_cfg, tmp_path_factory):
    _, split_dir = digits
    split_data = read_split(split_dir)
    task = task_of(split_data.stats, MODEL)
    config = Stage1Config(method="la", epochs=2, batch_size=32, lr=0.05)
    job = train_job("stage1", config, task, split_data, RayConfig())
    out = tmp_path_factory.mktemp("run")
    summary = train_stage(job, ray_cfg, out / "stage1", out / "metrics.json", out / "history.tsv")
    return job, out, summary


def test_two_workers_train_and_collect_artifacts(trained):
    job, out, summary = trained
    assert summary.startswith("stage1 la: best epoch")
    with open(out / "history.tsv") as handle:
        history = list(csv.DictReader(handle, delimiter="\t"))
    assert [int(row["epoch"]) for row in history] == [1, 2]
    assert "images_per_s" not in history[0]  # throughput differs run to run: not in the git-tracked history
    best = json.loads((out / "metrics.json").read_text())
    assert best["val_balanced_accuracy"] == max(float(row["val_balanced_accuracy"]) for row in history)
    method = assemble_method("stage1", job.config, job.task)
    method.load_state_dict(torch.load(out / "stage1" / WEIGHTS_FILE, weights_only=True))


def test_rerun_of_a_finished_run_trains_nothing_more(trained, ray_cfg, tmp_path):
    job, out, _ = trained
    summary = train_stage(job, ray_cfg, tmp_path / "again", tmp_path / "m.json", tmp_path / "h.tsv")
    assert "best epoch" in summary
    assert (tmp_path / "h.tsv").read_text() == (out / "history.tsv").read_text()


def test_evaluation_covers_each_test_image_once(digits, trained, ray_cfg, tmp_path):
    root, _ = digits
    _, out, _ = trained
    manifest = pq.read_table(root / "prepared" / "manifest.parquet").to_pylist()
    test = {r["key"]: r["label"] for r in manifest if r["split"] == "test"}
    shards = tuple(sorted({str(root / "prepared" / r["shard"]) for r in manifest if r["split"] == "test"}))
    predictions = predict_on_ray(EvalJob(str(out / "stage1"), shards, batch_size=64), ray_cfg)
    assert predictions["keys"] == sorted(test)  # every test image exactly once, over 2 workers
    assert predictions["labels"].tolist() == [test[k] for k in predictions["keys"]]
    metrics = write_evaluation(predictions, out / "stage1", tmp_path / "eval", tmp_path / "test.json")
    table = pq.read_table(tmp_path / "eval" / "predictions.parquet").to_pydict()
    logits = np.array(table["logits"])
    assert table["predicted"] == logits.argmax(1).tolist()
    assert [t[0] for t in table["top5"]] == table["predicted"]
    counts = json.loads((root / "stats.json").read_text())["class_counts"]
    probabilities = torch.softmax(torch.tensor(logits, dtype=torch.float64), 1).numpy()
    again = long_tail_metrics(np.array(table["label"]), np.array(table["predicted"]), probabilities,
                              list(counts.values()), 60, 20)
    assert again == pytest.approx(metrics, nan_ok=True)
    assert json.loads((tmp_path / "test.json").read_text())["top1"] == pytest.approx(
        float(np.mean(np.array(table["predicted"]) == np.array(table["label"]))))


def test_local_ray_stays_on_loopback(ray_cfg):
    import ray

    # The DDP rendezvous address is the rank-0 worker's node address.
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
