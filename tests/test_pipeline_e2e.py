"""The whole DAG through real DVC on digits with 2 Ray workers, and a training run killed mid-way
that resumes from its last checkpoint. Everything runs in subprocesses, as a user runs it."""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from pipeline.evaluation.metrics import long_tail_metrics

from tools import command_env, run_command

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    shutil.copytree(ROOT / "pipeline", repo / "pipeline")  # the stages' code dependencies
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {"dataset": "digits"}
    params["prepare"]["shard_max_samples"] = 200
    params["split"].update(imbalance_ratio=10, val_per_class=10, many_threshold=60, few_threshold=20,
                           shard_max_samples=100)
    params["model"].update(image_size=16, mean=[0.5], std=[0.5])
    params["stage1"].update(method="ce", epochs=2, batch_size=32, lr=0.05, warmup_epochs=0)
    params["stage2"].update(method="crt", epochs=1, batch_size=32)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        run_command(cmd, repo)
    return repo


def test_full_dag_predicts_each_test_image_once_with_consistent_metrics(repo):
    out = run_command(["dvc", "repro"], repo)
    for stage in ("fetch", "prepare", "split", "stage1", "stage2", "evaluate"):
        assert f"Running stage '{stage}'" in out
    manifest = pq.read_table(repo / "data" / "prepared" / "manifest.parquet").to_pylist()
    test = {r["key"]: r["label"] for r in manifest if r["split"] == "test"}
    predictions = pq.read_table(repo / "runs" / "evaluation" / "predictions.parquet").to_pydict()
    assert sorted(predictions["key"]) == sorted(test) and len(predictions["key"]) == len(test)
    assert predictions["label"] == [test[k] for k in predictions["key"]]
    logits = torch.tensor(predictions["logits"], dtype=torch.float64)
    assert predictions["predicted"] == logits.argmax(1).tolist()
    stats = json.loads((repo / "metrics" / "split_stats.json").read_text())
    recomputed = long_tail_metrics(np.array(predictions["label"]), np.array(predictions["predicted"]),
                                   torch.softmax(logits, 1).numpy(), list(stats["class_counts"].values()),
                                   stats["thresholds"]["many_above"], stats["thresholds"]["few_below"])
    reported = json.loads((repo / "metrics" / "test.json").read_text())
    assert reported == pytest.approx({k: (None if v != v else v) for k, v in recomputed.items()})
    assert "didn't change" in run_command(["dvc", "repro"], repo)


def committed_checkpoint(repo: Path, earlier: set[Path]) -> bool:
    """Whether Ray has registered a checkpoint of a run not in `earlier` (what a restart resumes from)."""
    for snapshot in (repo / ".ray_runs").glob("stage1-*/checkpoint_manager_snapshot.json"):
        if snapshot.parent in earlier:
            continue
        try:
            if json.loads(snapshot.read_text()).get("latest_checkpoint_result"):
                return True
        except json.JSONDecodeError:  # being written right now
            pass
    return False


def test_killed_training_resumes_from_its_last_checkpoint(repo):
    run_command(["dvc", "repro", "split"], repo)  # the data (already there after the full-DAG test)
    earlier = set((repo / ".ray_runs").glob("stage1-*"))  # finished runs of other tests
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["stage1"]["epochs"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    command = ["ltp", "stage1", "--out", str(repo / "killed"), "--metrics", str(repo / "k.json"),
               "--history", str(repo / "k.tsv")]
    process = subprocess.Popen(command, cwd=repo, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and not committed_checkpoint(repo, earlier):
        time.sleep(0.2)
    assert committed_checkpoint(repo, earlier), "no checkpoint was committed before the deadline"
    os.killpg(process.pid, signal.SIGKILL)  # the driver, its Ray and its workers
    process.communicate()
    assert not (repo / "killed").exists()  # nothing collected from the interrupted run

    resumed = run_command(command, repo)
    epochs = [line.split("epoch ")[1].split()[0] for line in resumed.splitlines() if "[stage1] epoch" in line]
    assert "1/3" not in epochs and epochs[-1] == "3/3", resumed[-3000:]
    history = (repo / "k.tsv").read_text().splitlines()
    assert [row.split("\t")[list(history[0].split("\t")).index("epoch")] for row in history[1:]] == ["1", "2", "3"]
