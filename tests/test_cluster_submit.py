"""`ltp submit` against a real two-node Ray cluster on 127.0.0.1 (`ray start --head` plus a second
`ray start --address` node with its own resources), and a training worker killed mid-run."""
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
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


def readme_one_machine() -> tuple[dict[str, str], list[list[str]]]:
    """The environment and the two `ray start` commands of cluster/README.md's one-machine recipe."""
    text = (ROOT / "cluster" / "README.md").read_text()
    block = text[text.index("**One machine**"):].split("\n\n")[1]
    env, commands = {}, []
    for line in block.splitlines():
        words = shlex.split(line)
        if words[0] == "export":
            env.update(word.split("=", 1) for word in words[1:])
        else:
            commands.append(words)
    return env, commands


def local_copy(command: list[str], ports: dict[str, str], temp_dir: Path) -> list[str]:
    """A README command as this test runs it: its ports swapped for free ones (the same README port
    gets the same free port everywhere), its temp dir for `temp_dir`, `ray` and `python` for ours."""
    def swap(word: str) -> str:
        key, sep, value = word.partition("=")
        if sep and (key.endswith("-port") or key == "--port" or key == "--address"):
            head, colon, port = value.rpartition(":")
            value = f"{head}{colon}{ports.setdefault(port, str(free_port()))}"
        return f"{key}{sep}{value.replace('/tmp/ltp-ray', str(temp_dir))}" if sep else word

    program = {"ray": str(Path(sys.executable).parent / "ray"), "python": sys.executable}
    words = [program.get(command[0], command[0]), *(swap(w) for w in command[1:])]
    return [str(ROOT / w) if w == "tests/raynode.py" else w for w in words]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """cluster/README.md's one-machine recipe: a head (1 CPU, dashboard on) and a second node (1 CPU),
    so two training workers land on two nodes."""
    tmp = tmp_path_factory.mktemp("cluster")
    temp_dir = Path(tempfile.mkdtemp(prefix="ltpc-", dir="/tmp"))  # Ray's socket paths must stay under 107 bytes
    readme_env, commands = readme_one_machine()
    # The token lives only in this environment (never in a file): Ray's token authentication.
    env = {**command_env(), **readme_env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    ports: dict[str, str] = {}
    head, second = (local_copy(command, ports, temp_dir) for command in commands)
    dashboard = ports["8265"]
    try:
        for command in (head, second):
            subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=120)
        wait_for_dashboard(f"http://127.0.0.1:{dashboard}", env["RAY_AUTH_TOKEN"])
        yield {"address": f"http://127.0.0.1:{dashboard}", "env": env, "tmp": tmp, "temp_dir": temp_dir,
               "ports": ports}
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
    """SIGKILL every process of this cluster (those whose command line names its temp dir, and their
    children: Ray's agents retitle themselves), not others'."""
    import psutil

    for _ in range(3):
        mine = set()
        for process in psutil.process_iter(["cmdline"]):
            try:
                if process.pid != os.getpid() and str(temp_dir) in " ".join(process.info["cmdline"] or []):
                    mine.update([process, *process.children(recursive=True)])
            except psutil.Error:
                continue
        for process in mine:
            try:
                process.kill()
            except psutil.Error:
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
    run_command(["ltp", "check"], repo)  # runs/params/STAGE.json, as `dvc repro` writes them first
    run_command(["ltp", "tune"], repo)  # tune.trials 0: the empty overlay stage1 reads
    return repo


