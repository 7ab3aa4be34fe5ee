"""The submitting side of `ltp submit`: a DVC stage as a Ray Job, its outputs back into the workspace.

1. The stage's data inputs (other stages' outputs, which the working-dir upload
   leaves out) are copied to STORAGE/workspace/, storage every node mounts.
2. The job is submitted with working_dir = the repository (Ray skips git-ignored
   files, so no data or caches travel) and the project's runtime environment
   (cluster/runtime_env.yaml); `pipeline.cluster.job` runs the stage's command.
3. Its logs stream here until it ends. Only a job that SUCCEEDED and published
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
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.cluster.job import RESULT_FILE
from pipeline.cluster.spec import StageSpec
from pipeline.io import atomic_dir, atomic_file
from pipeline.storage import copy_tree, exists, join, list_files, open_binary


class JobFailed(RuntimeError):
    """The cluster job did not succeed or did not publish its outputs."""


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
            raise FileNotFoundError(f"{rel} not found; run the stage that writes it first")
        files = copy_tree(str(repo / rel), join(storage, "workspace", rel))
        print(f"[submit] {rel}: {len(files)} files -> {join(storage, 'workspace', rel)}", flush=True)


async def _stream_logs(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        sys.stdout.write(lines)
        sys.stdout.flush()


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
                 timeout_s: float | None = None) -> str:
    """Run `spec` on the cluster and collect its outputs into `repo`; returns the one-line summary."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    started = time.perf_counter()
    stage_inputs(repo, spec, target.storage)
    job_id = f"ltp-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    client = JobSubmissionClient(target.address)
    client.submit_job(entrypoint=entrypoint(spec, target, job_id), submission_id=job_id,
                      runtime_env=runtime_env(repo, env_file))
    print(f"[submit] job {job_id} submitted to {target.address}", flush=True)
    try:
        asyncio.run(asyncio.wait_for(_stream_logs(client, job_id), timeout_s))
    except (KeyboardInterrupt, asyncio.TimeoutError):
        client.stop_job(job_id)
        raise JobFailed(f"job {job_id} stopped (interrupted or past {timeout_s} s)") from None
    status = client.get_job_status(job_id)
    while not status.is_terminal():  # the log stream can end a moment before the status does
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        message = client.get_job_info(job_id).message
        raise JobFailed(f"job {job_id} {status.value}: {message}")
    count = collect(repo, spec, join(target.storage, "jobs", job_id))
    return (f"submit {spec.name}: job {job_id} succeeded; {count} files of {len(spec.outs)} outputs collected "
            f"into the workspace in {time.perf_counter() - started:.0f} s")


def default_address() -> str | None:
    """$RAY_ADDRESS when it names the dashboard (http://...), as `ray job submit` reads it."""
    address = os.environ.get("RAY_ADDRESS", "")
    return address if address.startswith(("http://", "https://")) else None
