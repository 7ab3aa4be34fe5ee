"""`ltp STAGE [options]`: run one pipeline stage (the commands dvc.yaml calls)."""
from __future__ import annotations

import importlib
import sys

STAGES = ("fetch", "prepare", "split", "tune", "stage1", "stage2", "evaluate", "report", "keep", "submit")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: ltp {{{','.join(STAGES)}}} [--params params.yaml] [stage options]")
        return 0 if argv else 2
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"error: unknown stage {stage!r}; valid: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"stages.{stage}").main(rest)


if __name__ == "__main__":
    sys.exit(main())