def submit(cluster, repo, stage="stage1", address=None, storage=None, env=None, **popen):
    command = ["ltp", "submit", stage, "--address", address or cluster["address"],
               "--storage", str(storage or cluster["tmp"] / "shared")]
    return subprocess.Popen(command, cwd=repo, env=env or cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def history_epochs(path: Path) -> list[int]:
    rows = path.read_text().splitlines()
    column = rows[0].split("\t").index("epoch")
    return [int(row.split("\t")[column]) for row in rows[1:]]


def cluster_listeners(temp_dir: Path) -> dict[str, set[str]]:
    """Listening TCP addresses, by port, of this cluster's processes: those whose command line names
    its temp dir and their children (Ray's agents retitle themselves `ray::DashboardAgent`...)."""
    import psutil

    processes = set()
    for process in psutil.process_iter(["cmdline"]):
        try:
            if str(temp_dir) in " ".join(process.info["cmdline"] or []):
                processes.update([process, *process.children(recursive=True)])
        except psutil.Error:
            continue
    found: dict[str, set[str]] = {}
    for process in processes:
        try:
            for conn in process.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.setdefault(str(conn.laddr.port), set()).add(conn.laddr.ip)
        except psutil.Error:
            continue
    return found


def test_the_readme_cluster_listens_only_on_loopback_each_node_on_its_own_ports(cluster):
    ports = cluster["ports"]  # README port -> the free port this run used
    agents = [ports[p] for p in ("52365", "52375")]  # each node's dashboard agent, on its own port
    deadline = time.monotonic() + 60
    while not set(agents) <= set(listeners := cluster_listeners(cluster["temp_dir"])) and time.monotonic() < deadline:
        time.sleep(1)  # the agents start after `ray start` returns
    assert set(agents) <= set(listeners), (agents, listeners)
    assert ports["6379"] in listeners and ports["8265"] in listeners  # GCS and dashboard
    addresses = {ip for ips in listeners.values() for ip in ips}
    assert addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, listeners


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


def test_a_wrong_token_or_address_is_one_error_line_before_any_copy(cluster, repo):
    storage = cluster["tmp"] / "untouched"
    wrong_token = {**cluster["env"], "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    for address, env in ((cluster["address"], wrong_token), (f"http://127.0.0.1:{free_port()}", cluster["env"])):
        process = submit(cluster, repo, address=address, storage=storage, env=env)
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 2, out[-3000:]
        assert out.strip().splitlines() == [out.strip()] and out.startswith(f"error: the Ray cluster at {address} "), out
        assert not storage.exists()  # checked before data/split was copied


def test_a_sweep_then_a_submitted_stage1_trains_with_the_tuned_values(cluster, repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["stage1"]["epochs"] = 1
    # A range without params.yaml's lr (0.05): whichever trial wins, its lr differs from the default.
    params["tune"].update(trials=2, epochs=1, space={"lr": [0.001, 0.02]}, workers_per_trial=1, grace_epochs=None)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    run_command(["ltp", "check"], repo)
    run_command(["ltp", "tune"], repo)  # the sweep on this machine's own Ray, as `dvc repro tune` runs it
    tuned = yaml.safe_load((repo / "runs/tune/best_params.yaml").read_text())
    assert set(tuned) == {"stage1"} and 0.001 <= tuned["stage1"]["lr"] <= 0.02

    process = submit(cluster, repo)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-4000:]
    assert f"stage1: with the sweep's best values from runs/tune/best_params.yaml: {tuned['stage1']}" in out
    job = json.loads((repo / "runs/stage1/job.json").read_text())
    assert job["config"]["lr"] == tuned["stage1"]["lr"]  # what ran is what the workspace records


def head_raylet(temp_dir: Path) -> int:
    """The pid of the head node's raylet (the second node's temp dir is under the head's)."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if args and args[0].endswith("raylet") and f"--temp_dir={temp_dir}" in args:
            return pid
    raise AssertionError("no head raylet found")


def test_a_dead_head_ends_the_submit_within_its_deadline(cluster, repo):
    """Last in this module: it breaks the cluster."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["stage1"]["epochs"] = 20  # still training when the head dies
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    process = submit(cluster, repo)
    watchdog = threading.Timer(400, process.kill)  # reading its output below has no timeout of its own
    watchdog.start()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[stage1] epoch 1/"):
            break
    os.kill(head_raylet(cluster["temp_dir"]), signal.SIGKILL)
    killed = time.monotonic()
    out, _ = process.communicate(timeout=300)
    watchdog.cancel()
    lines.append(out)
    assert time.monotonic() - killed < 200, "".join(lines)[-3000:]
    assert process.returncode == 1 and out.strip().splitlines()[-1].startswith("error: job "), "".join(lines)[-3000:]
