"""DVC stage `fetch`: find or download the raw dataset named in params `data`."""
from __future__ import annotations

import argparse

from pipeline.config import parse_section
from pipeline.data.config import DataConfig
from pipeline.data.fetch import fetch
from stages.common import load_params, run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltp fetch", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/raw")
    args = parser.parse_args(argv)

    def body() -> str:
        cfg = parse_section(DataConfig, load_params(args.params), "data")
        info = fetch(cfg, args.out)
        return f"fetched {info['dataset']} from {info['origin']} into {args.out}"

    return run_stage(body, "fetch", [args.out])
