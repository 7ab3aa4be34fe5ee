"""Find every evaluated run: the workspace, the commit it is based on, DVC experiments and kept runs;
one record per distinct run.

The commit (HEAD) holds the baseline the experiments start from: `dvc exp run` replaces the
workspace's results with the experiment's, and the baseline is none of the experiments, so
without it the report would lose the run that `make repro` made (and committed).

DVC experiments are read from their git refs (refs/exps/<baseline>/<name>) with dvc.api.read,
which reads git-tracked files from the commit and DVC outputs from the cache without taking
the repository lock: `dvc exp show` would wait on the lock that `dvc repro` holds while this
runs as a stage.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.reporting.records import RunError, RunFiles, RunRecord, directory_reader, load_run

SOURCE_PRIORITY = ("experiment", "kept", "commit", "workspace")  # which name a run found twice keeps


@dataclass(frozen=True)
class ExperimentRef:
    name: str
    baseline: str  # the commit the experiment was run from
    ref: str


def experiment_refs(root: str | Path) -> list[ExperimentRef]:
    """The repository's DVC experiments, oldest baseline first; none outside a git repository."""
    result = subprocess.run(["git", "for-each-ref", "--sort=committerdate", "--format=%(refname)", "refs/exps"],
                            cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        return []
    refs = []
    for ref in result.stdout.split():
        parts = ref.split("/")  # refs exps <2 hex> <38 hex> <name>; refs/exps/exec/... are DVC's own
        if len(parts) == 5 and len(parts[2]) == 2 and len(parts[3]) == 38:
            refs.append(ExperimentRef(name=parts[4], baseline=parts[2] + parts[3], ref=ref))
    return refs


def experiment_reader(root: str | Path, ref: str):
    """Files of the experiment at `ref`: git-tracked ones from its commit, DVC outputs from the local cache
    (an output missing from the cache, e.g. an experiment pulled without its data, reads as absent)."""
    from dvc.api import DVCFileSystem
    from dvc_data.index import DataIndexDirError

    fs = DVCFileSystem(repo=str(root), rev=ref)

    def read(path: str) -> bytes | None:
        try:
            return fs.cat_file(path)
        except (FileNotFoundError, DataIndexDirError):
            return None

    return read


def head_name(root: str | Path) -> str | None:
    """HEAD's short hash (not its branch: `dvc exp run` detaches HEAD while it runs); None outside a git
    repository or before the first commit."""
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def kept_names(kept_dir: str | Path) -> list[str]:
    kept_dir = Path(kept_dir)
    return sorted(p.name for p in kept_dir.iterdir() if p.is_dir()) if kept_dir.is_dir() else []


def distinct(records: list[RunRecord]) -> list[RunRecord]:
    """One record per digest, named after its highest-priority source; order of first appearance."""
    chosen: dict[str, RunRecord] = {}
    for record in records:
        held = chosen.get(record.digest)
        if held is None or SOURCE_PRIORITY.index(record.source) < SOURCE_PRIORITY.index(held.source):
            chosen[record.digest] = record
    return sorted(chosen.values(), key=lambda r: records.index(r))


def gather_runs(root: str | Path, files: RunFiles, kept_dir: str | Path,
                experiments: bool = True) -> tuple[list[RunRecord], list[str]]:
    """Every evaluated run found (each source's `files`), and a note per source that was skipped
    (incomplete runs)."""
    root = Path(root)
    records: list[RunRecord] = []
    skipped: list[str] = []
    sources = [("workspace", "workspace", directory_reader(root))]
    sources += [(name, "kept", directory_reader(Path(kept_dir) / name)) for name in kept_names(kept_dir)]
    if experiments:
        head = head_name(root) if (root / ".dvc").is_dir() else None
        if head is not None:
            sources.append((head, "commit", experiment_reader(root, "HEAD")))
        sources += [(exp.name, "experiment", experiment_reader(root, exp.ref)) for exp in experiment_refs(root)]
    for name, source, read in sources:
        try:
            records.append(load_run(read, files, name, source))
        except RunError as exc:
            skipped.append(str(exc))
    return distinct(records), skipped
