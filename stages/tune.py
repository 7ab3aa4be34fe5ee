"""DVC stage `tune`: a Ray Tune + Optuna sweep (params `tune`) whose best values stage1 / stage2 take."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config import parse_section
from pipeline.training.config import ModelConfig, RayConfig, StageConfig
from pipeline.training.run import load_task
from pipeline.tuning.config import TuneConfig
from pipeline.tuning.run import TuneOutputs, no_sweep, tune_stage
from pipeline.tuning.sweep import SweepInterrupted
from stages.common import load_params, run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltp tune", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--split", default="data/split")
    parser.add_argument("--out", default="runs/tune")
    parser.add_argument("--metrics", default="metrics/tune.json")
    parser.add_argument("--history", default="metrics/tune_history.csv")
    parser.add_argument("--importances", default="metrics/tune_importances.csv")
    args = parser.parse_args(argv)

    def body() -> str:
        params = load_params(args.params)
        cfg = parse_section(TuneConfig, params, "tune")
        paths = TuneOutputs(Path(args.out), Path(args.metrics), Path(args.history), Path(args.importances))
        if cfg.trials == 0:
            return no_sweep(paths)
        model = parse_section(ModelConfig, params, "model")
        stages = {s: parse_section(StageConfig, params, s).validate(s) for s in ("stage1", "stage2")}
        ray_cfg = parse_section(RayConfig, params, "ray")
        task, shards, num_train = load_task(args.split, model)
        return tune_stage(cfg, stages, task, shards, num_train, ray_cfg, paths)

    try:
        return run_stage(body, "tune", [args.out, args.metrics, args.history, args.importances])
    except (SweepInterrupted, KeyboardInterrupt) as exc:
        print(str(exc) or "tune: interrupted; run the same command again to resume", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports Ctrl-C
