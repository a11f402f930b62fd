"""Both units under a real systemd: Debian bookworm's systemd 252 booted as PID 1 with
systemd-nspawn (`../shared/tools/systemd-box`, one box for the module), keyrite installed in it as
docs/signer-install.md and systemd/README.md say (Debian's packages, a venv built with pip from
PyPI, the shipped unit files unchanged).

What it shows, for keyrite-shim.service and keyrite-coordinator.service:
- `systemd-analyze verify` prints nothing on a minimal Debian without man(1);
- `systemctl start` returns once the daemon sent READY=1 (Type=notify): the unit is active and
  running, and answers: the shim OpenSSH's `ssh -s ... keyrite-shim` `info`, the coordinator a
  console's snapshot over CURVE with an enrolled key;
- the sandbox bites: every process of the unit has no capability (CapEff, CapPrm, CapBnd, CapAmb
  0), no new privileges, a seccomp filter, and cannot write to /usr or to /etc/keyrite even into
  a directory it owns (read-only mounts), only to its state directory;
- SIGTERM (`systemctl stop`) ends it with exit status 0, no SIGKILL;
- the shim killed with SIGKILL in the middle of a key generation is restarted by systemd
  (Restart=on-failure) and, asked again with the same idempotency key, carries the operation on
  from its journals to exactly the planned keys;
- the coordinator with the usb-drives drop-in runs as root holding CAP_SYS_ADMIN alone.

Skipped, saying why, where the box cannot run (no systemd-nspawn, not root) or boot. The box
shares the host's network: the services listen on free loopback ports of the host, and the
test's clients (ShimClient, BusClient) connect from the host.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import trio
import zmq

from ceremony.durations import MONTH
from ceremony.view import from_dict
from coordinator.bus import BusClient, CurveKeyPair
from coordinator.bus import protocol as p
from coordinator.live.config import ConsoleConfig
from coordinator.live.stage import Staged, free_port, stage
from coordinator.shim_client import ShimClient
from keyrite.enroll import console_keys
from signer_shim.interface import PolicyKeys, SignerError
from signer_shim.keystate import KeyState
from signer_shim.request_journal import check_serial
from tests.shim_helpers import approve, cast_authority
from tests.systemd_box_helpers import (
    ROOT,
    STATE,
    Box,
    BoxUnavailable,
    install_coordinator,
    install_keyrite,
    install_shim,
    mounts,
    status,
    try_write,
    why_no_box,
)

SHIM = "keyrite-shim.service"
COORDINATOR = "keyrite-coordinator.service"
WAIT = 120  # seconds: the bound on every wait for a service or a client

pytestmark = pytest.mark.skipif(why_no_box() is not None, reason=f"no systemd box: "
                                f"{why_no_box()}")


@dataclass
class Installed:
    box: Box
    shim_port: int
    pin: str  # the shim's host key, SHA256:...
    client_key: Path  # on the host: an SSH key in the shim's authorized_keys
    staged: Staged  # the ceremony staged on the host, installed for the coordinator
    timings: dict[str, float]


@pytest.fixture(scope="module")
def box() -> Iterator[Installed]:
    # a unique directory: its name names the box's cgroup, and other test runs may have boxes
    d = Path(tempfile.mkdtemp(prefix="keyrite-box-"))
    b = Box(d)
    timings: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        try:
            b.boot()
        except BoxUnavailable as e:
            pytest.skip(str(e))
        timings["boot"] = time.monotonic() - t0
        install_keyrite(b)
        timings["install"] = time.monotonic() - t0 - timings["boot"]
        client_key = d / "client_key"
        key = asyncssh.generate_private_key("ssh-ed25519", comment="keyrite test client")
        key.write_private_key(client_key)
        client_key.chmod(0o600)
        shim_port, commands, broadcasts = free_port(), free_port(), free_port()
        staged = stage(d / "staged", fixture="small", ports=(shim_port, commands, broadcasts))
        coordinator_ssh = staged.live / "shim" / "coordinator_ssh_key"
        authorized = (key.export_public_key().decode()
                      + asyncssh.read_private_key(coordinator_ssh).export_public_key().decode())
        pin = install_shim(b, port=shim_port, authorized_keys=authorized,
                           authority=cast_authority().to_toml())
        # the key state an operator restores (docs/signer.md): one zone signed with "default"
        b.write("/var/lib/keyrite-shim/keystate.json",
                KeyState(zones={"default": ("example.",)}).to_json().decode(), mode=0o600,
                owner="keyrite-shim:keyrite-shim")
        install_coordinator(b, staged.root, staged.coordinator)
        timings["set-up"] = time.monotonic() - t0
        yield Installed(b, shim_port, pin, client_key, staged, timings)
    finally:
        t1 = time.monotonic()
        b.destroy()
        timings["destroy"] = time.monotonic() - t1
        rounded = {k: round(v, 1) for k, v in timings.items()}
        print(f"systemd box timings (s): {json.dumps(rounded)}")


def start(box: Box, unit: str) -> dict[str, str]:
    """`systemctl start`, which for Type=notify returns once READY=1 came; the unit's state."""
    r = box.run("systemctl", "start", unit, timeout=WAIT, check=False)
    assert r.returncode == 0, f"{unit} did not start: {r.stderr}\n{box.log(unit)}"
    assert box.run("systemctl", "is-active", unit, check=False).stdout.strip() == "active"
    return box.show(unit, "ActiveState", "SubState", "Type", "NotifyAccess", "StatusText",
                    "Result", "MainPID", "NRestarts")


