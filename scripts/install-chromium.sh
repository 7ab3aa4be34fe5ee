#!/usr/bin/env bash
# Headless Chromium for the report's browser test (tests/test_report.py): Debian's chromium package.
# Nothing to do when a Chromium is already on PATH; otherwise install it as root with apt-get.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the report's browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
    echo "Chromium is missing: install Debian's 'chromium' package (the report's browser test needs it)" >&2
    exit 1
fi
