"""Helpers for the OpenDNSSEC tests: a thin wrapper over staging/ods.py (the private
installation with its enforcer running, shared with `keyrite rehearse --signer opendnssec`), the
tests' EC policies, and moving the enforcer's clock forward until keys die (restart with
`--set-time`, `flush`), which only tests do."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ceremony.durations import MONTH, YEAR
from signer_shim.interface import PolicyKeys
from signer_shim.opendnssec.ods_setup import EnforcerDaemon, OdsInstallation
from staging import ods
from staging.ods import wait_until_idle

__all__ = ["EC_POLICIES", "advance_until", "running_installation", "wait_until_idle"]

EC_POLICIES = (
    PolicyKeys(policy="default", role="KSK", algorithm="ECDSA/P-256", lifetime_seconds=YEAR),
    PolicyKeys(policy="default", role="ZSK", algorithm="ECDSA/P-256", lifetime_seconds=3 * MONTH),
)


@contextmanager
def running_installation(
    directory: Path, zones: Mapping[str, Sequence[str]],
    policies: Sequence[PolicyKeys] = EC_POLICIES,
) -> Iterator[tuple[OdsInstallation, EnforcerDaemon]]:
    """staging.ods.running_installation, with the tests' EC policies by default."""
    with ods.running_installation(directory, zones, policies) as running:
        yield running


def advance_until(daemon: EnforcerDaemon, done: Callable[[], bool], *, steps: int = 15) -> int:
    """Restart the daemon at each next transition time the key list shows (+60 s) and flush,
    until `done()`; returns the number of restarts. The daemon's clock then runs
    from that time, so later commands see the future."""
    for n in range(1, steps + 1):
        if done():
            return n - 1
        keys = daemon.command("key", "list", "--all", "--verbose", "--parsable")
        dates = [line.split(";")[3] for line in keys.splitlines() if line.count(";") == 8]
        if "waiting for ds-seen" in dates:
            daemon.command("key", "ds-seen", "--all")  # the parent has the DS: let KSKs go on
        if "now" in dates or "waiting for ds-seen" in dates:
            daemon.command("flush")
            time.sleep(0.2)
            wait_until_idle(daemon)
            continue
        times = [int(time.mktime(time.strptime(d, "%Y-%m-%d %H:%M:%S")))
                 for d in dates if d[:2] == "20"]
        if not times:
            raise AssertionError(f"no next transition to move to:\n{keys}")
        daemon.stop()
        daemon.set_time = min(times) + 60
        daemon.start()
        daemon.command("flush")
        time.sleep(0.2)
        wait_until_idle(daemon)
    raise AssertionError(f"not done in {steps} steps")
