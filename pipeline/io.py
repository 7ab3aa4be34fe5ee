"""Atomic writes and hashing: an interrupted stage never leaves a half-written output.

Temporary paths sit beside their target and carry the writer's pid and host
(`.{name}.tmp-{pid}-{host}-XXXX`), so the next write of the same target on that host removes what a
killed writer left, and never a live writer's.
Outputs get the permissions of a plain `open` / `mkdir` under the process umask, not mkdtemp's 0700.
"""
from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (another thread may be
    creating files meanwhile); elsewhere set briefly to the most restrictive value and restored."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


# Temporary names carry the writer: pid and host (shared storage may have writers on several hosts;
# only this host's pids can be checked).
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _writer_tag() -> str:
    return f"{os.getpid()}-{_HOST}"


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporary siblings of `target` left by writers on this host that no longer run."""
    removed = []
    for path in target.parent.glob(f".{glob.escape(target.name)}.*-*-*"):
        kind, _, rest = path.name[len(target.name) + 2:].partition("-")
        pid, _, host = rest.partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or host[:8] != _HOST or _pid_alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-{_writer_tag()}-"


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `target`; on success it replaces `target`.

    On any exception the temporary directory is removed and `target` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    tmp.chmod(0o777 & ~current_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{_writer_tag()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside `target` for writing; rename it onto `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_file(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")


def write_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str],
               delimiter: str = ",", extrasaction: str = "raise") -> None:
    """Rows as a CSV (or, with delimiter "\t", TSV) file with a header, written atomically."""
    with atomic_file(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames), delimiter=delimiter, lineterminator="\n",
                                extrasaction=extrasaction)
        writer.writeheader()
        writer.writerows(rows)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
