"""A private SoftHSM2 token: its config file, its token directory, its initialisation.

SoftHSM reads SOFTHSM2_CONF once, when a process calls C_Initialize; so the variable is only ever
set in a child's environment (softhsm2-util here, the worker elsewhere), never in ours, and two
tokens with two configs can live side by side in one test run.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SOFTHSM2_UTIL = "softhsm2-util"


@dataclass(frozen=True)
class SoftHSMToken:
    softhsm2_conf: Path
    tokendir: Path
    label: str
    user_pin: str = field(repr=False)
    so_pin: str = field(repr=False)
    module: Path = DEFAULT_MODULE


def write_conf(conf_path: Path, tokendir: Path) -> Path:
    conf_path, tokendir = Path(conf_path).absolute(), Path(tokendir).absolute()
    conf_path.write_text(
        f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    return conf_path


def read_tokendir(conf_path: Path) -> Path:
    """The token directory a softhsm2.conf names."""
    for line in Path(conf_path).read_text().splitlines():
        m = re.match(r"^\s*directories\.tokendir\s*=\s*(.+?)\s*$", line)
        if m:
            return Path(m.group(1))
    raise ValueError(f"{conf_path}: no directories.tokendir")


def child_env(conf_path: Path) -> dict[str, str]:
    """The environment for a child that must see this token, and only this one."""
    return {**os.environ, "SOFTHSM2_CONF": str(Path(conf_path).absolute())}


def create_token(
    directory: Path, label: str, user_pin: str | None = None, so_pin: str | None = None
) -> SoftHSMToken:
    """Write `directory/softhsm2.conf`, make `directory/tokens` and initialise one token in it.

    PINs default to fresh random ones. softhsm2-util takes them on its command line: acceptable
    for a rehearsal token, which is what this function is for.
    """
    directory = Path(directory).absolute()
    tokendir = directory / "tokens"
    tokendir.mkdir(parents=True, exist_ok=False)
    conf = write_conf(directory / "softhsm2.conf", tokendir)
    user_pin = user_pin or secrets.token_hex(8)
    so_pin = so_pin or secrets.token_hex(8)
    proc = subprocess.run(
        [SOFTHSM2_UTIL, "--init-token", "--free", "--label", label,
         "--pin", user_pin, "--so-pin", so_pin],
        env=child_env(conf), capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"softhsm2-util --init-token failed: {proc.stderr.strip()}")
    return SoftHSMToken(conf, tokendir, label, user_pin, so_pin)
