"""DVC stage `stage1`: representation learning of params `stage1.method` on Ray Train."""
from __future__ import annotations

from stages.cli import add_params, methods_epilog, stage_parser
from stages.common import load_params, run_stage
from stages.workspace import WORKSPACE


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp stage1", __doc__, methods_epilog("stage1"))
    add_params(parser)
    parser.add_argument("--split", default=WORKSPACE.split, help="the split stage's folder")
    parser.add_argument("--out", default=WORKSPACE.stage1, help="folder for the trained model and job.json")
    parser.add_argument("--metrics", default=WORKSPACE.stage1_metrics, help="the best epoch's validation metrics")
    parser.add_argument("--history", default=WORKSPACE.stage1_history, help="one row per epoch (a DVC plot)")
    parser.add_argument("--tuned", default=WORKSPACE.tuned, help="the tune stage's best values")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.config import parse_section
        from pipeline.data.contracts import read_split
        from pipeline.training.config import ModelConfig, RayConfig, Stage1Config
        from pipeline.training.job import assemble_method, task_of, train_job
        from pipeline.training.run import train_stage
        from stages.tuned import with_tuned

        params = load_params(args.params)
        model = parse_section(ModelConfig, params, "model")
        stage = parse_section(Stage1Config, with_tuned(params, "stage1", args.tuned), "stage1")
        ray_cfg = parse_section(RayConfig, params, "ray")
        split = read_split(args.split)
        task = task_of(split.stats, model)
        job = train_job("stage1", stage, task, split, ray_cfg)
        assemble_method("stage1", stage, task)  # bad method params fail here, before Ray starts
        return train_stage(job, ray_cfg, args.out, args.metrics, args.history)

    return run_stage(body, "stage1", [args.out, args.metrics, args.history])
