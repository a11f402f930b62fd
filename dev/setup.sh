#!/usr/bin/env bash
# Installs everything keyrite needs on Debian (as root) and builds ./.venv, reporting on stderr
# only (stdout stays the command's own, e.g. `dev/rehearse.sh --json`). Sourced by the two
# README commands; safe to run again (apt and pip skip what is already there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
need=(python3 python3-venv softhsm2 opensc opencryptoki libopencryptoki0 openssh-client systemd systemd-container debootstrap ca-certificates opendnssec-enforcer-sqlite3 opendnssec-common libhsm-bin libxml2-utils sqlite3 tmux umockdev gir1.2-umockdev-1.0 python3-gi e2fsprogs util-linux mount dosfstools mtools fusefat fuse3 poppler-utils zbar-tools fonts-dejavu-core ldnsutils)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "keyrite setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if [[ ! -x .venv/bin/keyrite ]] || [[ pyproject.toml -nt .venv/.installed ]]; then
  echo "keyrite setup: building .venv (Debian's python3)" >&2
  /usr/bin/python3 -m venv .venv >&2
  .venv/bin/pip install -q --upgrade pip >&2
  .venv/bin/pip install -q -e '.[test]' >&2
  touch .venv/.installed
fi
