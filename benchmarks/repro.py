"""Stage-by-stage wall time of `dvc repro`: the project's dvc.yaml in a temporary git + DVC copy,
each stage run with `dvc repro --single-item` in DAG order (so DVC's own work counts to its stage).

The default setting is the default pipeline (params.yaml as committed, Fashion-MNIST); --small runs
the DAG on scikit-learn's digits with one short epoch. --stages picks a prefix of the DAG.

    python -m benchmarks.repro [--small] [--stages check,fetch,prepare,split] [--out FILE]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import parser, report

ROOT = Path(__file__).resolve().parents[1]


def small_params(params: dict) -> dict:
    """Digits, tiny shards and one short epoch: the whole DAG in about a minute on 2 cores."""
    params["data"] = {"dataset": "digits"}
    params["prepare"]["shard_max_samples"] = 200
    params["split"].update(imbalance_ratio=10, val_per_class=10, many_threshold=60, few_threshold=20,
                           shard_max_samples=100)
    params["model"].update(image_size=16, mean=[0.5], std=[0.5])
    params["stage1"].update(method="ce", epochs=1, batch_size=32, warmup_epochs=0)
    params["stage2"].update(method="none", epochs=0)
    return params


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    cli = parser(__doc__)
    cli.add_argument("--stages", help="comma-separated stages, a prefix of the DAG (default: all)")
    args = cli.parse_args(argv)
    dag = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    stages = args.stages.split(",") if args.stages else dag
    if stages != dag[:len(stages)]:
        print(f"error: --stages must be a prefix of the DAG {','.join(dag)}", file=sys.stderr)
        return 2
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.small:
        params = small_params(params)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        for name in ("dvc.yaml", ".dvcignore"):
            shutil.copy(ROOT / name, repo / name)
        for name in ("pipeline", "stages", "kept_runs"):  # the stages' code; report depends on kept_runs
            shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
            _run(cmd, repo)
        total = 0.0
        for stage in stages:
            started = time.perf_counter()
            _run(["dvc", "repro", "--single-item", stage], repo)
            seconds = time.perf_counter() - started
            total += seconds
            rows.append({"stage": stage, "seconds": round(seconds, 1)})
            print(f"{stage}: {seconds:.1f} s", flush=True)
        rows.append({"stage": "total", "seconds": round(total, 1)})
    report("repro", {"params": "small (digits)" if args.small else "params.yaml", "stages": stages}, rows,
           args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
