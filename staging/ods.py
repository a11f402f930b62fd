"""A private OpenDNSSEC 2.1 for rehearsals and tests: its installation, its enforcer, its seed.

Why here: `keyrite rehearse --signer opendnssec` and the tests both need a real ods-enforcerd
over a SoftHSM2 token, in a directory of their own (signer_shim/opendnssec/ods_setup.py writes
it), started and always stopped by whoever made it; production never imports tests/, so the
set-up lives in staging/ and tests/ods_helpers.py wraps it.

The seed: a previous ceremony on OpenDNSSEC is the enforcer's own earlier `key generate`, made
through `OdsSigner` exactly as the ceremony's will be, so every count the rehearsal then
observes (key count, the enforcer's plan) is the enforcer's, never a fixture's arithmetic.
The enforcer is then flushed (keys handed to the zones) and stopped; `running()` serves the
same installation again for the ceremony.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from signer_shim.interface import PolicyKeys, Progress, SignerError
from signer_shim.opendnssec.ods_config import OdsConfig, load_ods_config
from signer_shim.opendnssec.ods_daemon import clear_stale_pidfile, stop_enforcer
from signer_shim.opendnssec.ods_setup import (
    SCHEMA,
    EnforcerDaemon,
    OdsInstallation,
    create_installation,
)
from signer_shim.opendnssec.signer import OdsSigner
from signer_shim.pkcs11.softhsm import SoftHSMToken, read_tokendir

TOOLS = ("ods-enforcer", "ods-enforcerd", "ods-hsmutil", "xmllint")
#: zones per fixture shape: the seed's 13, or one for fast tests
ZONES = {"seed": 13, "small": 1, "default": 13}
#: what the earlier ceremony generated for (the enforcer's own count decides how many keys)
SEED_DURATION = "P1Y"


def unavailable() -> str:
    """Why a private OpenDNSSEC cannot run here ("" when it can)."""
    for tool in TOOLS:
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return (f"{tool} is not installed (dev/setup.sh installs opendnssec-enforcer-sqlite3 "
                    "opendnssec-common libhsm-bin libxml2-utils)")
    if not SCHEMA.is_file():
        return f"{SCHEMA} is missing (Debian package opendnssec-enforcer-sqlite3)"
    return ""


def installation_at(config_path: Path) -> OdsInstallation:
    """The installation `create_installation` wrote, read back from its signer.toml (to start
    its enforcer again in a later process: a resumed rehearsal, a test's check)."""
    config = load_ods_config(config_path)
    d = config.conf.parent
    text = config.conf.read_text()
    label = text.split("<TokenLabel>", 1)[1].split("<", 1)[0]
    pin = text.split("<PIN>", 1)[1].split("<", 1)[0]
    token = SoftHSMToken(config.softhsm2_conf, read_tokendir(config.softhsm2_conf), label, pin,
                         "")
    return OdsInstallation(d, config.conf, d / "kasp.xml", d / "zonelist.xml", d / "kasp.db",
                           d / "enforcer.sock", token, config, config_path)


@contextmanager
def running_installation(
    directory: Path, zones: Mapping[str, Sequence[str]], policies: Sequence[PolicyKeys],
) -> Iterator[tuple[OdsInstallation, EnforcerDaemon]]:
    """A new installation in `directory`, its enforcer up with policies and zones imported,
    stopped at the end."""
    inst = create_installation(directory, policies, zones)
    daemon = EnforcerDaemon(inst)
    daemon.start()
    try:
        daemon.bootstrap()
        yield inst, daemon
    finally:
        daemon.stop()


def stop_leftover(directory: Path) -> str:
    """Stop an enforcer a killed rehearsal left running over the installation in `directory`
    (found by its pid file, checked to be an ods-enforcerd): `ods-enforcerd -d` is the
    rehearsal's child but does not die with it, and a second one over the same database and
    socket must not start beside it. "not running" when there was none."""
    if not (directory / "conf.xml").is_file():
        return "not running"
    how = stop_enforcer(directory / "enforcerd.pid", directory / "enforcer.sock")
    clear_stale_pidfile(directory / "enforcerd.pid")  # a SIGKILLed one's: it blocks a start
    return how


@contextmanager
def running(config_path: Path) -> Iterator[EnforcerDaemon]:
    """The installation's enforcer up for as long as the block runs, stopped (and reaped)
    after it, even if the block fails; one a killed run left is stopped first."""
    inst = installation_at(config_path)
    stop_leftover(inst.directory)
    daemon = EnforcerDaemon(inst)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def wait_until_idle(daemon: EnforcerDaemon, timeout: float = 20.0) -> None:
    """Until `queue` reports every worker idle (the enforce tasks `flush` started are done)."""
    deadline = time.monotonic() + timeout
    while "All worker threads idle" not in daemon.command("queue"):
        if time.monotonic() > deadline:
            raise TimeoutError("the enforcer stayed busy")
        time.sleep(0.05)


def settle(daemon: EnforcerDaemon) -> None:
    """Let the enforcer do what it would do on its own now (hand keys to zones), so the
    ceremony's plan and its execution see the same pool."""
    daemon.command("flush")
    time.sleep(0.2)
    wait_until_idle(daemon)


def zone_names(policies: Sequence[PolicyKeys], shape: str) -> dict[str, tuple[str, ...]]:
    names = sorted({p.policy for p in policies})
    n = ZONES[shape]
    return {p: tuple(f"zone{i:02d}.example" if len(names) == 1 else f"zone{i:02d}.{p}.example"
                     for i in range(1, n + 1)) for p in names}


@dataclass(frozen=True)
class SeededOds:
    config: OdsConfig
    config_path: Path  # signer.toml (backend = "opendnssec")
    zones: Mapping[str, tuple[str, ...]]
    seeded: int  # keys the earlier generate made (the enforcer's count)


def seed_rehearsal_ods(directory: Path, policies: Sequence[PolicyKeys], *, shape: str = "seed",
                       name: str = "signer", role: str = "standby",
                       duration: str = SEED_DURATION,
                       progress: Progress | None = None) -> SeededOds:
    """A private installation in `directory` (new) with the script's policies over the
    fixture's zones, holding the keys of an earlier `key generate --duration DURATION --all`
    (planned and executed by `OdsSigner`, its operation journal kept apart in seed-state/),
    the enforcer flushed and stopped again."""
    zones = zone_names(policies, shape)
    inst = create_installation(directory, policies, zones, name=name, role=role,
                               label="rehearsal", timeout="PT10M")
    with EnforcerDaemon(inst) as daemon:
        daemon.bootstrap()
        seed_config = OdsConfig(**{**inst.config.__dict__,
                                   "state_dir": inst.directory / "seed-state"})
        with OdsSigner(seed_config) as signer:
            plan = signer.plan_generate(policies, duration)
            result = signer.execute(plan, [], progress)
        settle(daemon)
    return SeededOds(inst.config, inst.config_path, zones, int(result["added"]))


def serve(config_path: Path, say: Callable[[str], None] = print) -> int:
    """Run the installation's enforcer until SIGTERM or SIGINT, then stop it (`running`): what
    a staged live ceremony starts before its shim, as the rehearsal holds `running` around its
    own. A signal only sets a flag, so the enforcer is stopped even when one comes while it
    starts. 0 when stopped on a signal, 1 when the enforcer exited by itself."""
    asked: list[str] = []

    def stop(signum: int, frame: object) -> None:
        asked.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with running(config_path) as daemon:
        proc = daemon.proc
        pid = proc.pid if proc is not None else "?"
        say(f"ods-enforcerd running (pid {pid}) over {daemon.inst.conf}, socket "
            f"{daemon.inst.socket}; Ctrl-C or SIGTERM stops it")
        while not asked and proc is not None and proc.poll() is None:
            time.sleep(0.1)
    if asked:
        say(f"ods-enforcerd stopped ({asked[0]})")
        return 0
    say(f"ods-enforcerd exited by itself ({proc.returncode if proc else '?'}); see "
        f"{daemon.log}")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m staging.ods --config DIR/signer/signer.toml [--stop]`."""
    import argparse

    from signer_shim.config import ConfigError
    p = argparse.ArgumentParser(
        prog="python -m staging.ods",
        description="Run the private ods-enforcerd of a staged live ceremony (keyrite stage "
        "--signer opendnssec) in the foreground until Ctrl-C or SIGTERM, which stop it; "
        "an enforcer a killed run left over the same installation is stopped first. With "
        "--stop, only stop such a leftover. Exit codes: 0 stopped, 1 the enforcer exited by "
        "itself or did not start, 2 bad input.")
    p.add_argument("--config", required=True, type=Path, metavar="SIGNER_TOML",
                   help="the installation's signer.toml (DIR/signer/signer.toml)")
    p.add_argument("--stop", action="store_true",
                   help="stop the enforcer left running over this installation, and exit")
    args = p.parse_args(argv)
    try:
        inst = installation_at(args.config)
    except (ConfigError, OSError, IndexError) as e:
        print(f"{p.prog}: {args.config}: not a private OpenDNSSEC installation's signer.toml: "
              f"{e}", file=sys.stderr)
        return 2
    if args.stop:
        try:
            how = stop_leftover(inst.directory)
        except SignerError as e:
            print(f"{p.prog}: {e}", file=sys.stderr)
            return 1
        print(f"ods-enforcerd over {inst.conf}: {how}", flush=True)
        return 0
    try:
        return serve(args.config, lambda line: print(line, flush=True))
    except (RuntimeError, OSError, SignerError) as e:
        print(f"{p.prog}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
