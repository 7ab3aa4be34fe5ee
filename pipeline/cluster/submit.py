"""The submitting side of `ltp submit`: a DVC stage as a Ray Job, its outputs back into the workspace.

1. The stage's data inputs (other stages' outputs, which the working-dir upload
   leaves out) are copied to STORAGE/workspace/, storage every node mounts.
2. The job is submitted with working_dir = the repository (Ray skips git-ignored
   files, so no data or caches travel) and the project's runtime environment
   (cluster/runtime_env.yaml); `pipeline.cluster.job` runs the stage's command.
0. Before anything is copied, the cluster must answer an authenticated request
   (a wrong address or token is ClusterUnreachable: one line, exit 2).
3. Its logs stream here until it ends; every wait is bounded (--timeout for the
   whole job, a few seconds per request, STATUS_SETTLE_S for the status to follow
   the end of the log stream, which is how a dead head shows), and Ctrl-C stops
   the job (or says how to). Only a job that SUCCEEDED and published
   STORAGE/jobs/ID/result.json counts (`ray job submit` exits 0 on a stopped
   job); then every output is copied into the workspace atomically, its
   SHA-256 checked, so DVC caches exactly what the cluster wrote.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.cluster.job import RESULT_FILE
from pipeline.cluster.spec import StageSpec
from pipeline.data.errors import DataError
from pipeline.io import atomic_dir, atomic_file
from pipeline.storage import copy_tree, exists, join, list_files, open_binary


REQUEST_TIMEOUT_S = 30.0  # one request to the dashboard
STATUS_SETTLE_S = 60.0  # after the log stream ends, the status must turn terminal within this
WATCH_EVERY_S = 30.0  # while logs stream, the cluster is asked for the job's status this often


class JobFailed(RuntimeError):
    """The cluster job did not succeed or did not publish its outputs."""


class ClusterUnreachable(RuntimeError):
    """The cluster does not answer (address, network, token); nothing was copied or submitted."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _bounded(call, timeout_s: float, what: str):
    """`call()` in a daemon thread, waited for at most `timeout_s` (a hung request cannot hold the
    process, even at exit); TimeoutError past it, the call's own exception otherwise."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what}: no answer within {timeout_s:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def connect(address: str, timeout_s: float = REQUEST_TIMEOUT_S):
    """A JobSubmissionClient that has answered an authenticated request (listing jobs)."""
    from ray.job_submission import JobSubmissionClient

    try:
        client = _bounded(lambda: JobSubmissionClient(address), timeout_s, f"connecting to {address}")
        _bounded(client.list_jobs, timeout_s, f"listing the jobs of {address}")
    except Exception as exc:
        raise ClusterUnreachable(f"the Ray cluster at {address} did not answer: {_first_line(exc)} "
                                 "(check --address / RAY_ADDRESS and RAY_AUTH_TOKEN)") from None
    return client


@dataclass(frozen=True)
class Target:
    """Where a job goes: the Ray dashboard address and the shared storage, as this machine reaches
    it (`storage`: a path or URL) and as the cluster nodes mount it (`cluster_storage`: a path)."""

    address: str
    storage: str
    cluster_storage: str


def runtime_env(repo: Path, env_file: Path) -> dict:
    """The project's runtime environment plus working_dir = the repository."""
    env = yaml.safe_load(env_file.read_text()) or {}
    return {**env, "working_dir": str(repo)}


def entrypoint(spec: StageSpec, target: Target, job_id: str) -> str:
    root = target.cluster_storage
    return shlex.join(["python", "-m", "pipeline.cluster.job", "--workspace", join(root, "workspace"),
                       "--result", join(root, "jobs", job_id), "--data", *spec.data_deps,
                       "--outs", *spec.outs, "--", *shlex.split(spec.cmd)])


def stage_inputs(repo: Path, spec: StageSpec, storage: str) -> None:
    """Copy the stage's data inputs from the workspace to the shared storage."""
    for rel in spec.data_deps:
        if not (repo / rel).exists():
            raise DataError(f"{rel} not found; run the stage that writes it first (dvc repro)")
        files = copy_tree(str(repo / rel), join(storage, "workspace", rel))
        print(f"[submit] {rel}: {len(files)} files -> {join(storage, 'workspace', rel)}", flush=True)


