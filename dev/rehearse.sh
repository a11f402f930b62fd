#!/usr/bin/env bash
# README command 1: install what is needed, then rehearse the bundled ceremony end to end on a fresh
# SoftHSM2 token. Extra arguments go to `keyrite rehearse` (e.g. --json, --fixture small).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source dev/setup.sh
workdir=${KEYRITE_WORKDIR:-rehearsals/$(date -u +%Y%m%dT%H%M%SZ)}
exec .venv/bin/keyrite rehearse --workdir "$workdir" "$@"
