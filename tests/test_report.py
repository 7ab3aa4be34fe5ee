"""The report from kept runs written in the pipeline's own file formats: leaderboard aggregation,
published-figure matching, the sweep section, and the HTML page rendered by headless Chromium."""
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.longtail.metrics import confusion_matrix, long_tail_metrics, per_class_table
from pipeline.reporting.build import build_report
from pipeline.reporting.config import ReportConfig
from pipeline.reporting.gather import gather_runs
from pipeline.reporting.published import comparable
from pipeline.reporting.records import RunLabel, directory_reader, keep_run, load_run
from pipeline.reporting.sweep import load_sweep
from pipeline.reporting.tables import leaderboard, mean_std
from stages.report_files import RUN_FILES, SWEEP_FILES

from browser import render_page

COUNTS = [50, 30, 18, 11, 6]
NAMES = ["a", "b", "c", "d", "e"]


def write_run(root: Path, stage1: str, seed: int, accuracy: float, dataset: str = "digits") -> dict:
    """A complete evaluated run under `root` (the layout evaluate leaves), from random predictions."""
    rng = np.random.default_rng(seed * 101 + len(stage1))
    labels = np.repeat(np.arange(5), 20)
    logits = rng.normal(size=(100, 5))
    right = rng.random(100) < accuracy
    logits[right, labels[right]] += 4.0
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    predicted = probabilities.argmax(1)
    metrics = long_tail_metrics(labels, predicted, probabilities, COUNTS, 40, 10)
    config = {"method": stage1, "params": {}, "epochs": 2, "seed": seed}
    job = {"stage": "stage2", "config": {"method": "none", "params": {}, "epochs": 0, "seed": seed},
           "stage1": config, "task": {"class_counts": COUNTS, "class_names": NAMES, "many_threshold": 40,
                                      "few_threshold": 10, "model": {"backbone": "resnet_small"}}}
    split = {"profile": "exp", "imbalance_ratio": 10.0, "requested_imbalance_ratio": 10.0, "n_max": max(COUNTS),
             "seed": 0, "num_classes": len(COUNTS), "train_total": sum(COUNTS), "val_total": 0, "test_total": 100,
             "thresholds": {"many_above": 40, "few_below": 10}, "group_sizes": {"many": 2, "medium": 2, "few": 1},
             "class_counts": dict(zip(NAMES, COUNTS)),
             "class_groups": dict(zip(NAMES, ["many", "many", "medium", "medium", "few"]))}
    files = {"params.yaml": yaml.safe_dump({"data": {"dataset": dataset}}), "metrics/test.json": json.dumps(metrics),
             "metrics/split_stats.json": json.dumps(split), "runs/stage2/job.json": json.dumps(job)}
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    rows = per_class_table(labels, predicted, COUNTS, NAMES, 40, 10)
    (root / "runs/evaluation").mkdir(parents=True)
    (root / "runs/evaluation/per_class.csv").write_text(
        "\n".join([",".join(rows[0])] + [",".join(str(v) for v in r.values()) for r in rows]) + "\n")
    np.savetxt(root / "runs/evaluation/confusion.csv", confusion_matrix(labels, predicted, 5), fmt="%d", delimiter=",")
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(100)], "label": labels, "predicted": predicted,
                             "logits": logits.astype(np.float32).tolist()}), root / "runs/evaluation/predictions.parquet")
    return metrics


@pytest.fixture()
def kept(tmp_path):
    """Three kept runs: ce with seeds 0 and 1, la with seed 0; returns (root, {name: metrics})."""
    metrics = {}
    for name, method, seed, accuracy in (("ce-0", "ce", 0, 0.5), ("ce-1", "ce", 1, 0.7), ("la-0", "la", 0, 0.9)):
        work = tmp_path / "work" / name
        metrics[name] = write_run(work, method, seed, accuracy)
        keep_run(work, RUN_FILES, tmp_path / "kept_runs", name)
    return tmp_path, metrics


def test_mean_std_is_the_sample_std_and_ignores_nan():
    assert mean_std([0.5, 0.7]) == pytest.approx((0.6, math.sqrt(0.02)))
    assert mean_std([0.5, math.nan]) == (0.5, pytest.approx(math.nan, nan_ok=True))
    assert all(math.isnan(v) for v in mean_std([math.nan]))


