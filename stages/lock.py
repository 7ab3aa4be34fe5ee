"""One run of a stage per output: a second concurrent run is refused, naming the holder.

The lock is an advisory `flock` on `.{output}.lock` beside the stage's main output, so the kernel
releases it when the holder exits, however it exits (a SIGKILLed run leaves no stale lock behind).
The file records who holds it (pid, host, start time, command) for the refusal message.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from pipeline.config import ConfigError


class StageBusy(ConfigError):
    """Another process runs the same stage into the same output."""


def lock_path(output: str | os.PathLike) -> Path:
    output = Path(output).resolve()
    return output.with_name(f".{output.name}.lock")


def _holder(handle) -> str:
    handle.seek(0)
    try:
        who = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        who = {}
    if not who:
        return "another process (it has not recorded itself yet)"
    return (f"pid {who.get('pid')} on {who.get('host')}, started {who.get('started')} "
            f"({who.get('command')})")


@contextlib.contextmanager
def stage_lock(output: str | os.PathLike, stage: str) -> Iterator[Path]:
    """Hold the lock of `output` for the body; raise StageBusy if another process holds it."""
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            handle.close()
            raise StageBusy(f"{output}: another `ltp {stage}` is writing it: {holder}; lock {path}") from None
        # The holder before us may have removed the file after we opened it: then our lock is on an
        # orphan inode and a third process could lock a new file; take the lock again on the new one.
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "command": " ".join(sys.argv)[:300]}, handle)
        handle.flush()
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        handle.close()
