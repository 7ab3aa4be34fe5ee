"""`ltp check`: the whole params file validated before any stage runs; each stage's inputs written once."""
import json
from pathlib import Path

import pytest
import yaml

from stages.__main__ import main as ltp

ROOT = Path(__file__).resolve().parents[1]


def params_file(tmp_path: Path, **changes: dict) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_each_stage_gets_the_values_it_reads(tmp_path):
    assert ltp(["check", "--params", str(params_file(tmp_path)), "--out", str(tmp_path / "in")]) == 0
    inputs = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "in").glob("*.json")}
    assert sorted(inputs) == ["evaluate", "fetch", "prepare", "report", "split", "stage1", "stage2", "tune"]
    assert inputs["tune"] == {"tune.trials": 0}  # no sweep: stage edits do not touch tune
    assert set(inputs["stage1"]) == {"model", "stage1", "ray", "tune.apply"}
    assert inputs["stage1"]["stage1"]["optimizer"] == "sgd"  # defaults filled in
    sweeping = params_file(tmp_path, tune={"trials": 4})
    assert ltp(["check", "--params", str(sweeping), "--out", str(tmp_path / "in")]) == 0
    assert set(json.loads((tmp_path / "in/tune.json").read_text())) == {"model", "stage1", "stage2", "ray", "tune"}


def test_an_unchanged_input_file_is_not_rewritten(tmp_path):
    out = tmp_path / "in"
    assert ltp(["check", "--params", str(params_file(tmp_path)), "--out", str(out)]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert ltp(["check", "--params", str(params_file(tmp_path, stage1={"lr": 0.2})), "--out", str(out)]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert [name for name in sorted(before) if before[name] != after[name]] == ["stage1.json"]


@pytest.mark.parametrize("changes, message", [
    ({"stage1": {"metod": "bcl"}}, "stage1.metod: unknown key"),
    ({"split": {"imbalance_ratio": 0}}, "split.imbalance_ratio: must be >= 1"),
    ({"stage1": {"method": "la", "params": {"taus": 1.0}}}, "stage1.params.taus: unknown key"),
    ({"stage2": {"method": "crt2"}}, "stage2.method: unknown method 'crt2'"),
    ({"stage2": {"method": "tau_norm", "params": {"t": 3.0}}}, "stage2.params.t: must be in [0, 2], got 3.0"),
    ({"stage2": {"method": "balanced_adapter", "epochs": 2, "params": {"alpha": 1.5}}},
     "stage2.params.alpha: must be in [0, 1]"),
    ({"stage1": {"method": "clip", "params": {"temperature": 0.0}}}, "stage1.params.temperature: must be > 0"),
    ({"stage1": {"method": "clip", "params": {"loss": "focal"}}},
     "stage1.params.loss: 'focal' is not one of 'class_text', 'infonce'"),
    ({"stage3": {}}, "stage3: unknown section"),
])
def test_a_bad_value_anywhere_fails_and_leaves_the_previous_inputs(tmp_path, capsys, changes, message):
    out = tmp_path / "in"
    assert ltp(["check", "--params", str(params_file(tmp_path)), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert ltp(["check", "--params", str(params_file(tmp_path, **changes)), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
