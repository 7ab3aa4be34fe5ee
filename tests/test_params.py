"""The shipped params files parse completely, and bad training params are named before any work."""
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, parse_section
from pipeline.data.config import DataConfig, PrepareConfig, SplitConfig
from pipeline.reporting.config import ReportConfig
from pipeline.training.config import STAGE_CONFIGS, ModelConfig, RayConfig, Stage1Config
from pipeline.training.job import assemble_method
from pipeline.training.methods import Task
from pipeline.tuning.config import TuneConfig
from pipeline.tuning.space import resolve_space
from stages.__main__ import main as ltp

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"data": DataConfig, "prepare": PrepareConfig, "split": SplitConfig, "model": ModelConfig,
            "ray": RayConfig, "tune": TuneConfig, "report": ReportConfig}


@pytest.mark.parametrize("name", sorted(p.name for p in ROOT.glob("params*.yaml")))
def test_shipped_params_files_are_valid(name):
    params = yaml.safe_load((ROOT / name).read_text())
    assert set(params) == {*SECTIONS, "stage1", "stage2"}
    for section, cls in SECTIONS.items():
        parse_section(cls, params, section)
    for stage, cls in STAGE_CONFIGS.items():
        parse_section(cls, params, stage)
    model = parse_section(ModelConfig, params, "model")
    stage1 = parse_section(Stage1Config, params, "stage1")
    counts = (100, 50, 10) if model.channels == 1 else tuple(range(100, 0, -1))
    # Pretrained weights download; the method's params are checked on random ones.
    task = Task(counts, tuple(f"c{i}" for i in range(len(counts))), 60, 20, replace(model, pretrained=False))
    if stage1.params.get("kind") != "open_clip":  # pretrained CLIP towers download; tests/test_recipes.py
        assemble_method("stage1", stage1, task)  # the method's own params are valid too
    sweep = parse_section(TuneConfig, params, "tune")
    stages = {s: parse_section(STAGE_CONFIGS[s], params, s).method for s in sweep.stages}
    assert resolve_space(sweep.space, stages)  # the shipped search space fits the shipped methods


def task(**model) -> Task:
    return Task((50, 20, 5), ("a", "b", "c"), 30, 10, ModelConfig(**model))


@pytest.mark.parametrize("method,params,key", [
    ("bcl", {"temperature": 0.1}, "stage1.params.temperature"),
    ("la", {"tau": "one"}, "stage1.params.tau"),
    ("ldam_drw", {"drw_start_epoch": 1.5}, "stage1.params.drw_start_epoch"),
])
def test_unknown_or_mistyped_method_params_name_the_key(method, params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Stage1Config(method=method, params=params)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="stage1.method: unknown method 'focal'; valid: .*bcl, ce"):
        Stage1Config(method="focal")


@pytest.mark.parametrize("section,values,key", [
    ("stage1", {"method": "ce", "epochs": -1}, "stage1.epochs"),
    ("stage1", {"method": "ce", "sampler": "oversample"}, "stage1.sampler"),
    ("stage1", {"method": "ce", "milestones": [180, 160]}, "stage1.milestones"),
    ("ray", {"num_workers": 0}, "ray.num_workers"),
    ("model", {"channels": 3, "mean": [0.5]}, "model.mean"),
])
def test_bad_training_params_fail_before_ray_starts(tmp_path, capsys, section, values, key):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[section] = {**params[section], **values}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code = ltp(["stage1", "--params", str(tmp_path / "params.yaml"), "--split", str(tmp_path / "none"),
                "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and key in err.strip().splitlines()[-1], err
    assert not (tmp_path / "out").exists()


def test_training_before_the_split_says_which_stage_to_run(tmp_path, capsys):
    code = ltp(["stage1", "--params", str(ROOT / "params.yaml"), "--split", str(tmp_path / "split"),
                "--out", str(tmp_path / "out")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "split/stats.json not found; run the split stage" in last
    code = ltp(["stage2", "--params", str(ROOT / "params.yaml"), "--stage1", str(tmp_path / "stage1"),
                "--out", str(tmp_path / "out")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "stage1/job.json not found" in last and not (tmp_path / "out").exists()
