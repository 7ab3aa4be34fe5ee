"""Running the project's commands (ltp, dvc) as a user would, from tests."""
import json
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


def committed_checkpoint(storage: Path, earlier: set[Path]) -> bool:
    """Whether Ray has registered a checkpoint of a stage-1 run under `storage` not in `earlier`
    (what a restart resumes from)."""
    for snapshot in storage.glob("stage1-*/checkpoint_manager_snapshot.json"):
        if snapshot.parent in earlier:
            continue
        try:
            if json.loads(snapshot.read_text()).get("latest_checkpoint_result"):
                return True
        except json.JSONDecodeError:  # being written right now
            pass
    return False


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a gloo rendezvous)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_ranks(worker, args: tuple, world: int, timeout_s: float) -> None:
    """torch.multiprocessing.spawn `worker(rank, port, *args)` on `world` processes (a fresh rendezvous
    port); fail after `timeout_s` seconds, terminating them."""
    import time

    import torch.multiprocessing as mp

    context = mp.spawn(worker, args=(free_port(), *args), nprocs=world, join=False)
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            raise TimeoutError(f"{world}-rank run did not finish in {timeout_s} s")


def loss_classes() -> list[type]:
    """Every loss pipeline.losses exports (each an nn.Module), so a test over them covers a new one."""
    from torch import nn

    from pipeline import losses

    return [obj for obj in vars(losses).values() if isinstance(obj, type) and issubclass(obj, nn.Module)]
