"""DVC stage `fetch`: find or download the raw dataset named in params `data`."""
from __future__ import annotations

from stages.cli import add_params, stage_parser
from stages.common import load_params, run_stage
from stages.workspace import WORKSPACE


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp fetch", __doc__)
    add_params(parser)
    parser.add_argument("--out", default=WORKSPACE.raw, help="folder for the verified files and source.json")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.config import parse_section
        from pipeline.data.config import DataConfig
        from pipeline.data.fetch import fetch

        cfg = parse_section(DataConfig, load_params(args.params), "data")
        info = fetch(cfg, args.out)
        return f"fetched {info['dataset']} from {info['origin']} into {args.out}"

    return run_stage(body, "fetch", [args.out])
