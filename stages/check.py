"""DVC stage `check`: validate all of params.yaml, then write each stage's own inputs to runs/params/STAGE.json.

DVC deletes a stage's outputs before it runs the command, so a bad value found by the stage itself
(after `dvc exp run -S stage1.metod=bcl`) would already have cost its metrics. Every stage depends
on its file here instead of on params.yaml: this stage runs first, fails before any other stage is
touched, and a stage re-runs only when the values it reads change (the tune stage reads nothing
but `tune.trials` while that is 0). Its output folder is persistent, so a failure leaves it as it was.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from stages.cli import add_params, stage_parser
from stages.common import load_params, run_stage
from stages.workspace import WORKSPACE

SECTIONS = ("data", "prepare", "split", "model", "stage1", "stage2", "ray", "tune", "report")


def _configs(params: dict[str, Any]) -> dict[str, Any]:
    """Every section parsed and range-checked, method knobs included; ConfigError names the first bad key."""
    from pipeline.config import ConfigError, parse_section
    from pipeline.data.config import DataConfig, PrepareConfig, SplitConfig
    from pipeline.reporting.config import ReportConfig
    from pipeline.training.config import ModelConfig, RayConfig, Stage1Config, Stage2Config
    from pipeline.tuning.config import TuneConfig

    unknown = sorted(set(params) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section; valid: {', '.join(SECTIONS)}")
    classes = {"data": DataConfig, "prepare": PrepareConfig, "split": SplitConfig, "model": ModelConfig,
               "stage1": Stage1Config, "stage2": Stage2Config, "ray": RayConfig, "tune": TuneConfig,
               "report": ReportConfig}
    return {section: parse_section(cls, params, section) for section, cls in classes.items()}


def stage_inputs(configs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What each stage of dvc.yaml reads from params.yaml (defaults filled in)."""
    section = {name: dataclasses.asdict(cfg) for name, cfg in configs.items()}
    apply = {"tune.apply": section["tune"]["apply"]}
    sweeping = section["tune"]["trials"] > 0
    return {
        "fetch": {"data": section["data"]},
        "prepare": {"prepare": section["prepare"], "model.channels": section["model"]["channels"]},
        "split": {"split": section["split"]},
        "tune": ({k: section[k] for k in ("model", "stage1", "stage2", "ray", "tune")} if sweeping
                 else {"tune.trials": 0}),
        "stage1": {"model": section["model"], "stage1": section["stage1"], "ray": section["ray"], **apply},
        "stage2": {"stage2": section["stage2"], "ray": section["ray"], **apply},
        "evaluate": {"ray": section["ray"]},
        "report": {"report": section["report"], "data.dataset": section["data"]["dataset"]},
    }


def write_inputs(inputs: dict[str, dict[str, Any]], out: Path) -> None:
    """One JSON file per stage; a file whose content is unchanged is left alone (its hash stays)."""
    out.mkdir(parents=True, exist_ok=True)
    for stage, values in inputs.items():
        text = json.dumps(values, indent=1, sort_keys=True, default=list) + "\n"
        target = out / f"{stage}.json"
        if not target.is_file() or target.read_text() != text:
            tmp = target.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(target)


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp check", __doc__)
    add_params(parser)
    parser.add_argument("--out", default=WORKSPACE.stage_params, help="folder of the per-stage input files")
    args = parser.parse_args(argv)

    def body() -> str:
        inputs = stage_inputs(_configs(load_params(args.params)))
        write_inputs(inputs, Path(args.out))
        return f"check: {args.params} is valid; the inputs of {len(inputs)} stages are in {args.out}/"

    return run_stage(body)
