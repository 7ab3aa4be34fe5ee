"""`ltp` explains itself: the stage list, each stage's options with defaults and method names, the
version; help answers without importing torch or Ray."""
import subprocess
import sys
import time
from importlib.metadata import version

import pytest

from pipeline.training.methods import STAGE1
from pipeline.training.rebalance import STAGE2
from stages.__main__ import STAGES
from stages.cli import registered_methods
from tools import command_env


def ltp(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run(["ltp", *args], env=command_env(), capture_output=True, text=True)
    return result, time.perf_counter() - started


def test_help_lists_every_stage_with_one_line():
    result, _ = ltp("--help")
    assert result.returncode == 0
    stage_lines = result.stdout.split("stages", 1)[1].splitlines()[1:]
    listed = [line.split()[0] for line in stage_lines]
    assert listed == list(STAGES)
    assert "  stage1    representation learning of params `stage1.method` on Ray Train." in result.stdout


def test_version():
    result, _ = ltp("--version")
    assert result.returncode == 0 and result.stdout == f"ltp (lt-pipeline) {version('lt-pipeline')}\n"


def test_help_text_names_the_methods_the_registries_hold():
    assert sorted(registered_methods("stage1")) == STAGE1.names()
    assert sorted(registered_methods("stage2")) == STAGE2.names()


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help_is_quick_and_shows_help_text_and_defaults(stage):
    result, seconds = ltp(stage, "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"usage: ltp {stage}")
    text = " ".join(result.stdout.split())  # argparse wraps at the terminal width
    assert "--params PARAMS the params file (see params.yaml's comments) (default: params.yaml)" in text or (
        stage == "submit" and "--storage STORAGE shared storage" in text)
    if stage in ("stage1", "stage2"):
        assert f"params {stage}.method: one of {', '.join(registered_methods(stage))}" in text
    assert seconds < 3.0, f"ltp {stage} --help took {seconds:.1f} s (a shared machine: generous bound)"


def test_help_imports_neither_torch_nor_ray():
    code = ("import sys, contextlib, io\nfrom stages.__main__ import main\n"
            "for stage in ('stage1', 'tune', 'evaluate', 'submit'):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        main([stage, '--help'])\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
            "print(sorted(m for m in ('torch', 'ray', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], env=command_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_unknown_stage_points_to_help(capsys):
    from stages.__main__ import main
    assert main(["stage3"]) == 2
    assert "unknown stage 'stage3'" in capsys.readouterr().err
