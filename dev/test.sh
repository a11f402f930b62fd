#!/usr/bin/env bash
# README command 2 (and .ci/run): install what is needed, lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source dev/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