def stop_cleanly(box: Box, unit: str) -> None:
    """SIGTERM (systemctl stop): the main process exits 0 by itself; nothing is SIGKILLed."""
    start(box, unit)
    since = box.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    t0 = time.monotonic()
    box.run("systemctl", "stop", unit, timeout=WAIT)
    took = time.monotonic() - t0
    s = box.show(unit, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus", "TimeoutStopUSec")
    log = box.run("journalctl", "-u", unit, "--since", since, "--no-pager", check=False).stdout
    assert s["ActiveState"] == "inactive" and s["Result"] == "success", (s, log)
    # ExecMainCode 1 is CLD_EXITED: an exit, not death by a signal (SIGTERM also counts as
    # "success" for systemd), with status 0
    assert (s["ExecMainCode"], s["ExecMainStatus"]) == ("1", "0"), (s, log)
    assert "SIGKILL" not in log and "timed out" not in log, log
    assert took < 30, (took, log)  # well inside TimeoutStopSec=30s


def check_sandbox(box: Box, unit: str, user: str, state_dir: str) -> None:
    pid = box.main_pid(unit)
    assert pid > 0
    cgroup = box.show(unit, "ControlGroup")["ControlGroup"]
    pids = [int(x) for x in box.run("cat", f"/sys/fs/cgroup{cgroup}/cgroup.procs").stdout.split()]
    assert pid in pids
    uid = box.run("id", "-u", user).stdout.strip()
    for each in pids:  # the main process and any worker it started
        s = status(box, each)
        caps = {k: s[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        assert set(caps.values()) == {"0" * 16}, (each, s["Name"], caps)
        assert s["NoNewPrivs"] == "1" and s["Seccomp"] == "2", (each, s)
        assert s["Uid"].split() == [uid] * 4, (each, s["Uid"])
    seen = mounts(box, pid)

    def mount_of(path: str) -> set[str]:
        point = max((m for m in seen if path == m or path.startswith(m.rstrip("/") + "/")),
                    key=len)
        return seen[point]

    for path in ("/usr", "/etc", "/etc/keyrite", "/etc/keyrite/ceremony"):
        assert "ro" in mount_of(path), (path, mount_of(path))
    assert "rw" in mount_of(state_dir)
    # the permission bits would allow these writes; the read-only mounts refuse them
    for parent in ("/usr/local", "/etc/keyrite"):
        assert "Read-only file system" in try_write(box, pid, user, parent), parent
    assert try_write(box, pid, user, state_dir) == "written"


# --- both units ----------------------------------------------------------------------------------
def test_verify_prints_nothing_on_a_minimal_debian(box: Installed) -> None:
    b = box.box
    assert b.run("sh", "-c", "command -v man", check=False).returncode != 0, "man is installed"
    for unit in (SHIM, COORDINATOR):
        r = b.run("systemd-analyze", "verify", f"/etc/systemd/system/{unit}", check=False)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), unit
    # what the units had before: a man: URL fails here, which is why they have none
    text = (ROOT / "systemd" / SHIM).read_text().replace(
        "\nDocumentation=", "\nDocumentation=man:systemd.exec(5)\nDocumentation=", 1)
    b.write("/root/with-man/keyrite-shim.service", text)
    r = b.run("systemd-analyze", "verify", "/root/with-man/keyrite-shim.service", check=False)
    assert r.returncode == 1 and "Command 'man systemd.exec(5)' failed" in r.stderr, r


# --- keyrite-shim.service ------------------------------------------------------------------------
def test_the_shim_is_ready_when_started_and_answers_openssh(box: Installed) -> None:
    b = box.box
    s = start(b, SHIM)
    assert (s["ActiveState"], s["SubState"], s["Type"], s["NotifyAccess"]) == (
        "active", "running", "notify", "main"), s
    # docs/signer-install.md section 5, from the signer host itself
    pub = b.read("/var/lib/keyrite-shim/ssh_host_ed25519_key.pub").split()
    b.write("/root/keyrite-known-hosts", f"[127.0.0.1]:{box.shim_port} {pub[0]} {pub[1]}\n")
    client = box.client_key.read_text()
    b.write("/root/.ssh/keyrite-coordinator", client, mode=0o600)
    r = b.run("ssh", "-s", "-p", str(box.shim_port), "-i", "/root/.ssh/keyrite-coordinator",
              "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
              "-o", "UserKnownHostsFile=/root/keyrite-known-hosts", "keyrite@127.0.0.1",
              "keyrite-shim", timeout=WAIT,
              input='{"v": 1, "id": "r1", "key": "k1", "method": "info", "params": {}}\n')
    reply = json.loads(r.stdout)
    assert reply["id"] == "r1" and reply["result"]["host_key"] == box.pin, reply
    assert (reply["result"]["name"], reply["result"]["backend"]) == ("standby", "pkcs11")


def test_the_shim_sandbox_bites(box: Installed) -> None:
    start(box.box, SHIM)
    check_sandbox(box.box, SHIM, "keyrite-shim", "/var/lib/keyrite-shim")


def _shim(box: Installed) -> ShimClient:
    return ShimClient("127.0.0.1", box.shim_port, client_key=box.client_key,
                      host_key_pin=box.pin, timeout=WAIT)


def test_a_sigkilled_shim_is_restarted_and_carries_its_operation_on(box: Installed) -> None:
    """docs/signer.md, "Disconnects, SIGTERM, SIGKILL": SIGKILL during generate, then the same
    request again: the journals carry it on to exactly the planned keys, none twice."""
    b = box.box
    start(b, SHIM)
    restarts = int(b.show(SHIM, "NRestarts")["NRestarts"])
    keys = [PolicyKeys("default", "ZSK", "RSA/2048", MONTH)]  # RSA: slow enough to kill
    with _shim(box) as c:
        before = {k.locator for k in c.inventory().keys}
        op = c.plan_generate(keys, "P10M")
        planned = [loc for batch in op["batches"] for loc in batch["locators"]]
        assert len(planned) == 10
        approvals = approve(op, "sa1")
        some = threading.Event()

        def run() -> None:
            with contextlib.suppress(SignerError):  # the link dies with the shim
                c.execute(op, approvals, lambda done, total, what: some.set() if done >= 2
                          else None)

        t = threading.Thread(target=run)
        t.start()
        assert some.wait(WAIT), f"no progress from generate\n{b.log(SHIM)}"
        killed = b.main_pid(SHIM)
        b.run("systemctl", "kill", "--signal=KILL", SHIM)
        t.join(WAIT)
        assert not t.is_alive()
    # systemd restarts it (Restart=on-failure, RestartSec=5s) and it is ready again
    deadline = time.monotonic() + WAIT
    while True:
        s = b.show(SHIM, "ActiveState", "SubState", "MainPID", "NRestarts")
        if s["ActiveState"] == "active" and s["MainPID"] not in ("0", str(killed)):
            break
        assert time.monotonic() < deadline, f"not restarted: {s}\n{b.log(SHIM)}"
        time.sleep(0.5)
    assert int(s["NRestarts"]) == restarts + 1, s
    log = b.log(SHIM, 200)
    assert "code=killed, status=9/KILL" in log and "Scheduled restart job" in log, log
    with _shim(box) as c:
        result = c.execute(op, approvals)  # the same request, the same key: carried on
        after = {k.locator for k in c.inventory().keys}
    assert sorted(result["generated"]) == sorted(planned)
    assert after - before == set(planned) and before <= after
    entries = [json.loads(line) for line in
               b.read("/var/lib/keyrite-shim/requests.jsonl").splitlines()]
    events = [e["event"] for e in entries]
    assert events.count("received") == 1 and events.count("finished") == 1, events
    assert events.count("started") == 2 and "boot" in events[events.index("started"):], events
    assert check_serial(entries) == []
    ops = b.read("/var/lib/keyrite-shim/operations.jsonl")
    assert ops.strip(), "the signer's operation journal is empty"


def test_sigterm_stops_the_shim_cleanly(box: Installed) -> None:
    stop_cleanly(box.box, SHIM)


# --- keyrite-coordinator.service -----------------------------------------------------------------
def _snapshot(box: Installed) -> p.Reset:
    """What a console gets first: the whole view, with the KGA's enrolled console key."""
    console = ConsoleConfig.load(box.staged.consoles["KGA"])
    _, public, secret = console_keys(console.enrolment)
    ctx = zmq.Context()

    async def main() -> p.Reset | p.Apply:
        client = BusClient(router=console.commands, pub=console.broadcasts,
                           server_public=console.coordinator_key,
                           keys=CurveKeyPair(public, secret), ctx=ctx)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                first = await client.updates.receive()
                nursery.cancel_scope.cancel()
        return first

    try:
        first = trio.run(main)
    finally:
        ctx.destroy(linger=0)
    assert isinstance(first, p.Reset), first
    return first


def test_the_coordinator_is_ready_when_started_and_serves_a_console(box: Installed) -> None:
    b = box.box
    s = start(b, COORDINATOR)
    assert (s["ActiveState"], s["SubState"], s["Type"], s["NotifyAccess"]) == (
        "active", "running", "notify", "main"), s
    view = from_dict(_snapshot(box).state)
    assert view.status == "running" and view.step is not None, view.status
    script = b.read("/etc/keyrite/ceremony.toml")
    assert f'"{view.ceremony_id}"' in script
    assert b.read(f"{STATE}/journal.jsonl").strip(), "no journal in the state directory"


def test_the_coordinator_sandbox_bites(box: Installed) -> None:
    start(box.box, COORDINATOR)
    check_sandbox(box.box, COORDINATOR, "keyrite-coordinator", STATE)


def test_sigterm_stops_the_coordinator_cleanly(box: Installed) -> None:
    stop_cleanly(box.box, COORDINATOR)


def test_with_the_usb_drop_in_the_coordinator_holds_cap_sys_admin_alone(box: Installed) -> None:
    """systemd/keyrite-coordinator.service.d/usb-drives.conf, installed as its comment says,
    after chowning the coordinator's files to root (systemd/README.md); the folder drives stay,
    so this shows the privileges, not the drives."""
    b = box.box
    b.run("systemctl", "stop", COORDINATOR, timeout=WAIT)
    b.write("/etc/systemd/system/keyrite-coordinator.service.d/usb-drives.conf",
            (ROOT / "systemd" / "keyrite-coordinator.service.d" / "usb-drives.conf").read_text())
    b.sh("chown -R root:root /etc/keyrite/ceremony /etc/keyrite/ceremony.toml "
         f"/etc/keyrite/coordinator.toml {STATE}\nsystemctl daemon-reload")
    try:
        start(b, COORDINATOR)
        pid = b.main_pid(COORDINATOR)
        s = status(b, pid)
        cap_sys_admin = f"{1 << 21:016x}"
        assert (s["CapEff"], s["CapPrm"], s["CapBnd"]) == (cap_sys_admin,) * 3, s
        assert s["CapAmb"] == "0" * 16 and s["NoNewPrivs"] == "1", s
        assert s["Uid"].split() == ["0"] * 4, s["Uid"]
        assert "ro" in mounts(b, pid)["/etc/keyrite"]
        _snapshot(box)  # still serves the consoles
        stop_cleanly(b, COORDINATOR)
    finally:
        b.run("rm", "-rf", "/etc/systemd/system/keyrite-coordinator.service.d")
        b.run("systemctl", "daemon-reload")
