"""What counts as an expected failure of a stage, and its one-line message (`error: <where>: <what>`).

Expected: our own ConfigError / DataError, wherever they were raised (Ray wraps a worker's
exception in its own types: they are unwrapped here), invalid YAML, unreadable Parquet and
operating-system errors on a named file (permissions, missing paths, a full disk). Anything else is
a bug and keeps its traceback.
"""
from __future__ import annotations

from typing import Iterator

import yaml

from pipeline.config import ConfigError
from pipeline.data.errors import DataError

# Where Ray Train / Ray Core keep the exception they wrap (a worker's, the controller's, a task's).
_WRAPPED = ("_base_exc", "cause", "controller_failure")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it wraps, depth first, each once."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen or not isinstance(current, BaseException):
            continue
        seen.add(id(current))
        yield current
        stack.extend(getattr(current, name, None) for name in _WRAPPED)
        stack.extend((getattr(current, "worker_failures", None) or {}).values())
        stack.extend((current.__context__, current.__cause__))


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else "params"
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}: invalid YAML: {problem}"


def _os_message(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else "a file"
    return f"{where}: {exc.strerror or exc}"


def expected_failure(exc: BaseException) -> str | None:
    """The `error:` message for an expected failure anywhere in `exc`'s chain, else None."""
    import pyarrow

    chain = list(_chain(exc))
    for current in chain:  # our own messages first: they name the file or key best
        if isinstance(current, (ConfigError, DataError)) and not hasattr(current, "cause"):
            return str(current)
    for current in chain:
        if isinstance(current, yaml.YAMLError):
            return _yaml_message(current)
        if isinstance(current, pyarrow.ArrowException):
            return f"not a readable Parquet / Arrow file: {current}"
        if isinstance(current, OSError) and current.filename is not None:
            return _os_message(current)
    return None
