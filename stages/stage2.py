"""DVC stage `stage2`: classifier re-balancing (params `stage2.method`) on the frozen stage-1 model."""
from __future__ import annotations

from pathlib import Path

from stages.cli import add_params, methods_epilog, stage_parser
from stages.common import load_params, run_stage
from stages.workspace import WORKSPACE


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp stage2", __doc__, methods_epilog("stage2"))
    add_params(parser)
    parser.add_argument("--split", default=WORKSPACE.split, help="the split stage's folder")
    parser.add_argument("--stage1", default=WORKSPACE.stage1, help="the stage-1 run to re-balance")
    parser.add_argument("--out", default=WORKSPACE.stage2, help="folder for the trained model and job.json")
    parser.add_argument("--metrics", default=WORKSPACE.stage2_metrics, help="the best epoch's validation metrics")
    parser.add_argument("--history", default=WORKSPACE.stage2_history, help="one row per epoch (a DVC plot)")
    parser.add_argument("--tuned", default=WORKSPACE.tuned, help="the tune stage's best values")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.config import parse_section
        from pipeline.data.contracts import read_split
        from pipeline.training.config import RayConfig, Stage2Config
        from pipeline.training.job import WEIGHTS_FILE, assemble_method, load_job, train_job
        from pipeline.training.run import train_stage
        from stages.tuned import with_tuned

        params = load_params(args.params)
        stage = parse_section(Stage2Config, with_tuned(params, "stage2", args.tuned), "stage2")
        ray_cfg = parse_section(RayConfig, params, "ray")
        first = load_job(args.stage1)  # the stage-1 model exactly as it was trained
        split = read_split(args.split)
        weights = str((Path(args.stage1) / WEIGHTS_FILE).resolve())
        job = train_job("stage2", stage, first.task, split, ray_cfg, stage1=first.config, stage1_weights=weights)
        assemble_method("stage2", stage, first.task, first.config, weights)  # bad params fail before Ray starts
        return train_stage(job, ray_cfg, args.out, args.metrics, args.history)

    return run_stage(body, "stage2", [args.out, args.metrics, args.history])
