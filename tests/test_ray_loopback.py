"""A local Ray session is reachable from this machine only: while a stage trains with 2 DDP workers,
every listening socket of every process of the session is on 127.0.0.1, and the session runs with
a token of its own."""
import json
import os
import sys
from pathlib import Path

import psutil
import pytest

from datagen import make_digits_split
from pipeline.data.contracts import read_split
from pipeline.training.config import ModelConfig, RayConfig, Stage1Config
from pipeline.training.launch import init_ray, run_on_ray
from pipeline.training.job import task_of, train_job
from pipeline.training.worker import train_worker

pytestmark = pytest.mark.ray
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def session_listeners(driver: int) -> list[dict]:
    """Every listening TCP/UDP socket of `driver` and its descendants (the whole local session:
    GCS, raylet, agents, dashboard, Ray Train's controller and workers)."""
    root = psutil.Process(driver)
    found = []
    for process in [root, *root.children(recursive=True)]:
        try:
            # the whole command line: a venv's path can push the binary's name past any cut-off
            name = " ".join(process.cmdline())
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN or (conn.type == 2 and conn.laddr):  # 2: SOCK_DGRAM
                    found.append({"pid": process.pid, "process": name, "ip": conn.laddr.ip, "port": conn.laddr.port})
        except psutil.Error:  # a process that ended meanwhile
            pass
    return found


def listener_log(path: Path, driver: int):
    """A Ray Train callback that records the session's listeners after the first epoch, while the
    workers and their DDP process group are up."""
    from ray.train import UserCallback

    class Listeners(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            if metrics[0]["epoch"] == 1:
                path.write_text(json.dumps(session_listeners(driver)))

    return Listeners()


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    import ray

    cfg = RayConfig(num_workers=2, cpus_per_worker=1, storage_path=str(tmp_path_factory.mktemp("ray_runs")))
    init_ray(cfg)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the callback runs in Ray's controller
    yield cfg
    ray.shutdown()


def test_every_listener_of_a_training_session_is_on_loopback(ray_session, tmp_path):
    split = make_digits_split(tmp_path / "digits")
    split_data = read_split(split)
    task = task_of(split_data.stats, ModelConfig(image_size=8))
    config = Stage1Config(method="ce", epochs=2, batch_size=64, lr=0.05)
    job = train_job("stage1", config, task, split_data, RayConfig())
    record = tmp_path / "listeners.json"
    result = run_on_ray(train_worker, job, ray_session, "loopback-probe", [listener_log(record, os.getpid())])
    assert result.error is None
    listeners = json.loads(record.read_text())
    processes = " ".join(row["process"] for row in listeners)
    assert "gcs_server" in processes and "raylet" in processes and "RayTrainWorker" in processes
    exposed = [row for row in listeners if row["ip"] not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_the_session_runs_with_a_token_of_its_own(ray_session):
    import ray

    token = os.environ["RAY_AUTH_TOKEN"]
    assert os.environ["RAY_AUTH_MODE"] == "token" and len(token) == 64
    shared = Path.home() / ".ray" / "auth_token"  # what Ray would use by default, shared by sessions
    assert not shared.is_file() or shared.read_text().strip() != token
    raylet = next(p for p in psutil.Process().children(recursive=True) if "raylet" in p.name())
    assert raylet.environ()["RAY_AUTH_TOKEN"] == token

    @ray.remote
    def worker_token() -> str:
        return os.environ.get("RAY_AUTH_TOKEN", "")

    assert ray.get(worker_token.remote()) == token
