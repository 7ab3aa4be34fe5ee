"""What every stage shares: params loading and the error boundary of a command."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from pipeline.config import ConfigError
from pipeline.data.errors import DataError
from stages.errors import expected_failure
from stages.lock import stage_lock


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a syntax error names the file, line and column (see stages.errors)."""
    with open(path) as handle:  # a stream, so the error marks carry the file name
        return yaml.safe_load(handle)


def load_params(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    params = read_yaml(path) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params


def check_writable(outputs: Sequence[str | Path]) -> None:
    """Raise DataError unless every output can be created where it goes: a stage finds out before
    its work, not after hours of training. Probes by creating a file, which also catches read-only
    mounts and the cases where permission bits say nothing (root)."""
    for output in map(Path, outputs):
        place = output.resolve().parent
        while not place.exists():
            place = place.parent
        try:
            with tempfile.TemporaryFile(dir=place, prefix=".ltp-write-probe-"):
                pass
        except OSError as exc:
            raise DataError(f"{output}: cannot be written ({place}: {exc.strerror or exc})") from exc


def run_stage(body: Callable[[], str], stage: str | None = None, outputs: Sequence[str | Path] = ()) -> int:
    """Run a stage body that returns its one-line summary: the one error boundary of every stage.

    With `outputs`, they are checked writable first and the stage holds the lock of the first (a
    second concurrent run into it is refused, naming the first). Every expected failure (see
    stages.errors) ends in one `error: <file or key>: <what>` line on stderr and exit code 2.
    """
    try:
        if outputs:
            check_writable(outputs)
            with stage_lock(outputs[0], stage or "stage"):
                summary = body()
        else:
            summary = body()
    except Exception as exc:  # noqa: BLE001 -- sorted into expected (exit 2) and bugs (re-raised)
        message = expected_failure(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2
    print(summary)
    return 0
