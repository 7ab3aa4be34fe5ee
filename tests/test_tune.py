"""Sweeps: the search space is checked against the methods, the pure result functions, and a real
Ray Tune + Optuna + ASHA sweep through `ltp tune` on tiny data that a rerun restores without
repeating trials."""
import json
import math
import signal
import subprocess
import time
from types import SimpleNamespace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from datagen import make_digits_split
from pipeline.config import ConfigError
from pipeline.training.config import Stage1Config
from pipeline.tuning.results import best_row, history_rows, importances, trial_rows
from pipeline.tuning.run import apply_overlay
from pipeline.tuning.space import apply_values, default_values, overlay, resolve_space
from pipeline.tuning.sweep import TrialRecord, _progress
from pipeline.tuning.trial_log import trial_key
from tools import command_env

ROOT = Path(__file__).resolve().parents[1]


def test_each_sweep_parameter_reaches_the_knob_of_the_chosen_method():
    dims = resolve_space({"temperature": (0.05, 0.5), "lr": (0.01, 0.3)}, {"stage1": "bcl"})
    assert [(d.stage, d.field, d.key, d.scale) for d in dims] == [
        ("stage1", "params", "tau", "log"), ("stage1", "lr", None, "log")]
    config = apply_values("stage1", Stage1Config(method="bcl", params={"alpha": 2.0}), dims,
                          {"temperature": 0.2, "lr": 0.05})
    assert config.params == {"alpha": 2.0, "tau": 0.2} and config.lr == 0.05
    both = resolve_space({"residual_factor": (0.0, 1.0), "magnitude": (2, 14), "stage2.lr": (0.01, 1.0),
                          "margin": (0.1, 0.9)}, {"stage1": "ldam_drw", "stage2": "balanced_adapter"})
    values = {"residual_factor": 0.3, "magnitude": 9.0, "stage2.lr": 0.2, "margin": 0.4}
    assert overlay(both, values) == {"stage1": {"params": {"max_margin": 0.4}},
                                     "stage2": {"params": {"alpha": 0.3, "magnitude_max": 9}, "lr": 0.2}}


@pytest.mark.parametrize("space,methods,message", [
    ({"margin": (0.1, 0.9)}, {"stage1": "la"},
     "tune.space.margin: stage1 method 'la' does not use margin; it applies to ldam_drw, decreg"),
    ({"temperature": (0.05, 0.5)}, {"stage1": "ce"},
     "tune.space.temperature: stage1 method 'ce' does not use temperature; it applies to bcl, jrcl, clip"),
    ({"residual_factor": (0.1, 0.5)}, {"stage1": "bcl"},
     "tune.space.residual_factor: residual_factor is a stage2 parameter, but the sweep searches stage1 only"),
    ({"residual_factor": (0.1, 1.5)}, {"stage2": "balanced_adapter"},
     "tune.space.residual_factor: [0.1, 1.5] leaves the domain [0.0, 1.0]"),
    ({"lr": (0.01, 0.1)}, {"stage1": "ce", "stage2": "crt"},
     "tune.space.lr: ambiguous with both stages searched; write stage1.lr or stage2.lr"),
    ({"dropout": (0.1, 0.5)}, {"stage1": "ce"}, "tune.space.dropout: unknown parameter 'dropout'"),
    ({"lr": (0.3, 0.1)}, {"stage1": "ce"}, "tune.space.lr: expected [low, high] with low < high"),
])
def test_a_parameter_the_sweep_cannot_use_is_rejected_by_name(space, methods, message):
    with pytest.raises(ConfigError) as error:
        resolve_space(space, methods)
    assert str(error.value).startswith(message)


def test_the_first_point_is_what_params_yaml_already_trains():
    dims = resolve_space({"margin": (0.1, 0.9), "lr": (0.01, 0.3)}, {"stage1": "ldam_drw"})
    assert default_values(dims, {"stage1": Stage1Config(method="ldam_drw", lr=0.1)}) == {"margin": 0.5, "lr": 0.1}
    assert default_values(dims, {"stage1": Stage1Config(method="ldam_drw", lr=0.5)}) is None  # outside the range


def test_the_best_values_overlay_the_stage_section():
    params = {"stage1": {"method": "bcl", "lr": 0.1, "params": {"alpha": 2.0, "tau": 0.1}}}
    best = {"stage1": {"lr": 0.05, "params": {"tau": 0.2}}}
    assert apply_overlay(params, best, "stage1") == {"method": "bcl", "lr": 0.05, "params": {"alpha": 2.0, "tau": 0.2}}
    assert apply_overlay(params, best, "stage2") == {}


def test_trial_rows_status_best_and_history():
    dims = resolve_space({"lr": (0.01, 0.3)}, {"stage1": "ce"})
    metric = "val_balanced_accuracy"
    records = [
        TrialRecord("a", {"lr": 0.1}, [{metric: 0.30, "val_few_accuracy": 0.1}, {metric: 0.50}, {metric: 0.45}], None),
        TrialRecord("b", {"lr": 0.01}, [{metric: 0.20}], None),
        TrialRecord("c", {"lr": 0.2}, [{metric: 0.40}, {metric: 0.60}, {metric: 0.55}], None),
        TrialRecord("d", {"lr": 0.3}, [], "RuntimeError: boom"),
    ]
    rows = trial_rows(records, dims, metric, max_epochs=3, last_stage_from=0)
    assert [r["status"] for r in rows] == ["completed", "stopped_early", "completed", "error"]
    assert [r["best_objective"] for r in rows] == [0.50, 0.20, 0.60, None]
    assert [r["objective"] for r in rows] == [0.45, 0.20, 0.55, None]
    assert best_row(rows)["trial_id"] == "c"
    assert history_rows(rows) == [
        {"trial": 1, "trial_id": "a", "objective": 0.5, "best_so_far": 0.5},
        {"trial": 2, "trial_id": "b", "objective": 0.2, "best_so_far": 0.5},
        {"trial": 3, "trial_id": "c", "objective": 0.6, "best_so_far": 0.6}]
    # both stages swept: only stage 2's epochs (index >= 2) count for the best value
    assert trial_rows(records[:1], dims, metric, 3, last_stage_from=2)[0]["best_objective"] == 0.45
    assert importances(rows, dims, seed=0) == {"lr": 1.0}  # one parameter carries all the variance


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    return make_digits_split(tmp_path_factory.mktemp("digits"))


def sweep_params(tmp: Path, **tune) -> Path:
    params = {
        "model": {"backbone": "resnet_small", "channels": 1, "image_size": 16, "mean": [0.5], "std": [0.5]},
        "stage1": {"method": "ce", "epochs": 2, "batch_size": 32, "lr": 0.05},
        "stage2": {"method": "none", "epochs": 0},
        "ray": {"num_workers": 1, "storage_path": str(tmp / "ray_runs")},
        "tune": {"trials": 4, "space": {"lr": [0.0001, 0.1]}, "grace_epochs": 1, "reduction_factor": 2,
                 "concurrency": 1, "workers_per_trial": 1, "seed": 0, **tune},
    }
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp / "params.yaml"


def ltp_tune(tmp: Path, split_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["ltp", "tune", "--params", str(tmp / "params.yaml"), "--split", str(split_dir),
                           "--out", str(tmp / "tune"), "--metrics", str(tmp / "tune.json"),
                           "--history", str(tmp / "history.csv"), "--importances", str(tmp / "importances.csv")],
                          cwd=tmp, env=command_env(), capture_output=True, text=True)


def test_progress_counts_the_trials_finished_before_and_names_them_by_key(capsys):
    def trial(index, status, epochs, best):
        return SimpleNamespace(trial_id=f"tune{index}", status=status, last_result={"training_iteration": epochs},
                               metric_analysis={"acc": {"max": best}} if best is not None else {},
                               experiment_tag=f"{index}_lr=0.0{index}", config={"lr": index / 100, "other": 1})

    finished = [trial(1, "TERMINATED", 3, 0.5), trial(2, "TERMINATED", 1, 0.6)]
    running = trial(3, "RUNNING", 1, None)
    progress = _progress("acc", num_trials=4, max_epochs=3, started=time.perf_counter(), names=("lr",))
    progress.on_trial_result(0, [*finished, running], running, {"acc": 0.55})  # not a new best: silent
    assert capsys.readouterr().out == ""
    progress.on_trial_result(0, [*finished, running], running, {"acc": 0.7})  # not yet in metric_analysis
    assert "3 done" not in (line := capsys.readouterr().out)
    assert line.startswith("tune: 2/4 done (1 stopped early, 0 failed), 1 running, best acc 0.7000 "
                           f"(trial {trial_key(3, {'lr': 0.03})})")
    running.last_result, running.metric_analysis = {"training_iteration": 3}, {"acc": {"max": 0.7}}
    progress.on_trial_complete(0, [*finished, running], running)
    assert capsys.readouterr().out.startswith("tune: 3/4 done (1 stopped early, 0 failed), 0 running, best acc 0.7000")
    running.status, failing = "TERMINATED", trial(4, "RUNNING", 1, None)
    progress.on_trial_error(0, [*finished, running, failing], failing)
    assert capsys.readouterr().out.startswith("tune: 4/4 done (1 stopped early, 1 failed), 0 running")


def test_a_parameter_the_method_ignores_stops_the_stage_before_ray(tmp_path, split_dir):
    sweep_params(tmp_path, space={"margin": [0.1, 0.9]})
    result = ltp_tune(tmp_path, split_dir)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # after progress bars
    assert errors == ["error: tune.space.margin: stage1 method 'ce' does not use margin; it applies to ldam_drw, decreg"]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tune").exists() and not (tmp_path / "ray_runs").exists()


