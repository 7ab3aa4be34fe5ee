"""DVC stage `evaluate`: the best model over the test shards on Ray; predictions and test metrics."""
from __future__ import annotations

from pathlib import Path

from stages.cli import add_params, stage_parser
from stages.common import load_params, run_stage
from stages.workspace import WORKSPACE


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp evaluate", __doc__)
    add_params(parser)
    parser.add_argument("--prepared", default=WORKSPACE.prepared, help="the prepare stage's folder (its test shards)")
    parser.add_argument("--run", default=WORKSPACE.stage2, help="the trained run to evaluate")
    parser.add_argument("--out", default=WORKSPACE.evaluation, help="folder for predictions and per-class tables")
    parser.add_argument("--metrics", default=WORKSPACE.test_metrics, help="the test metrics (a DVC metrics file)")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.config import parse_section
        from pipeline.data.contracts import read_test_shards
        from pipeline.evaluation.evaluate import predict_on_ray, write_evaluation
        from pipeline.evaluation.worker import EvalJob
        from pipeline.training.config import RayConfig

        ray_cfg = parse_section(RayConfig, load_params(args.params), "ray")
        shards = read_test_shards(args.prepared)  # verified before any Ray worker reads them
        job = EvalJob(str(Path(args.run).resolve()), shards, loader_workers=ray_cfg.loader_workers)
        m = write_evaluation(predict_on_ray(job, ray_cfg), args.run, args.out, args.metrics)
        return (f"evaluate: {m['num_samples']:,} test images, top-1 {m['top1']:.4f}, balanced "
                f"{m['balanced_accuracy']:.4f}, many/medium/few {m['many_accuracy']:.3f}/"
                f"{m['medium_accuracy']:.3f}/{m['few_accuracy']:.3f}, macro-F1 {m['macro_f1']:.4f}, "
                f"ECE {m['ece']:.4f}")

    return run_stage(body, "evaluate", [args.out, args.metrics])