async def _stream_logs(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        sys.stdout.write(lines)
        sys.stdout.flush()


async def _watch(client, job_id: str) -> None:
    """While logs stream, ask for the job's status now and then: a cluster that stopped answering
    ends the wait (the stream of a dead head need not close)."""
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        try:
            _bounded(lambda: client.get_job_status(job_id), REQUEST_TIMEOUT_S, "the job's status")
        except Exception as exc:
            raise JobFailed(f"job {job_id}: the cluster stopped answering: {_first_line(exc)}") from None


async def _follow(client, job_id: str) -> None:
    """Stream the logs until they end (or the watch fails)."""
    tasks = [asyncio.ensure_future(_stream_logs(client, job_id)), asyncio.ensure_future(_watch(client, job_id))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()


def _terminal_status(client, job_id: str, settle_s: float, deadline: float | None):
    """The job's status once terminal; the log stream ends a moment before the status does, but a
    status that stays RUNNING for `settle_s` after it means the cluster lost the job (a dead head)."""
    limit = time.monotonic() + settle_s
    if deadline is not None:
        limit = min(limit, deadline)
    while True:
        try:
            status = _bounded(lambda: client.get_job_status(job_id), REQUEST_TIMEOUT_S, "the job's status")
        except Exception as exc:
            raise JobFailed(f"job {job_id}: the cluster stopped answering: {_first_line(exc)}") from None
        if status.is_terminal():
            return status
        if time.monotonic() > limit:
            raise JobFailed(f"job {job_id}: its logs ended but the cluster still reports {status.value} after "
                            f"{settle_s:.0f} s; a node (the head?) is probably down (`ray status`)")
        time.sleep(0.5)


def _stop(client, job_id: str, address: str, why: str) -> str:
    """Stop the job; the message says whether that worked, and how to stop it by hand if not."""
    try:
        _bounded(lambda: client.stop_job(job_id), REQUEST_TIMEOUT_S, "stopping the job")
        return f"job {job_id} stopped ({why})"
    except Exception as exc:
        return (f"job {job_id} ({why}) may keep running: stopping it failed ({_first_line(exc)}); "
                f"stop it with `ray job stop --address {address} {job_id}`")


def collect(repo: Path, spec: StageSpec, result: str) -> int:
    """Copy the published outputs into the workspace (each atomically), checking every SHA-256."""
    if not exists(join(result, RESULT_FILE)):
        raise JobFailed(f"{join(result, RESULT_FILE)} is missing: the job ended before publishing its outputs")
    with open_binary(join(result, RESULT_FILE)) as handle:
        published = json.load(handle)["outs"]
    missing = sorted(set(spec.outs) - set(published))
    if missing:
        raise JobFailed(f"the job published no {', '.join(missing)}")
    count = 0
    for rel in spec.outs:
        source, files = join(result, "outs", rel), published[rel]
        if set(list_files(source)) != set(files):
            raise JobFailed(f"{source}: the files differ from those listed in {RESULT_FILE}")
        if "" in files:  # a single file
            with atomic_file(repo / rel, "wb") as handle:
                _checked_copy(source, handle, files[""], repo / rel)
        else:
            with atomic_dir(repo / rel) as tmp:
                for name, digest in files.items():
                    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                    with open(tmp / name, "wb") as handle:
                        _checked_copy(join(source, name), handle, digest, repo / rel / name)
        count += len(files)
    return count


def _checked_copy(source: str, handle, digest: str, name: Path) -> None:
    sha = hashlib.sha256()
    with open_binary(source) as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            sha.update(chunk)
            handle.write(chunk)
    if sha.hexdigest() != digest:
        raise JobFailed(f"{name}: the copy does not match the SHA-256 the job published")


def submit_stage(repo: Path, spec: StageSpec, target: Target, env_file: Path,
                 timeout_s: float | None = None, settle_s: float = STATUS_SETTLE_S) -> str:
    """Run `spec` on the cluster and collect its outputs into `repo`; returns the one-line summary."""
    from ray.job_submission import JobStatus

    started = time.perf_counter()
    client = connect(target.address)  # before any data is copied
    stage_inputs(repo, spec, target.storage)
    job_id = f"ltp-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    try:
        _bounded(lambda: client.submit_job(entrypoint=entrypoint(spec, target, job_id), submission_id=job_id,
                                           runtime_env=runtime_env(repo, env_file)),
                 REQUEST_TIMEOUT_S * 4, "submitting the job")  # includes uploading the working dir
    except Exception as exc:
        raise ClusterUnreachable(f"the Ray cluster at {target.address} refused the job: {_first_line(exc)}") from None
    print(f"[submit] job {job_id} submitted to {target.address}", flush=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        asyncio.run(asyncio.wait_for(_follow(client, job_id), timeout_s))
        status = _terminal_status(client, job_id, settle_s, deadline)
    except KeyboardInterrupt:
        raise JobFailed(_stop(client, job_id, target.address, "interrupted")) from None
    except asyncio.TimeoutError:
        raise JobFailed(_stop(client, job_id, target.address, f"past --timeout {timeout_s:g} s")) from None
    if status != JobStatus.SUCCEEDED:
        try:
            message = _bounded(lambda: client.get_job_info(job_id).message, REQUEST_TIMEOUT_S, "the job's info")
        except Exception as exc:
            message = _first_line(exc)
        raise JobFailed(f"job {job_id} {status.value}: {message}")
    count = collect(repo, spec, join(target.storage, "jobs", job_id))
    return (f"submit {spec.name}: job {job_id} succeeded; {count} files of {len(spec.outs)} outputs collected "
            f"into the workspace in {time.perf_counter() - started:.0f} s")


def default_address() -> str | None:
    """$RAY_ADDRESS when it names the dashboard (http://...), as `ray job submit` reads it."""
    address = os.environ.get("RAY_ADDRESS", "")
    return address if address.startswith(("http://", "https://")) else None
