"""Running the project's commands (ltp, dvc) as a user would, from tests."""
import os
import subprocess
import sys
from pathlib import Path


def command_env() -> dict:
    """The environment with this interpreter's bin directory (ltp, dvc) first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def run_command(cmd: list[str], cwd: Path) -> str:
    """Run `cmd` in `cwd`; fail the test with its output when it exits non-zero. Returns stdout."""
    result = subprocess.run(cmd, cwd=cwd, env=command_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout
