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

from pipeline.longtail.metrics import long_tail_metrics

from tools import command_env, committed_checkpoint, run_command

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    shutil.copytree(ROOT / "pipeline", repo / "pipeline")  # the stages' code dependencies
    shutil.copytree(ROOT / "stages", repo / "stages")
    shutil.copytree(ROOT / "kept_runs", repo / "kept_runs")  # the report's folder of kept runs
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {"dataset": "digits"}
    params["prepare"]["shard_max_samples"] = 200
    params["split"].update(imbalance_ratio=10, val_per_class=10, many_threshold=60, few_threshold=20,
                           shard_max_samples=100)
    params["model"].update(image_size=16, mean=[0.5], std=[0.5])
    params["stage1"].update(method="ce", epochs=2, batch_size=32, lr=0.05, warmup_epochs=0)
    params["stage2"].update(method="crt", epochs=1, batch_size=32)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "test@example.com"],
                ["git", "config", "user.name", "test"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"]):
        run_command(cmd, repo)
    return repo


def test_full_dag_predicts_each_test_image_once_with_consistent_metrics(repo):
    out = run_command(["dvc", "repro"], repo)
    for stage in ("fetch", "prepare", "split", "stage1", "stage2", "evaluate", "report"):
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


def markdown_table(markdown: str, heading: str) -> list[dict[str, str]]:
    """The rows of the table under `## heading` as {column: cell} (bold markers removed)."""
    lines = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0].strip().splitlines()
    table = [line.strip("|").split(" | ") for line in lines if line.startswith("|") and not line.startswith("|---")]
    header = [cell.strip() for cell in table[0]]
    return [dict(zip(header, (cell.strip().strip("*") for cell in row))) for row in table[1:]]


def shown(values: list[float]) -> str:
    """How the report prints a metric over seeds: percent, two decimals, '± sample std' for several."""
    text = f"{100 * np.mean(values):.2f}"
    return text if len(values) == 1 else f"{text} ± {100 * np.std(values, ddof=1):.2f}"


COLUMNS = {"top-1": "top1", "balanced": "balanced_accuracy", "many": "many_accuracy", "medium": "medium_accuracy",
           "few": "few_accuracy", "macro-F1": "macro_f1", "ECE": "ece"}


def test_report_gathers_kept_runs_and_experiments_with_values_from_their_metrics(repo):
    run_command(["ltp", "keep", "seed0"], repo)
    seed0 = json.loads((repo / "metrics" / "test.json").read_text())
    assert json.loads((repo / "kept_runs/seed0/metrics/test.json").read_text()) == seed0
    run_command(["git", "add", "-A"], repo)
    run_command(["git", "commit", "-qm", "seed 0 run, kept"], repo)
    out = run_command(["dvc", "exp", "run", "-n", "seed1", "-S", "stage1.seed=1", "-S", "stage2.seed=1"], repo)
    assert "Running stage 'report'" in out
    (ref,) = [r for r in run_command(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).split()
              if r.endswith("/seed1")]
    seed1 = json.loads(run_command(["git", "show", f"{ref}:metrics/test.json"], repo))
    assert seed1 != seed0

    summary = run_command(["ltp", "report", "--out", "reports-all"], repo)
    assert summary.startswith("report: 2 runs in 1 configuration,"), summary
    markdown = (repo / "reports-all" / "report.md").read_text()
    runs = {row["run"]: row for row in markdown_table(markdown, "Runs")}
    assert {name: row["source"] for name, row in runs.items()} == {"seed0": "kept", "seed1": "experiment"}
    (board,) = markdown_table(markdown, "Leaderboard")
    assert (board["stage 1"], board["stage 2"], board["seeds"]) == ("ce", "crt", "0, 1")
    for column, key in COLUMNS.items():
        assert runs["seed0"][column] == shown([seed0[key]]) and runs["seed1"][column] == shown([seed1[key]])
        assert board[column] == shown([seed0[key], seed1[key]]), column
    html = (repo / "reports-all" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 5 and "http" not in html

    assert "metrics/test.json" in run_command(["dvc", "metrics", "show"], repo)
    diff = run_command(["dvc", "metrics", "diff", "HEAD"], repo)
    changed = {line.split()[1] for line in diff.splitlines() if line.startswith("metrics/test.json")}
    assert changed == {k for k in COLUMNS.values() if round(seed0[k], 5) != round(seed1[k], 5)} and changed
    plots = run_command(["dvc", "plots", "show", "-o", "plots-out", "--json"], repo)
    for name in ("metrics/reliability.csv", "metrics/test_confusion.csv", "runs/evaluation/per_class.csv"):
        assert name in plots



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
    while time.monotonic() < deadline and process.poll() is None and not committed_checkpoint(repo / ".ray_runs", earlier):
        time.sleep(0.2)
    assert committed_checkpoint(repo / ".ray_runs", earlier), "no checkpoint was committed before the deadline"
    os.killpg(process.pid, signal.SIGKILL)  # the driver, its Ray and its workers
    process.communicate()
    assert not (repo / "killed").exists()  # nothing collected from the interrupted run

    resumed = run_command(command, repo)
    epochs = [line.split("epoch ")[1].split()[0] for line in resumed.splitlines() if "[stage1] epoch" in line]
    assert "1/3" not in epochs and epochs[-1] == "3/3", resumed[-3000:]
    history = (repo / "k.tsv").read_text().splitlines()
    assert [row.split("\t")[list(history[0].split("\t")).index("epoch")] for row in history[1:]] == ["1", "2", "3"]
