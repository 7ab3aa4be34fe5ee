"""A fresh clone of HEAD agrees with its committed dvc.lock: every code and params dependency has the
hash the lock records, so the committed metrics (and the README's figures from them) are what this code
produces. Only the data is missing (a clone has no DVC cache), and fetch and report always run.

Fails after a commit that changes a stage's code or params without re-running `make repro` and
committing dvc.lock and metrics/ with it."""
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tools import run_command

ROOT = Path(__file__).resolve().parents[1]
ALWAYS_RUN = {"fetch", "report"}  # fetch records the dataset's content digest; report reads experiments


def stage_outputs(dvc_yaml: dict) -> set[str]:
    outs = set()
    for stage in dvc_yaml["stages"].values():
        for entry in [*stage.get("outs", []), *stage.get("metrics", [])]:
            outs.add(entry if isinstance(entry, str) else next(iter(entry)))
    return outs


def produced_by_a_stage(path: str, outputs: set[str]) -> bool:
    return any(path == out or path.startswith(f"{out}/") for out in outputs)


@pytest.mark.slow
def test_a_fresh_clone_of_head_matches_its_dvc_lock(tmp_path):
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    run_command(["git", "clone", "-q", str(ROOT), str(clone)], tmp_path)
    outputs = stage_outputs(yaml.safe_load((clone / "dvc.yaml").read_text()))
    status = json.loads(run_command(["dvc", "status", "--json"], clone))
    stale = []
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):
                assert change == "always changed" and stage in ALWAYS_RUN, (stage, change)
                continue
            for path, state in change.get("changed deps", {}).items():
                if not (state == "deleted" and produced_by_a_stage(path, outputs)):  # data a clone lacks
                    stale.append(f"{stage}: {path} {state}")
            for path, state in change.get("changed outs", {}).items():
                if state != "not in cache":
                    stale.append(f"{stage}: output {path} {state}")
            assert "changed command" not in change, stage
    assert stale == [], ("dvc.lock does not match HEAD (run `make repro`, commit dvc.lock and metrics/):\n"
                         + "\n".join(stale))
