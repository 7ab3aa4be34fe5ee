"""DVC stage `tune`: a Ray Tune + Optuna sweep (params `tune`) whose best values stage1 / stage2 take."""
from __future__ import annotations

import sys
from pathlib import Path

from stages.cli import add_params, stage_parser
from stages.common import load_params, run_stage
from stages.workspace import WORKSPACE


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp tune", __doc__)
    add_params(parser)
    parser.add_argument("--split", default=WORKSPACE.split, help="the split stage's folder")
    parser.add_argument("--out", default=WORKSPACE.tune, help="folder for trials.parquet, best_params.yaml, plots/")
    parser.add_argument("--metrics", default=WORKSPACE.tune_summary, help="the sweep's summary")
    parser.add_argument("--history", default=WORKSPACE.tune_history, help="objective per trial (CSV)")
    parser.add_argument("--importances", default=WORKSPACE.tune_importances, help="parameter importances (CSV)")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.config import parse_section
        from pipeline.data.contracts import read_split
        from pipeline.training.config import STAGE_CONFIGS, ModelConfig, RayConfig
        from pipeline.training.job import task_of
        from pipeline.tuning.config import TuneConfig
        from pipeline.tuning.run import TuneOutputs, no_sweep, tune_stage

        params = load_params(args.params)
        cfg = parse_section(TuneConfig, params, "tune")
        paths = TuneOutputs(Path(args.out), Path(args.metrics), Path(args.history), Path(args.importances))
        if cfg.trials == 0:
            return no_sweep(paths)
        model = parse_section(ModelConfig, params, "model")
        stages = {s: parse_section(cls, params, s) for s, cls in STAGE_CONFIGS.items()}
        ray_cfg = parse_section(RayConfig, params, "ray")
        split = read_split(args.split)
        return tune_stage(cfg, stages, task_of(split.stats, model), split, ray_cfg, paths)

    try:
        return run_stage(body, "tune", [args.out, args.metrics, args.history, args.importances])
    except KeyboardInterrupt as exc:  # SweepInterrupted too: Ctrl-C during a sweep
        print(str(exc) or "tune: interrupted; run the same command again to resume", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports Ctrl-C
