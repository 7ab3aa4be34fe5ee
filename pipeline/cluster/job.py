"""The job side of `ltp submit` (the Ray Job's entrypoint, run in the uploaded working directory).

    python -m pipeline.cluster.job --workspace SHARED/workspace --result SHARED/jobs/ID \
        --data data/split ... --outs runs/stage1 metrics/stage1.json ... -- ltp stage1 ...

1. Each --data path (another stage's output, left out of the upload) becomes a
   symlink to its copy under --workspace, a path every node mounts, so the
   stage resolves its shards to shared absolute paths that every worker reads.
2. The command runs; a non-zero exit ends the job with that code.
3. Each --outs path is copied to --result/outs/, and --result/result.json
   (every file's SHA-256) is written last: its presence means "complete".
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from pipeline.storage import copy_tree, join, open_binary, remove

RESULT_FILE = "result.json"


def link_data(workspace: str, paths: list[str]) -> None:
    for rel in paths:
        target = Path(workspace, rel)
        if not target.exists():
            raise FileNotFoundError(f"{target}: the submitted stage's input is not on the shared storage")
        link = Path(rel)
        link.parent.mkdir(parents=True, exist_ok=True)
        remove(str(link))
        link.symlink_to(target.resolve(), target_is_directory=target.is_dir())


def publish(outs: list[str], result: str) -> dict[str, dict[str, str]]:
    """Copy the stage's outputs to `result`/outs and write `result`/result.json last."""
    remove(join(result, RESULT_FILE))
    files = {}
    for rel in outs:
        if not Path(rel).exists():
            raise FileNotFoundError(f"{rel}: the stage did not write this declared output")
        files[rel] = copy_tree(rel, join(result, "outs", rel))
    with open_binary(join(result, RESULT_FILE), "wb") as handle:
        handle.write(json.dumps({"outs": files}, indent=2).encode())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.cluster.job", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", required=True, help="shared copy of the stages' data (a mounted path)")
    parser.add_argument("--result", required=True, help="where this job's outputs go (path or URL)")
    parser.add_argument("--data", nargs="*", default=[])
    parser.add_argument("--outs", nargs="*", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    link_data(args.workspace, args.data)
    print(f"[job] {shlex.join(command)} in {os.getcwd()}", flush=True)
    code = subprocess.run(command).returncode
    if code != 0:
        print(f"[job] the command exited with {code}; nothing published", flush=True)
        return code
    files = publish(args.outs, args.result)
    print(f"[job] published {sum(len(f) for f in files.values())} files of {len(files)} outputs "
          f"to {args.result}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