def test_kept_runs_keep_metrics_and_reliability_without_predictions(kept):
    root, metrics = kept
    assert not (root / "kept_runs/ce-0/runs/evaluation/predictions.parquet").exists()
    record = load_run(directory_reader(root / "kept_runs/ce-0"), RUN_FILES, "ce-0", "kept")
    original = load_run(directory_reader(root / "work/ce-0"), RUN_FILES, "w", "workspace")
    assert record.metrics == metrics["ce-0"] and record.digest == original.digest
    np.testing.assert_array_equal(record.reliability.count, original.reliability.count)
    assert record.reliability.ece == pytest.approx(metrics["ce-0"]["ece"])
    assert record.label == RunLabel("digits", "exp", 10.0, "ce", "none", "0", "resnet_small", "2+0", "",
                                    record.label.config)


def test_leaderboard_averages_seeds_and_marks_the_best(kept):
    root, metrics = kept
    records, skipped = gather_runs(root / "work/ce-0", RUN_FILES, root / "kept_runs", experiments=False)
    assert skipped == [] and sorted(r.name for r in records) == ["ce-0", "ce-1", "la-0"]  # the workspace is ce-0
    rows = {row.label.stage1: row for row in leaderboard(records)}
    assert rows["ce"].seeds == ("0", "1") and rows["la"].seeds == ("0",)
    for key in ("top1", "balanced_accuracy", "few_accuracy", "macro_f1", "ece"):
        values = [metrics["ce-0"][key], metrics["ce-1"][key]]
        assert rows["ce"].cells[key].mean == pytest.approx(np.mean(values))
        assert rows["ce"].cells[key].std == pytest.approx(np.std(values, ddof=1))
        assert rows["la"].cells[key].mean == pytest.approx(metrics["la-0"][key])
        higher = key != "ece"
        better = "la" if (metrics["la-0"][key] > np.mean(values)) == higher else "ce"
        assert rows[better].cells[key].best and not rows["ce" if better == "la" else "la"].cells[key].best


def test_published_figures_only_under_the_same_protocol():
    label = RunLabel("cifar100", "exp", 100.0, "ce", "none", "0", "resnet32", "200+0", "")
    protocol, figure, _ = comparable(label)
    assert figure.top1 == "39.1" and figure.groups == (66.1, 37.3, 10.6)
    _, figure, reason = comparable(RunLabel("cifar100", "exp", 100.0, "ce", "none", "0", "resnet_small", "12+0", ""))
    assert figure is None and "backbone resnet_small (published: resnet32)" in reason and "epochs 12" in reason
    _, figure, reason = comparable(RunLabel("fashion-mnist", "exp", 100.0, "la", "none", "0", "resnet_small", "12+0", ""))
    assert figure is None and "no published figures for dataset 'fashion-mnist'" in reason


def write_sweep(root: Path, enabled: bool = True) -> None:
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    (root / "metrics/tune.json").write_text(json.dumps({
        "enabled": enabled, "objective": "val_balanced_accuracy", "best_value": 0.8125, "best_trial": "t2",
        "best_params": {"tau": 0.07, "magnitude": 9}, "num_trials": 3 if enabled else 0, "num_completed": 2,
        "num_stopped_early": 1, "num_errors": 0, "wall_s": 61.0}))
    (root / "runs/tune").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"trial_id": ["t1", "t2", "t3"], "status": ["completed", "completed", "stopped_early"],
                             "epochs": [2, 2, 1], "objective": [0.75, 0.8125, 0.5],
                             "best_objective": [0.75, 0.8125, 0.5], "tau": [0.1, 0.07, 0.2],
                             "magnitude": [5, 9, 3]}), root / "runs/tune/trials.parquet")
    (root / "metrics/tune_importances.csv").write_text("parameter,importance\ntau,0.3\nmagnitude,0.7\n")
    (root / "metrics/tune_history.csv").write_text("trial,objective,best_so_far\nt1,0.75,0.75\nt2,0.8125,0.8125\n"
                                                   "t3,0.5,0.8125\n")


