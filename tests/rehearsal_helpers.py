"""Running `keyrite rehearse` as a person would, and looking at its token independently."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

KEYRITE = [sys.executable, "-m", "keyrite.cli"]
MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def rehearse(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, "rehearse", *args], capture_output=True, text=True,
                          timeout=timeout)


def rehearse_json(workdir: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    p = rehearse("--workdir", str(workdir), "--json", *extra)
    try:
        summary = json.loads(p.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"no JSON summary (exit {p.returncode}):\n{p.stdout}\n{p.stderr}"
        ) from None
    return p.returncode, summary, p.stderr


def kill_when(workdir: Path, pattern: str, *extra: str, timeout: float = 300) -> str:
    """Start a rehearsal and SIGKILL it (and its signer worker) once `pattern` is printed."""
    proc = subprocess.Popen([*KEYRITE, "rehearse", "--workdir", str(workdir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if re.search(pattern, line):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker process group too: a power cut
            break
    proc.wait(timeout=timeout)
    out = "".join(seen)
    assert proc.returncode == -signal.SIGKILL, f"never saw {pattern!r}:\n{out}"
    return out


def token_private_key_ids(summary: dict[str, Any]) -> list[str]:
    """The CKA_IDs of the private keys on the rehearsal's token, read with OpenSC's pkcs11-tool
    (not with keyrite's code): an independent look."""
    return token_object_ids(summary, "privkey")


def token_object_ids(summary: dict[str, Any], kind: str) -> list[str]:
    """The CKA_IDs of the token's objects of one pkcs11-tool `--type` (privkey, secrkey, ...)."""
    t = summary["token"]
    env = {**os.environ, "SOFTHSM2_CONF": t["softhsm2_conf"]}
    p = subprocess.run(
        ["pkcs11-tool", "--module", MODULE, "--token-label", t["label"], "--login",
         "--pin", t["user_pin"], "--list-objects", "--type", kind],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )
    return re.findall(r"^\s*ID:\s*([0-9a-f]+)\s*$", p.stdout, re.M)
