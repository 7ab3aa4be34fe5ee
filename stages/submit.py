"""`ltp submit STAGE`: run a dvc.yaml stage on a Ray cluster as a Ray Job and collect its outputs
into this workspace (see cluster/README.md)."""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.cluster.submit import default_address  # light: no Ray import
from stages.cli import stage_parser
from stages.common import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp submit", __doc__)
    parser.add_argument("stage", help="a stage of dvc.yaml (its cmd runs on the cluster)")
    parser.add_argument("--address", default=default_address(),
                        help="the cluster's dashboard, http://HOST:8265 (taken from $RAY_ADDRESS when set)")
    parser.add_argument("--storage", required=True,
                        help="shared storage as this machine reaches it: a path or an fsspec URL")
    parser.add_argument("--cluster-storage", default=None,
                        help="the same storage as the cluster nodes mount it (default: --storage)")
    parser.add_argument("--dvc-yaml", default="dvc.yaml", help="the pipeline whose stage is submitted")
    parser.add_argument("--runtime-env", default="cluster/runtime_env.yaml", help="Ray runtime environment of the job")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop the job after this many seconds (None: no limit on the job; every request "
                             "to the cluster is still bounded)")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.cluster.submit import ClusterUnreachable, JobFailed, Target, submit_stage
        from pipeline.config import ConfigError
        from stages.dvcfile import stage_spec

        if not args.address:
            raise ConfigError("--address: give the dashboard address (http://HOST:8265) or set RAY_ADDRESS")
        cluster_storage = args.cluster_storage or args.storage
        if "://" in cluster_storage:
            raise ConfigError("--cluster-storage: the nodes need a mounted path (NFS, a CSI or FUSE mount)")
        repo = Path(args.dvc_yaml).resolve().parent
        target = Target(args.address, args.storage, cluster_storage)
        try:
            return submit_stage(repo, stage_spec(args.dvc_yaml, args.stage), target,
                                Path(args.runtime_env), args.timeout)
        except ClusterUnreachable as exc:  # nothing was copied or submitted
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except JobFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None

    return run_stage(body)