def ltp_tune_until(tmp: Path, split_dir: Path, line_start: str) -> tuple[int, str, str]:
    """`ltp tune` interrupted by SIGINT (Ctrl-C) as soon as it prints a line starting with `line_start`."""
    process = subprocess.Popen(["ltp", "tune", "--params", str(tmp / "params.yaml"), "--split", str(split_dir),
                                "--out", str(tmp / "tune"), "--metrics", str(tmp / "tune.json"),
                                "--history", str(tmp / "history.csv"), "--importances", str(tmp / "importances.csv")],
                               cwd=tmp, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # a shell runs background jobs with SIGINT ignored, and children inherit that
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out = []
    for line in process.stdout:
        out.append(line)
        if line.startswith(line_start):
            process.send_signal(signal.SIGINT)
            break
    rest, err = process.communicate(timeout=120)
    return process.returncode, "".join(out) + rest, err


@pytest.mark.ray
@pytest.mark.slow
def test_an_interrupted_and_resumed_sweep_is_the_uninterrupted_sweep(tmp_path, split_dir):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for directory in (whole, cut):
        directory.mkdir()
        sweep_params(directory)
    first = ltp_tune(whole, split_dir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Configuration for experiment" not in first.stdout + first.stderr  # no Tune tables
    progress = [line for line in first.stdout.splitlines() if line.startswith("tune: ")]
    assert progress[-1].startswith("tune: 4 trials (") and "best val_balanced_accuracy" in progress[-1]
    done = [int(line.split()[1].split("/")[0]) for line in progress if " done (" in line]
    assert done == sorted(done) and {1, 2, 3, 4} <= set(done) and done[-1] == 4, progress  # counted per trial

    rows = pq.read_table(whole / "tune" / "trials.parquet").to_pylist()
    assert len(rows) == 4 and len({r["trial_id"] for r in rows}) == 4
    assert rows[0]["lr"] == 0.05  # params.yaml's value is evaluated first
    assert {r["status"] for r in rows} <= {"completed", "stopped_early"}
    assert any(r["status"] == "stopped_early" and r["epochs"] < 2 for r in rows)  # ASHA stopped one
    assert all(r["epochs"] == 2 for r in rows if r["status"] == "completed")
    best = max(rows, key=lambda r: r["best_objective"])
    summary = json.loads((whole / "tune.json").read_text())
    assert summary["best_trial"] == best["trial_id"] and summary["best_value"] == best["best_objective"]
    assert summary["num_trials"] == 4 and summary["default_value"] == rows[0]["best_objective"]
    assert summary["num_stopped_early"] == sum(r["status"] == "stopped_early" for r in rows)
    assert f"(trial {best['trial_id']})" in progress[-2]  # progress names trials as the outputs do
    assert abs(float(progress[-2].split()[-2]) - summary["wall_s"]) <= 3  # one clock for both
    tuned = yaml.safe_load((whole / "tune" / "best_params.yaml").read_text())
    assert tuned == {"stage1": {"lr": best["lr"]}}
    history = (whole / "history.csv").read_text().splitlines()
    assert history[0] == "trial,trial_id,objective,best_so_far" and len(history) == 5
    assert math.isclose(float(history[-1].split(",")[-1]), best["best_objective"])
    assert {p.name for p in (whole / "tune" / "plots").iterdir()} == {
        "optimisation_history.png", "parameters.png", "importances.png"}

    # The same sweep, Ctrl-C after 2 of its 4 trials, then the same command again.
    code, out, err = ltp_tune_until(cut, split_dir, "tune: 2/4 done")
    assert code == 130 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("tune: interrupted; run the same command again")
    finished = {p: p.stat().st_mtime_ns for p in (cut / "ray_runs").glob("*-train/*/checkpoint_*")}
    resumed = ltp_tune(cut, split_dir)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "tune: resuming" in resumed.stdout
    again = pq.read_table(cut / "tune" / "trials.parquet").to_pylist()
    # Same trials stopped, same results, same best: the finished ones kept theirs (not 0 epochs).
    assert again == rows
    assert json.loads((cut / "tune.json").read_text())["best_value"] == summary["best_value"]
    assert yaml.safe_load((cut / "tune" / "best_params.yaml").read_text()) == tuned
    kept = {p: p.stat().st_mtime_ns for p in finished if p.exists()}
    assert len(kept) >= 2 and all(finished[p] == mtime for p, mtime in kept.items())  # finished: not retrained


def test_asha_never_judges_a_trial_during_warm_up():
    from pipeline.tuning.config import TuneConfig
    from pipeline.tuning.run import grace_epochs

    warm = Stage1Config(method="ce", epochs=4, warmup_epochs=1)
    assert grace_epochs(TuneConfig(trials=4), warm, "stage1") == 2  # null: the first epoch after warm-up
    assert grace_epochs(TuneConfig(trials=4, grace_epochs=3), warm, "stage1") == 3
    with pytest.raises(ConfigError, match=r"^tune.grace_epochs: 1 would let ASHA stop trials during stage1's 1 "):
        grace_epochs(TuneConfig(trials=4, grace_epochs=1), warm, "stage1")
    # the shipped params.yaml sweeps stage1 with warm-up: its grace period follows it
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["tune"]["grace_epochs"] is None and params["stage1"]["warmup_epochs"] >= 1
