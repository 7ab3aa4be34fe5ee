"""End to end through real DVC: a temporary git + DVC repository runs this project's dvc.yaml."""
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tools import run_command

ROOT = Path(__file__).resolve().parents[1]


STAGE_ORDER = ("check", "fetch", "prepare", "split", "tune", "stage1", "stage2", "evaluate", "report")


def digits_repo(tmp_path: Path) -> Path:
    """A git + DVC repository with this project's dvc.yaml, code and params.yaml set to a small digits split."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    shutil.copytree(ROOT / "pipeline", repo / "pipeline")  # the stages' code dependencies
    shutil.copytree(ROOT / "stages", repo / "stages")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {"dataset": "digits"}
    params["prepare"]["shard_max_samples"] = 500
    params["split"].update(imbalance_ratio=10, val_per_class=10, many_threshold=60, few_threshold=20,
                           shard_max_samples=200)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    run_command(["git", "init", "-q"], repo)
    run_command(["dvc", "init", "-q"], repo)
    run_command(["dvc", "config", "core.analytics", "false"], repo)
    return repo


def set_params(repo: Path, **sections: dict) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for name, values in sections.items():
        params[name].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.slow
def test_dvc_repro_split_on_digits_then_nothing_to_do(tmp_path):
    repo = digits_repo(tmp_path)
    out = run_command(["dvc", "repro", "split"], repo)
    assert "split exp rho=10" in out

    stats = json.loads((repo / "metrics" / "split_stats.json").read_text())
    expected = [int(121 * 10 ** (-i / 9)) for i in range(10)]  # smallest class: 131 train - 10 val
    assert list(stats["class_counts"].values()) == expected
    assert stats["train_total"] == sum(expected) and stats["val_total"] == 100 and stats["test_total"] == 445
    manifest = pq.read_table(repo / "data" / "split" / "manifest.parquet").to_pylist()
    shards = sorted(p.relative_to(repo / "data" / "split").as_posix()
                    for p in (repo / "data" / "split").rglob("*.tar"))
    assert shards == sorted({r["shard"] for r in manifest})
    assert len([s for s in shards if s.startswith("train/")]) == -(-sum(expected) // 200)
    assert (repo / "data" / "prepared" / "manifest.parquet").is_file()

    # fetch always runs (it records the dataset's content digest); what comes after it only on a change
    derived = [repo / "data" / "prepared", repo / "data" / "split"]
    before = {p: p.stat().st_mtime_ns for d in derived for p in d.rglob("*") if p.is_file()}
    again = run_command(["dvc", "repro", "split"], repo)
    assert "Stage 'prepare' didn't change" in again and "Stage 'split' didn't change" in again
    assert "Running stage 'prepare'" not in again and "Running stage 'split'" not in again
    assert {p: p.stat().st_mtime_ns for d in derived for p in d.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_a_stage_reruns_only_when_the_values_it_reads_change(tmp_path):
    """check runs after every params edit, but the stages behind it only when their own values changed:
    an experiment on stage 1 re-runs neither the data stages nor the (disabled) sweep."""
    repo = digits_repo(tmp_path)
    out = run_command(["dvc", "repro", "tune"], repo)
    assert [s for s in STAGE_ORDER if f"Running stage '{s}'" in out] == ["check", "fetch", "prepare", "split", "tune"]
    assert json.loads((repo / "runs/params/tune.json").read_text()) == {"tune.trials": 0}

    set_params(repo, stage1={"lr": 0.2, "method": "bcl"}, split={"seed": 0})  # stage 1 edited, split the same
    out = run_command(["dvc", "repro", "tune"], repo)
    assert [s for s in STAGE_ORDER if f"Running stage '{s}'" in out] == ["check", "fetch"], out  # fetch: always
    assert "Stage 'tune' didn't change" in out
