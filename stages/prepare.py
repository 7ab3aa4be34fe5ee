"""DVC stage `prepare`: raw dataset -> WebDataset shards per split + Parquet manifest + classes.json."""
from __future__ import annotations

from stages.cli import add_params, stage_parser
from stages.common import load_params, run_stage
from stages.workspace import WORKSPACE


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp prepare", __doc__)
    add_params(parser)
    parser.add_argument("--raw", default=WORKSPACE.raw, help="the fetch stage's folder")
    parser.add_argument("--out", default=WORKSPACE.prepared, help="folder for shards, manifest and classes.json")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.config import parse_section
        from pipeline.data.config import PrepareConfig
        from pipeline.data.prepare import prepare
        from pipeline.training.config import ModelConfig

        params = load_params(args.params)
        cfg = parse_section(PrepareConfig, params, "prepare")
        channels = parse_section(ModelConfig, params, "model").channels  # decoded as training will
        return prepare(cfg, args.raw, args.out, channels).line()

    return run_stage(body, "prepare", [args.out])
