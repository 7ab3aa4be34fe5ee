"""`ltp STAGE [options]`: run one pipeline stage (the commands dvc.yaml calls)."""
from __future__ import annotations

import importlib
import sys

STAGES = ("check", "fetch", "prepare", "split", "tune", "stage1", "stage2", "evaluate", "report", "keep", "submit")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("lt-pipeline")
    except PackageNotFoundError:
        return "unknown (not installed)"


def usage() -> str:
    """The stage list, one line each: the first line of each stage module's docstring."""
    lines = ["usage: ltp STAGE [--params params.yaml] [stage options]", "       ltp STAGE --help | ltp --version",
             "", "stages (dvc.yaml runs check .. report in this order):"]
    for stage in STAGES:
        doc = importlib.import_module(f"stages.{stage}").__doc__ or ""
        summary = doc.strip().splitlines()[0].split(": ", 1)[-1]
        lines.append(f"  {stage:<9} {summary}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"ltp (lt-pipeline) {version()}")
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"error: unknown stage {stage!r}; valid: {', '.join(STAGES)} (ltp --help)", file=sys.stderr)
        return 2
    return importlib.import_module(f"stages.{stage}").main(rest)


if __name__ == "__main__":
    sys.exit(main())