def test_sweep_section_only_when_a_sweep_ran(tmp_path):
    assert load_sweep(tmp_path, SWEEP_FILES) is None  # no files
    write_sweep(tmp_path, enabled=False)
    assert load_sweep(tmp_path, SWEEP_FILES) is None
    write_sweep(tmp_path)
    sweep = load_sweep(tmp_path, SWEEP_FILES)
    assert [t["trial_id"] for t in sweep.trials] == ["t2", "t1", "t3"]
    assert sweep.importances == [("magnitude", 0.7), ("tau", 0.3)]


def test_html_renders_in_headless_chromium_with_no_network_request(kept, tmp_path):
    root, metrics = kept
    workspace = root / "work/la-0"
    write_sweep(workspace)
    cfg = ReportConfig(kept_runs=str(root / "kept_runs"), experiments=False)
    summary = build_report(cfg, workspace, RUN_FILES, SWEEP_FILES, tmp_path / "reports", tmp_path / "rel.csv",
                           tmp_path / "conf.csv")
    assert (summary.runs, summary.configurations, summary.best) == (3, 2, "la-0")
    markdown = (tmp_path / "reports/report.md").read_text()
    assert "## Sweep" in markdown and "| tau | 0.07 |" in markdown
    la = metrics["la-0"]
    assert f"| **{100 * la['balanced_accuracy']:.2f}** |" in markdown
    result = render_page(tmp_path / "reports/report.html", tmp_path / "shot.png")
    page = result["page"]
    assert result["requests"][0] == (tmp_path / "reports/report.html").as_uri()
    assert all(url.startswith("data:image/png;base64,") for url in result["requests"][1:]), result["requests"]
    assert result["failed"] == []
    figures = sorted(p.name for p in (tmp_path / "reports/figures").iterdir())
    assert len(page["images"]) == len(figures) == 7  # per-class, groups, split, confusion, reliability, 2 sweep
    assert all(i["complete"] and i["width"] > 100 and i["height"] > 100 for i in page["images"])
    assert page["tables"] == 4 and page["best"] >= 7  # leaderboard, runs, best params, trials
    assert "Leaderboard" in page["headings"] and "Sweep" in page["headings"]
    shot = (tmp_path / "shot.png").read_bytes()
    assert shot.startswith(b"\x89PNG") and len(shot) > 50_000
    rel = (tmp_path / "rel.csv").read_text().splitlines()
    assert rel[0] == "bin,confidence,accuracy,count" and len(rel) == 16
    assert len((tmp_path / "conf.csv").read_text().splitlines()) == 101


def test_the_browser_check_sees_a_page_that_reaches_out(tmp_path):
    page = tmp_path / "remote.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://example.com/a.png"></body></html>')
    result = render_page(page, tmp_path / "shot.png")
    assert "http://example.com/a.png" in result["requests"] and len(result["failed"]) == 1
    assert result["page"]["images"][0]["width"] == 0  # a broken image


def test_bad_report_params_are_named(tmp_path, capsys):
    from stages.__main__ import main as ltp
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"report": {"confusion_max_classes": 1}}))
    assert ltp(["report", "--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path),
                "--out", str(tmp_path / "reports")]) == 2
    assert "report.confusion_max_classes: must be >= 2" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"report": {}}))
    assert ltp(["report", "--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path),
                "--out", str(tmp_path / "reports")]) == 2
    assert "no evaluated run found" in capsys.readouterr().err and not (tmp_path / "reports").exists()


def test_one_run_reads_in_the_singular_and_is_not_marked_best(kept):
    from pipeline.reporting.build import ReportSummary
    from pipeline.reporting.plots import method_name

    root, _ = kept
    record = load_run(directory_reader(root / "kept_runs/la-0"), RUN_FILES, "la-0", "kept")
    (row,) = leaderboard([record])
    assert not any(cell.best for cell in row.cells.values())  # nothing to compare with
    assert method_name(row) == "la-0: la + none, 2+0 epochs"  # the run name of the tables, and the epochs
    line = ReportSummary(runs=1, configurations=1, best="la-0", best_balanced=0.5, skipped=1).line()
    assert line == "report: 1 run in 1 configuration, best la-0 (balanced 50.00%), 1 incomplete run skipped"
