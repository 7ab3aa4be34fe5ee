"""DVC stage `prepare`: raw dataset -> WebDataset shards per split + Parquet manifest + classes.json."""
from __future__ import annotations

import argparse

from pipeline.config import parse_section
from pipeline.data.config import PrepareConfig
from pipeline.data.prepare import prepare
from pipeline.training.config import ModelConfig
from stages.common import load_params, run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltp prepare", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--out", default="data/prepared")
    args = parser.parse_args(argv)

    def body() -> str:
        params = load_params(args.params)
        cfg = parse_section(PrepareConfig, params, "prepare")
        channels = parse_section(ModelConfig, params, "model").channels  # decoded as training will
        return prepare(cfg, args.raw, args.out, channels).line()

    return run_stage(body, "prepare", [args.out])
