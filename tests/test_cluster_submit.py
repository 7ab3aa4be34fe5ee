"""`ltp submit` against a real two-node Ray cluster on 127.0.0.1 (`ray start --head` plus a second
`ray start --address` node with its own resources), and a training worker killed mid-run."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from datagen import make_digits_split
from tools import command_env, committed_checkpoint, run_command

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_ports() -> list[str]:
    return [f"--dashboard-agent-listen-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (1 CPU, dashboard on) and a second node (1 CPU): two training workers land on two nodes."""
    tmp = tmp_path_factory.mktemp("cluster")
    temp_dir = Path(tempfile.mkdtemp(prefix="ltpc-", dir="/tmp"))  # Ray's socket paths must stay under 107 bytes
    port, dashboard = free_port(), free_port()
    # The token lives only in this environment (never in a file): Ray's token authentication.
    env = {**command_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    ray = str(Path(sys.executable).parent / "ray")
    head = [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}", "--num-cpus=1",
            f"--temp-dir={temp_dir}", "--disable-usage-stats", *node_ports()]
    # Its own temp dir, as on a second machine: nodes sharing one would share the unpacked job working
    # directory, and one node's clean-up would delete it under the other's running driver.
    second = [sys.executable, str(ROOT / "tests" / "raynode.py"), "start", f"--address=127.0.0.1:{port}",
              "--node-ip-address=127.0.0.1", "--num-cpus=1", '--resources={"second_node": 1}',
              f"--temp-dir={temp_dir / 'node2'}", "--disable-usage-stats", *node_ports()]
    try:
        for command in (head, second):
            subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=120)
        wait_for_dashboard(f"http://127.0.0.1:{dashboard}", env["RAY_AUTH_TOKEN"])
        yield {"address": f"http://127.0.0.1:{dashboard}", "env": env, "tmp": tmp}
    finally:
        stop_nodes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_dashboard(address: str, token: str, timeout_s: float = 90) -> None:
    """`ray start` returns before the dashboard (the Jobs API) answers."""
    request = urllib.request.Request(f"{address}/api/version", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def stop_nodes(temp_dir: Path) -> None:
    """SIGKILL every process of this cluster (those whose command line names its temp dir), not others'."""
    for _ in range(3):
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
        mine = []
        for pid in pids:
            try:
                if str(temp_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    mine.append(pid)
            except OSError:
                continue
        for pid in mine:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not mine:
            return
        time.sleep(1)


@pytest.fixture(scope="module")
def repo(cluster):
    repo = cluster["tmp"] / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".gitignore", ".dvcignore", "cluster/runtime_env.yaml"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo / name)
    for package in ("pipeline", "stages"):
        shutil.copytree(ROOT / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {"dataset": "digits"}
    params["model"].update(image_size=16, mean=[0.5], std=[0.5])
    params["stage1"].update(method="ce", epochs=2, batch_size=32, lr=0.05, warmup_epochs=0)
    params["ray"].update(storage_path=str(cluster["tmp"] / "shared" / "ray_runs"))
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    make_digits_split(repo / "data")
    return repo


def submit(cluster, repo, stage="stage1", **popen):
    command = ["ltp", "submit", stage, "--address", cluster["address"], "--storage", str(cluster["tmp"] / "shared")]
    return subprocess.Popen(command, cwd=repo, env=cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def history_epochs(path: Path) -> list[int]:
    rows = path.read_text().splitlines()
    column = rows[0].split("\t").index("epoch")
    return [int(row.split("\t")[column]) for row in rows[1:]]


def test_submitted_stage1_lands_in_the_workspace_like_a_local_run(cluster, repo):
    process = submit(cluster, repo)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-4000:]
    assert "succeeded" in out.splitlines()[-1] and "[stage1] epoch 2/2" in out
    assert {p.name for p in (repo / "runs" / "stage1").iterdir()} == {"model.pt", "job.json"}
    # The shards the cluster read are the shared copy, not the workspace's.
    job = json.loads((repo / "runs" / "stage1" / "job.json").read_text())
    assert job["stage"] == "stage1" and job["config"]["epochs"] == 2

    run_command(["ltp", "stage1", "--out", "local/stage1", "--metrics", "local/stage1.json",
                 "--history", "local/history.tsv"], repo)
    remote = json.loads((repo / "metrics" / "stage1.json").read_text())
    local = json.loads((repo / "local" / "stage1.json").read_text())
    assert sorted(remote) == sorted(local) and remote["epoch"] in (1, 2)
    assert history_epochs(repo / "metrics" / "stage1_history.tsv") == history_epochs(repo / "local" / "history.tsv")
    assert ((repo / "metrics" / "stage1_history.tsv").read_text().splitlines()[0]
            == (repo / "local" / "history.tsv").read_text().splitlines()[0])


def test_a_killed_worker_is_replaced_and_training_resumes_from_the_checkpoint(cluster, repo):

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["stage1"]["epochs"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    storage = Path(params["ray"]["storage_path"])
    earlier = set(storage.glob("stage1-*"))
    process = submit(cluster, repo)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and not committed_checkpoint(storage, earlier):
        time.sleep(0.2)
    assert committed_checkpoint(storage, earlier), "no checkpoint before the deadline"
    # Ray's state API, through the CLI in the cluster's environment (it authenticates with the token).
    listed = subprocess.run([str(Path(sys.executable).parent / "ray"), "list", "actors", "--address",
                             cluster["address"], "--filter", "class_name=RayTrainWorker", "--filter", "state=ALIVE",
                             "--detail", "--format", "json"], env=cluster["env"], capture_output=True, text=True,
                            check=True)
    workers = json.loads(listed.stdout)
    assert len(workers) == 2 and len({w["node_id"] for w in workers}) == 2  # one worker on each node
    os.kill(workers[1]["pid"], signal.SIGKILL)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-4000:]
    assert history_epochs(repo / "metrics" / "stage1_history.tsv") == [1, 2, 3, 4]
    epoch_lines = [line for line in out.splitlines() if line.startswith("[stage1] epoch")]
    assert sum("epoch 1/4" in line for line in epoch_lines) == 1, out[-4000:]  # resumed, not restarted
    assert epoch_lines[-1].startswith("[stage1] epoch 4/4")
    assert "Reporting training result" not in out  # Ray Train's per-report INFO line is quieted
    assert json.loads((repo / "runs" / "stage1" / "job.json").read_text())["config"]["epochs"] == 4
