"""Command-line pieces the stages share: one parser style, and the method names for `--help`.

`ltp STAGE --help` must answer without importing torch or Ray (seconds), so a stage imports its
library modules inside its body, and the method names are read from the registering decorators'
source (tests/test_cli.py checks they equal the registries).
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

from stages.workspace import WORKSPACE

_ROOT = Path(__file__).resolve().parents[1]
METHOD_SOURCES = {"stage1": ("pipeline/training/methods.py", "STAGE1"),
                  "stage2": ("pipeline/training/rebalance.py", "STAGE2")}


def stage_parser(prog: str, doc: str | None, epilog: str | None = None) -> argparse.ArgumentParser:
    """A stage's parser: the first paragraph of its docstring as description, defaults shown in --help."""
    description = (doc or "").split("\n\n")[0]
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=WORKSPACE.params, help="the params file (see params.yaml's comments)")


def registered_methods(stage: str) -> list[str]:
    """Names registered with `@STAGE1.register("name")` (or STAGE2) in the module's source."""
    path, registry = METHOD_SOURCES[stage]
    names = []
    for node in ast.walk(ast.parse((_ROOT / path).read_text())):
        for deco in getattr(node, "decorator_list", ()):
            if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "register"
                    and isinstance(deco.func.value, ast.Name) and deco.func.value.id == registry):
                names.append(deco.args[0].value)
    return names


def methods_epilog(stage: str) -> str:
    return f"params {stage}.method: one of {', '.join(registered_methods(stage))}"
