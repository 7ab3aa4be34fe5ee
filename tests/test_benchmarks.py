"""Every benchmark script runs in its small setting, as a user runs it, and its JSON holds every figure."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tools import command_env

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = "not measured (no GPU lent)"


def run_benchmark(name: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--small", "--out", str(out), *extra],
                          cwd=ROOT, env=command_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"-> {out}" in done.stdout  # the table ends with where its JSON went
    result = json.loads(out.read_text())
    assert result["benchmark"] == name
    machine = result["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["date"] and machine["torch"] == torch.__version__
    return result


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_shard_writing_throughput_for_array_and_file_sources(tmp_path):
    rows = run_benchmark("shards", tmp_path)["rows"]
    assert [r["source"].split()[0] for r in rows] == ["array", "file"]
    for row in rows:
        assert row["images"] == 500 and row["shards"] == 2  # 400 train + 100 test images, 1 shard each
        assert positive(row["images_per_s"]) and positive(row["seconds"]) and positive(row["mb"])


def test_loader_throughput_against_the_pil_baseline(tmp_path):
    rows = run_benchmark("loader", tmp_path)["rows"]
    assert [r["loader_workers"] for r in rows] == [1, 2]
    for row in rows:
        assert positive(row["ours_images_per_s"]) and positive(row["baseline_images_per_s"])
        assert row["ratio"] == round(row["ours_images_per_s"] / row["baseline_images_per_s"], 2)


def test_peak_memory_of_prepare_and_split_on_three_sizes(tmp_path):
    rows = run_benchmark("memory", tmp_path)["rows"]
    for source in ("array (IDX)", "file (PNG tree)"):
        for stage in ("prepare", "split"):
            runs = {r["total_images"]: r for r in rows if r["stage"] == stage and r["source"] == source}
            assert sorted(runs) == [600, 1200, 2400] and all(positive(r["peak_rss_mb"]) for r in runs.values())
            growth = [r for r in rows if r["stage"] == f"{stage} growth" and r["source"] == source]
            assert [(g["from_images"], g["total_images"]) for g in growth] == [(600, 1200), (1200, 2400)]
            for g in growth:
                delta = runs[g["total_images"]]["peak_rss_mb"] - runs[g["from_images"]]["peak_rss_mb"]
                assert g["peak_rss_mb"] == round(delta, 1)
                assert g["kb_per_image"] == round(1024 * delta / (g["total_images"] - g["from_images"]), 2)


def test_training_throughput_ours_and_reference_cpu_and_gpu_columns(tmp_path):
    result = run_benchmark("training", tmp_path)
    rows = result["rows"]
    assert [(r["method"], r["device"]) for r in rows] == [("bcl", "cpu"), ("bcl", "cuda"), ("ce", "cpu"),
                                                          ("ce", "cuda")]
    assert isinstance(result["setting"]["under_load"], bool)
    loops = ("ours", "reference", "reference_amp")
    for row in rows:
        if row["device"] == "cuda" and not torch.cuda.is_available():
            assert all(row[f"{loop}_images_per_s"] == NO_GPU for loop in loops)  # never an invented number
            assert row["speedup"] == NO_GPU
            continue
        assert all(positive(row[f"{loop}_{figure}"]) for loop in loops[:2]
                   for figure in ("images_per_s", "peak_memory_mb"))
        assert row["speedup"] == round(row["ours_images_per_s"] / row["reference_images_per_s"], 2)
        assert row["data_path"] == "resident"  # 128 images fit any budget
        assert all(positive(row[f"{part}_images_per_s"]) for part in ("loader", "augment", "step"))
        if row["device"] == "cpu":
            assert row["reference_amp_images_per_s"] == row["ours_gpu_busy"] == "CUDA only"


def test_repro_stage_breakdown_of_the_data_stages(tmp_path):
    # The Ray stages add ~25 s of Ray start-up each; the whole small DAG runs in the e2e test already.
    rows = run_benchmark("repro", tmp_path, "--stages", "check,fetch,prepare,split")["rows"]
    assert [r["stage"] for r in rows] == ["check", "fetch", "prepare", "split", "total"]
    assert all(positive(r["seconds"]) for r in rows)
    assert rows[-1]["seconds"] == pytest.approx(sum(r["seconds"] for r in rows[:-1]), abs=0.15)


def test_repro_refuses_stages_that_are_not_a_prefix_of_the_dag(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.repro", "--small", "--stages", "split",
                           "--out", str(tmp_path / "x.json")], cwd=ROOT, env=command_env(), capture_output=True,
                          text=True)
    assert done.returncode == 2 and "prefix of the DAG" in done.stderr and not (tmp_path / "x.json").exists()


def test_method_table_over_seeds(tmp_path):
    result = run_benchmark("methods", tmp_path, "--methods", "ce,bcl", "--seeds", "2")
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["ce", "bcl", "ce + crt", "ce + lws", "ce + tau_norm"]
    assert result["setting"]["seeds"] == 2 and result["setting"]["measured_under_load"] is False
    for name, row in rows.items():
        per_seed = result["runs"][name]
        assert [r["seed"] for r in per_seed] == [0, 1] and row["seeds"] == 2
        for metric in ("top1", "many_accuracy", "medium_accuracy", "few_accuracy", "macro_f1", "ece"):
            values = [100 * r[metric] if metric != "ece" else r[metric] for r in per_seed]
            assert row[metric] == round(sum(values) / 2, 4)
            assert row[f"{metric}_std"] == round(abs(values[0] - values[1]) / math.sqrt(2), 4)
        assert all(0 <= r["top1"] <= 1 and 0 <= r["ece"] <= 1 for r in per_seed)
