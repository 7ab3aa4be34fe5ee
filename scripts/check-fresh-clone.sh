#!/usr/bin/env bash
# Reproduce HEAD from a fresh clone: `make repro` there must leave `git status` clean, i.e. give
# byte-identical metrics/ and dvc.lock to the committed ones (the README's figures come from them).
# About 10 minutes on a 2-core CPU machine. Usage: scripts/check-fresh-clone.sh [WORK_DIR]
set -euo pipefail
repo=$(git rev-parse --show-toplevel)
work=${1:-$(mktemp -d)}
git clone -q "$repo" "$work/clone"
cd "$work/clone"
echo "check-fresh-clone: make repro in $work/clone (HEAD $(git rev-parse --short HEAD))"
make repro
changed=$(git status --porcelain)
if [ -n "$changed" ]; then
    echo "check-fresh-clone: FAILED, make repro changed committed files:"
    echo "$changed"
    git --no-pager diff --stat
    exit 1
fi
echo "check-fresh-clone: ok, metrics/ and dvc.lock reproduced exactly"
