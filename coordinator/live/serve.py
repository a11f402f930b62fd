"""`keyrite coordinator --config FILE`: open (or resume) a live ceremony and serve its consoles.

The order is the rehearsal's: every input is read and checked before anything is started (the
script, the roster with a console key for each seat that will have a console, the previous record,
both keys); then the journal is created or replayed (the journal is the truth: a coordinator
restarted mid-ceremony continues where it stopped, and an HSM operation started but not finished
is reconciled by the signer before anything is retried); then the bus is bound, `READY=1` is
sent, and the ceremony runs until it ends and a signal stops the daemon. A daemon halted because
its journal could not be written resumes from the journal by itself, on the same bus, once the
disk takes writes again (docs/live.md, "When the journal fails").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ceremony.machine import Machine
from ceremony.machine.replay import replay
from ceremony.previous import as_record
from ceremony.records import FORMAT
from ceremony.roster import load_roster
from ceremony.script.load import load_script
from coordinator.bus import BusServer, CurveKeyPair, Enrolment
from coordinator.ceremony_world import CeremonyWorld
from coordinator.drives import Drives
from coordinator.folder_drives import FolderDrives
from coordinator.journal import Journal
from coordinator.journal.file import discard_unborn
from coordinator.live.config import CoordinatorConfig
from coordinator.live.daemon import TAIL, JournalHalted, Live, iso
from coordinator.live.tail import tail
from coordinator.shim_client import NoSigner, ShimClient
from keyrite.configfile import ConfigError, read_toml
from keyrite.enroll import EnrollError, read_curve_pair
from keyrite.exits import BadInput, Failure
from keyrite.keyfiles import load_private_key
from keyrite.sdnotify import sd_notify

log = logging.getLogger("keyrite.coordinator")


def journal_origin(ceremony_id: str) -> str:
    """The journal's origin, which names the checkpoint key: fixed by the ceremony id, so the
    auditor can be given the verifier key before the journal exists (`stage` prints it)."""
    return f"keyrite.ceremony/{ceremony_id}"


def open_live(cfg: CoordinatorConfig) -> tuple[Live, Journal, Enrolment, CurveKeyPair]:
    """Everything the daemon runs on, checked; the journal created or resumed."""
    script = load_script(cfg.script)
    roster = load_roster(cfg.roster)
    previous = load_previous(cfg, script.ceremony.previous)
    key = load_private_key(cfg.key)
    try:
        public, secret = read_curve_pair(cfg.curve)
    except EnrollError as e:
        raise BadInput(str(e)) from None
    curve = CurveKeyPair(public, secret)
    consoles = {o.seat: o.console_key for o in roster.officers.values() if o.console_key}
    if not consoles:
        raise BadInput(f"{cfg.roster}: no seat has a console_key: no console could connect")
    enrolment = Enrolment.from_pairs(consoles)

    unverified = sorted({st.password for st in script.steps if st.password}
                        - set(cfg.passwords))
    if unverified:
        raise BadInput(f"{cfg.path}: [passwords] has no verifier for {', '.join(unverified)}: "
                       "before the ceremony the KGA records one from the pre-generated password "
                       "(keyrite password verifier), so that a mistyped password is refused "
                       "before it protects a backup")
    machine = Machine(script, roster, previous)
    try:
        journal = _open_journal(cfg, script, roster, previous, key, machine)
    except OSError as e:  # the disk fails (ENOSPC, EIO): nothing can start on it
        raise Failure(f"the journal {cfg.journal} cannot be opened: {e}. Free space or replace "
                      "the disk, then start the coordinator again: it resumes from the "
                      "journal") from None
    signer: Any = NoSigner()  # a script with no signer: no step may reach one
    if script.signers:
        declared = script.signers[0]
        pin = machine.host_key_pin(declared.name)
        if not pin:
            raise BadInput(f"{cfg.script}: signer {declared.name} pins no host_key: a live "
                           "coordinator reaches only a signer whose key the script names")
        signer = ShimClient(cfg.signer_host, cfg.signer_port, client_key=cfg.signer_client_key,
                            host_key_pin=pin)
    world = CeremonyWorld(machine, signer, _drives(cfg, script), cfg.livecd, cfg.journal,
                          lambda: ((e.seq, e.record) for e in journal.entries()), {})
    live = Live(machine, journal, world, passwords=cfg.passwords)
    resumed = journal.size > 1
    live.lines.extend(tail(((e.seq, e.record) for e in journal.entries()), TAIL))
    at = machine.current.n if machine.current else None
    # if the disk still fails, the daemon halts at once: it serves the consoles the reason
    with contextlib.suppress(JournalHalted):
        live.journal.append({"type": "coordinator", "at": time.time(), "step": at,
                             "what": f"resumed at step {at}" if resumed else "started"})
    return live, journal, enrolment, curve


def _open_journal(cfg: CoordinatorConfig, script: Any, roster: Any, previous: dict[str, Any],
                  key: Any, machine: Machine) -> Journal:
    """The journal resumed (replayed into `machine`), or created."""
    if discard_unborn(cfg.journal):
        log.warning("journal: %s was being created when the coordinator stopped; starting it "
                    "again", cfg.journal.name)
    if cfg.journal.exists():
        journal = Journal.open(cfg.journal, key=key)
        if journal.torn:
            log.warning("journal: cut a torn final line (%s)", journal.torn)
        replay(((e.seq, e.record) for e in journal.entries()), machine, script.sha256)
    else:
        origin = journal_origin(script.ceremony.id)
        journal = Journal.create(
            cfg.journal, key=key, name=origin, origin=origin,
            genesis_record={
                "type": "genesis", "at": iso(time.time()), "ceremony": script.ceremony.id,
                "title": script.ceremony.title, "rehearsal": False,
                "script": {"name": cfg.script.name, "sha256": script.sha256,
                           "text": cfg.script.read_text()},
                "roster": roster.to_dict(), "previous": previous,
                "format": FORMAT,  # sign-ins are signed: the fold requires it on replay
            },
        )
    return journal


def load_previous(cfg: CoordinatorConfig, needs: tuple[str, ...]) -> dict[str, Any]:
    """The previous ceremony's record the script checks (`needs`: its `previous` list): the
    TOML typed from the previous ceremony's papers, or read from its journal, verified with
    `previous_key` first (`coordinator.record_command.load_previous_journal`); a journal
    lacking a fact the script needs is bad input naming it."""
    if cfg.previous_journal is None:
        assert cfg.previous is not None  # the config requires one of the two
        try:
            return as_record(read_toml(cfg.previous))
        except ConfigError as e:
            raise BadInput(str(e)) from None
    from coordinator.record_command import lacking, load_previous_journal

    earlier = load_previous_journal(cfg.previous_journal, cfg.previous_key,
                                    what=f"{cfg.path}: coordinator.previous_key")
    lacking(earlier, needs)
    log.info("previous record from %s (%s, verified with key %s): %s", earlier.path,
             earlier.facts.ceremony, ", ".join(earlier.keys),
             ", ".join(f"{k} = {v}" for k, v in earlier.facts.record.items()))
    for held in earlier.facts.custody:
        log.info("previous ceremony's %s", held.describe())
    return earlier.facts.machine_record()  # the facts, and the bags still held


def _drives(cfg: CoordinatorConfig, script: Any) -> Drives:
    """Folder drives (staging, training), or real USB drives: udev sees them, the tool mounts
    them privately under `mounts`, and each copy is read back from the device."""
    if cfg.drives is not None:
        return FolderDrives(cfg.drives)
    from coordinator.usb.usb_drives import UsbDrives
    from coordinator.usb.watch import UsbWatch

    cfg.mounts.mkdir(mode=0o700, parents=True, exist_ok=True)
    return UsbDrives(UsbWatch(), cfg.mounts,
                     {label: d.serial for label, d in script.drives.items()})


async def serve(cfg: CoordinatorConfig, live: Live, enrolment: Enrolment, curve: CurveKeyPair,
                *, ready: Any = None, reopen: Callable[[Live], Live] | None = None) -> None:
    """Bind, announce, run the ceremony; return on SIGTERM or SIGINT.

    A daemon halted because its journal could not be written asks to resume once the disk takes
    writes again (`Live.on_resumable`); `reopen(old)` then closes the old one's signer and
    drives and opens the ceremony from the journal again, as a restart would, and the new one is
    served on the same bus: the consoles see a new view, not a lost connection."""
    current = [live]

    async def handle(officer: str, body: Any) -> dict[str, Any]:
        return await current[0].handle(officer, body)

    bus = BusServer(keys=curve, enrolment=enrolment, handle_command=handle,
                    snapshot=lambda: current[0].snapshot(), router=cfg.commands,
                    pub=cfg.broadcasts)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            router, pub = await nursery.start(bus.run)
            print(f"coordinator: ceremony {live.m.script.ceremony.id}, commands on {router}, "
                  f"broadcasts on {pub}", flush=True)
            sd_notify("READY=1")
            if ready is not None:
                ready(router, pub)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("signal %d: stopping", signum)
                    sd_notify("STOPPING=1")
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            while True:
                await _run_ceremony(current[0], bus, can_resume=reopen is not None)
                assert reopen is not None  # it returns only to resume
                # in this thread: no command is handled by a half-closed ceremony meanwhile
                current[0] = reopen(current[0])


async def _run_ceremony(live: Live, bus: BusServer, *, can_resume: bool) -> None:
    """Serve `live` on `bus` until cancelled, or until, halted on its journal, it can resume."""
    live.bus = bus
    resumable = trio.Event()
    if can_resume:
        live.on_resumable = resumable.set
    async with trio.open_nursery() as nursery:
        start_drives = getattr(live.world.drives, "start", None)
        if start_drives is not None:  # udev: plugged, removed, refused, told at once
            token = trio.lowlevel.current_trio_token()

            def tell(notice: Any) -> None:  # from the watcher thread
                try:
                    token.run_sync_soon(live.drive_notice, notice)
                except trio.RunFinishedError:  # stopping: the journal is closing
                    log.info("drive notice after shutdown, not journaled: %s", notice)

            start_drives(tell)
        nursery.start_soon(live.publish_forever)
        nursery.start_soon(live.tick_forever)
        nursery.start_soon(live.drive)
        live.changed()
        await resumable.wait()
        await trio.sleep(0.2)  # the consoles are shown "resuming" before the new view
        nursery.cancel_scope.cancel()


def close_live(live: Live) -> None:
    """Stop what `open_live` started beside the journal, then close the journal."""
    try:
        close_drives = getattr(live.world.drives, "close", None)
        if close_drives is not None:  # the udev watcher, and any wait for a drive
            close_drives()
        live.world.signer.close()  # type: ignore[attr-defined]
    finally:
        live.journal.journal.close()


def run(config: Path) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = CoordinatorConfig.load(config)
    live, _journal, enrolment, curve = open_live(cfg)
    opened: list[Live | None] = [live]

    def reopen(old: Live) -> Live:
        opened[0] = None
        close_live(old)
        log.info("resuming the ceremony from the journal %s", cfg.journal)
        opened[0] = open_live(cfg)[0]
        return opened[0]

    try:
        trio.run(functools.partial(serve, cfg, live, enrolment, curve, reopen=reopen))
    finally:
        if opened[0] is not None:
            close_live(opened[0])
    return 0
