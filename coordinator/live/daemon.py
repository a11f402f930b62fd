"""The live coordinator: the machine, the journal, the console bus and the signer link, on trio.

One trio thread owns the machine and the journal. These change them:
- a console's command (`handle`): attributed to the seat whose CURVE key carried it, translated
  (`translate.translate`) into a machine event, judged by the machine, journaled (accepted or
  refused), then shown; a typed password is first checked against its verifier;
- the coordinator's own work for a step (`drive`): the executor's table (`coordinator.executor`)
  run in a worker thread (the signer link and the drives block), its outcome applied back here.
  HSM progress reaches every console as the view's progress bar;
- time (`tick`): approvals lapsing and consoles dropping, as the machine judges them
  (`Machine.lapses`, `Machine.presence_changes`), are journaled and shown;
- with real flash drives, udev (`drive_notice`): a drive plugged in, pulled out or refused is
  journaled and shown the moment the watcher thread reports it, whatever step is current.

After every change the view (`ceremony.view`, built by `Machine.view`) is broadcast as what
changed since the last broadcast (`coordinator.bus.view_delta`); a snapshot is the whole view as
last broadcast, so a console that missed anything, or restarted, or outlived a coordinator
restart, shows exactly what the others show. The durability rule is the runner's:
journal first, then act, then show.

When the journal cannot be written (disk full, I/O error: `JournalWriteFailed`), the daemon
halts its ceremony work at once: the machine has judged an event the journal does not hold, so
nothing more may be acted on. Every console's view says why (status `halted`, the reason in
`exception`), every command is refused with that reason, and the daemon keeps serving the view.
It recovers the journal file as soon as the disk lets it (the failed descriptor closed, never
fsync'd again; what the failed append left cut off); once a probe write beside the journal is
fsync'd too, the fault has cleared and it asks to resume (`on_resumable`): `serve` reopens the
ceremony from the journal, as a restart would, with every acknowledged entry and the same bus
(docs/live.md, "When the journal fails").
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from ceremony import records
from ceremony.machine import Machine, Refused
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.view_of import Parts
from ceremony.view import (
    Cosigning,
    ExceptionView,
    Extras,
    JournalLine,
    LooseDrive,
    Progress,
    WireForm,
    absent_actor,
)
from coordinator import executor
from coordinator.bus import BusServer, CommandRefused, view_delta
from coordinator.ceremony_world import CeremonyWorld
from coordinator.journal.file import JournalError
from coordinator.journal.merkle import consistency_proof, leaf_hash
from coordinator.live.tail import describe
from coordinator.live.translate import Invalid, Own, cosign_params, judge_cosign, translate
from coordinator.runner import Runner
from keyrite.budget import RefusalBudget
from keyrite.diskio import disk_takes_a_write
from keyrite.passwords import Verifier
from keyrite.plainjson import safe_text

if TYPE_CHECKING:  # real drives only: pyudev is not needed with folder drives
    from coordinator.usb.usb_drives import DriveNotice

log = logging.getLogger("keyrite.coordinator")

PRESENCE_TIMEOUT = 3.5  # seconds without a console's presence before it counts as dropped
TICK = 0.5
TAIL = 48  # journal lines in the view: a projector at 200x50 fills its panel
JOURNAL_PAGE = 500  # lines per `journal` command answer (the auditor's copy)
COSIGN_REFUSALS = 10  # the latest refusals to cosign the view carries (every one is journaled)
REFUSALS = 20  # refused commands one console may have journaled in REFUSAL_WINDOW seconds
REFUSAL_WINDOW = 10.0
RECOVER_EVERY = 5.0  # seconds between tries to recover a journal whose disk failed


class JournalHalted(Exception):
    """The journal could not be written: the daemon has halted its ceremony work. The message
    is what every console is told."""


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class _Tail:
    """The journal, remembering one line of text per record for the consoles' panel, and every
    checkpoint it signs (tree size -> note) for the consoles that cosign them. A write that
    fails is handed to `failed` (the daemon halts), which gives the exception raised instead."""

    def __init__(self, journal: Any, lines: deque[JournalLine],
                 failed: Callable[[dict[str, Any], Exception], Exception]) -> None:
        self.journal = journal
        self.lines = lines
        self.notes: dict[int, str] = {}
        self.failed = failed

    def append(self, record: dict[str, Any]) -> Any:
        try:
            entry = self.journal.append(record)
        except (JournalError, OSError) as e:  # not ValueError: a record that cannot be written
            raise self.failed(record, e) from e
        self.lines.append(JournalLine(entry.seq, float(record.get("at") or time.time()),
                                      describe(record)))
        return entry

    def checkpoint(self, at: str) -> str:
        try:
            note = self.journal.checkpoint(at)
        except (JournalError, OSError) as e:
            raise self.failed({"type": "checkpoint", "at": at}, e) from e
        self.notes[self.journal.size - 1] = note  # a checkpoint at seq n covers n entries
        self.lines.append(JournalLine(self.journal.size - 1, time.time(), "checkpoint signed"))
        return note


class _Log:
    """The runner's display: the daemon's log (consoles get the view instead)."""

    def step(self, machine: Machine) -> None:
        if machine.current:
            log.info("step %d: %s", machine.current.n, machine.current.text)

    def notice(self, machine: Machine, notice: d.Decision) -> None:
        log.info("%s", notice)

    def progress(self, done: int, total: int, what: str) -> None:
        pass

    def approval(self, machine: Machine, want: d.RequestApproval) -> None:
        pass


class Live:
    """Everything the daemon holds beyond the machine, and the three ways it changes."""

    def __init__(self, machine: Machine, journal: Any, world: CeremonyWorld, *,
                 clock: Callable[[], float] = time.time,
                 passwords: Mapping[str, Verifier] | None = None) -> None:
        self.m = machine
        # verifiers recorded before the ceremony: a typed password must match one to be taken
        self.passwords = dict(passwords or {})
        self.world = world
        self.clock = clock
        self.lines: deque[JournalLine] = deque(maxlen=TAIL)
        self.journal = _Tail(journal, self.lines, self._halt)
        #: why the daemon halted (the journal could not be written), shown on every console
        self.halted: str | None = None
        self.recovered = False  # the journal file is sound again (a restart resumes from it)
        self._recover_at = 0.0
        #: called once the fault has cleared (the file recovered and a probe write fsync'd):
        #: the server then resumes the ceremony from the journal (`serve.serve`)
        self.on_resumable: Callable[[], None] | None = None
        self.resumable = False
        self.runner = Runner(machine, self.journal, world, _Log(), iso)
        # person -> last presence; whoever the journal last saw connected has a timeout's grace
        # to reconnect to a restarted coordinator before they are recorded as gone
        self.seen: dict[str, float] = {
            p: clock() for p in set(machine.signed_in.values()) if machine.present(p)}
        self.connected: frozenset[str] = frozenset()  # seats
        self.progress: Progress | None = None
        self.checkpoint: tuple[int, str] | None = None  # (step, note) for a signoff step
        self.budget = RefusalBudget(REFUSALS, REFUSAL_WINDOW)  # refused commands per console
        # the record consoles cosign: refusals to cosign shown on every screen, who cosigned
        # which checkpoint (seat, size), and the leaves' hashes consistency proofs are made of
        self.cosign_refusals: deque[JournalLine] = deque(maxlen=COSIGN_REFUSALS)
        self.cosigned: set[tuple[str, int]] = set()
        self.disputed: set[tuple[str, int]] = set()  # (seat, size) refused by that console
        self._leaves: list[bytes] = []
        self._leaves_at = 0  # byte offset in the journal file after the last leaf read
        self._read_record(journal)
        self.bus: BusServer | None = None
        self.published: dict[str, Any] | None = None  # the view as last broadcast
        self._wire = WireForm()  # each view's wire form reuses what the last one had unchanged
        self._parts = Parts()  # and the view's machine-only parts, while the state is the same
        self._token: trio.lowlevel.TrioToken | None = None
        self._dirty = trio.Event()
        self._wake = trio.Event()

    # --- what everyone sees --------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        view = self._view_object(self.clock())
        if self.halted is not None:
            cur = self.m.current
            view = dataclasses.replace(view, status="halted", exception=ExceptionView(
                step=cur.n if cur else 0, kind="journal", reason=self._halt_reason(),
                observed=None, expected=None, acceptable=False))
        return self._wire.to_dict(view)

    # --- when the journal cannot be written ----------------------------------------------------
    def _halt(self, record: dict[str, Any], error: Exception) -> JournalHalted:
        """An append failed: halt the ceremony work (the machine judged an event the journal
        does not hold, so nothing more may follow it), say why on every screen, and settle
        the journal file if the disk lets it. Returns the exception the caller raises."""
        if self.halted is None:
            code = getattr(error, "errno", None)
            name = f" ({errno.errorcode[code]})" if code in errno.errorcode else ""
            try:
                what = describe(record)
            except Exception:  # noqa: BLE001 - a reading aid only
                what = str(record.get("type"))
            self.halted = (f"THE JOURNAL CANNOT BE WRITTEN{name}: {error}. The coordinator has "
                           f"halted: this was not recorded ({what}), and nothing more is done")
            log.error("halted: %s", self.halted)
            self._recover()
            self.changed()
        return JournalHalted(self._halt_reason())

    def _halt_reason(self) -> str:
        assert self.halted is not None
        if self.resumable:
            return (f"{self.halted}. The disk writes again: resuming from the journal (nothing "
                    "acknowledged is lost); repeat what was not recorded")
        if self.recovered:
            return (f"{self.halted}. The journal is sound again; the coordinator resumes from "
                    "it once the disk takes a write (nothing acknowledged is lost): free space "
                    "or replace the disk, or restart the coordinator")
        return (f"{self.halted}. Free space or replace the disk: the coordinator resumes from "
                "the journal once the disk takes a write, or restart the coordinator (nothing "
                "acknowledged is lost)")

    def _recover(self) -> None:
        """Settle the journal file (`Journal.recover`: a fresh descriptor, the acknowledged
        entries checked, the failed append's remains cut), if the disk lets it now."""
        recover = getattr(self.journal.journal, "recover", None)
        if self.recovered or recover is None:
            return
        self._recover_at = self.clock()
        try:
            recover()
        except (JournalError, OSError) as e:
            log.warning("the journal is not recovered yet: %s", e)
            return
        self.recovered = True
        log.info("the journal is recovered; resuming once the disk takes a write")
        self.changed()

    def _probe(self) -> None:
        """Once the file is recovered: does the disk take a write now? A probe file beside the
        journal (through `keyrite.diskio`, as the journal's own writes) written, fsync'd and
        removed; if so the fault has cleared, and the server is asked to resume."""
        path = getattr(self.journal.journal, "path", None)
        if self.resumable or path is None:
            return
        self._recover_at = self.clock()
        if not disk_takes_a_write(path.with_name(path.name + ".probe")):
            return
        self.resumable = True
        log.info("the disk takes writes again: resuming from the journal")
        self.changed()
        if self.on_resumable is not None:
            self.on_resumable()

    def _view_object(self, now: float, wants: tuple[d.Decision, ...] | None = None) -> Any:
        """The view at `now`; `wants` is the machine's at `now`, when the caller has it."""
        if wants is None:
            wants = self.m.wants(now=now)
        return self.m.view(Extras(
            now=now, seq=self.bus.seq if self.bus else 0, connected=self.connected,
            progress=self.progress, journal=tuple(self.lines),
            drives_seen=frozenset(self._plugged()), loose_drives=self._loose(),
            checkpoint=self.checkpoint[1] if self.checkpoint else None,
            secrets_needed=self._secrets_needed(now, wants),
            share_key=self._share_key(now, wants),
            shares_brought=self._shares_brought(now, wants),
            sealed_shares=self._sealed_shares(),
            cosigning=Cosigning(max(self.journal.notes, default=None),
                                tuple(self.cosign_refusals))), wants, self._parts)

    def _plugged(self) -> set[str]:
        """Drives in the laptop now: as udev says, for real drives; else by the steps done
        (inserted and not yet ejected)."""
        seen = getattr(self.world.drives, "seen", None)
        if seen is not None:
            return set(seen())
        plugged: set[str] = set()
        for n in self.m.completed:
            st = self.m.script.step(n)
            if st.action == "drive.insert" and st.drive:
                plugged.add(st.drive)
            elif st.action == "drive.eject" and st.drive:
                plugged.discard(st.drive)
        return plugged

    def _loose(self) -> tuple[LooseDrive, ...]:
        """Real drives in the port that no label holds (none with folder drives)."""
        present = getattr(self.world.drives, "present", None)
        if present is None:
            return ()
        return tuple(LooseDrive(d.serial, d.vendor, d.model)
                     for d, label in present() if label is None)

    def _secrets_needed(self, now: float, wants: tuple[d.Decision, ...]) -> tuple[str, ...]:
        """Passwords the machine's next piece of work (`wants`, the machine's at `now`) needs
        that nobody has typed since this coordinator started (a password is kept in memory
        only, for one piece of work)."""
        ask = self.m.password_asked(now, wants)
        return tuple(n for n in ask.names if n not in self.world.secrets) if ask else ()

    def _share_key(self, now: float, wants: tuple[d.Decision, ...]) -> str | None:
        """The signer's share key while KEK shares are asked for (the restore's plan names the
        key its approvers signed for)."""
        ask = self.m.share_asked(now, wants)
        if ask is None:
            return None
        want = wants[0]
        if isinstance(want, d.Execute) and want.operation.get("share_key"):
            return str(want.operation["share_key"])
        try:
            return self.world.share_key()
        except Exception as e:  # noqa: BLE001 - the signer link: shown, and asked again
            log.warning("the signer's share key could not be read: %s", e)
            return None

    def _shares_brought(self, now: float, wants: tuple[d.Decision, ...]) -> tuple[str, ...]:
        ask = self.m.share_asked(now, wants)
        return tuple(sorted(self.world.share_boxes.get(ask.step, {}))) if ask else ()

    def _sealed_shares(self) -> tuple[tuple[str, str], ...]:
        cur = self.m.current
        if cur is None or cur.action != "kek.share":
            return ()
        return tuple(sorted(self.world.sealed_shares().items()))

    def _shares_short(self, now: float, wants: tuple[d.Decision, ...]) -> bool:
        ask = self.m.share_asked(now, wants)
        return ask is not None and len(self.world.share_boxes.get(ask.step, {})) < ask.threshold

    def changed(self) -> None:
        """Something everyone sees changed: broadcast soon; the driver looks again."""
        self._dirty.set()
        self._wake.set()

    def drive_notice(self, notice: DriveNotice) -> None:
        """A USB drive plugged in, removed or refused (`coordinator.usb.usb_drives.DriveNotice`):
        journaled and shown at once, whatever step is running."""
        cur = self.m.current
        try:
            self.journal.append({"type": "drive", "at": self.clock(),
                                 "step": cur.n if cur else None, **notice.to_record()})
        except JournalHalted:
            log.error("drive notice not journaled (halted): %s", notice)
        self.changed()

    # --- commands ------------------------------------------------------------------------------
    async def handle(self, officer: str, body: Any) -> dict[str, Any]:
        """A console's command (`body`: whatever JSON the bus's edge let through, from any
        enrolled console, witnesses' included). `translate` checks every field it passes on;
        a refusal is journaled with safe text only (`_refused`) and the bus makes every reason
        it sends back safe to encode."""
        now = self.clock()
        if self.halted is not None and not (isinstance(body, dict) and body.get("type") in (
                "presence", "journal", "checkpoint")):
            raise CommandRefused(self._halt_reason())
        if self.budget.exhausted(officer, now):
            self.budget.refuse_unread(officer)
            raise CommandRefused(f"more than {self.budget.limit} refused commands from this "
                                 f"console in {self.budget.window:g} s: wait, then try again")
        try:
            return await self._handle(officer, body, now)
        except JournalHalted as e:
            raise CommandRefused(str(e)) from None
        except CommandRefused:
            self.budget.spend(officer, now)
            raise

    async def _handle(self, officer: str, body: Any, now: float) -> dict[str, Any]:
        try:
            act = translate(self.m.roster, self.m.script.ceremony.administrator, officer, body,
                            now)
        except Invalid as e:
            self._refused(officer, body, str(e), now)
            raise CommandRefused(str(e)) from None
        if isinstance(act, Own):
            return self._own(act, now)
        stale = self._stale(body)
        if stale:
            raise CommandRefused(stale)
        current = self.m.current
        answer = self._apply(act)
        if isinstance(act, ev.Acknowledge) and current is not None and \
                current.action == "kek.share":  # written down: forgotten here
            self.world.share_handed(act.seat)
        if isinstance(act, ev.SignOff) and isinstance(body.get("cosign"), dict):
            self._signoff_cosign(act.seat, body["cosign"], now)
        return answer

    def _signoff_cosign(self, seat: str, body: dict[str, Any], now: float) -> None:
        """The cosignature a console sent with its sign-off, journaled right after it (so the
        journal copied next holds both), judged as any cosignature is; a bad one is journaled
        as refused, and the sign-off stands."""
        try:
            params = cosign_params(body)
            if "cosignature" not in params:
                raise Invalid("a sign-off's 'cosign' carries a cosignature")
            self._cosign(Own("cosign", seat, params), now)
        except Invalid as e:
            self._refused(seat, {"type": "cosign"}, f"signoff: {e}", now)
        except CommandRefused as e:
            log.warning("%s's cosignature with the sign-off: %s", seat, e)

    def _apply(self, event: ev.Event) -> dict[str, Any]:
        """The machine judges `event`; the runner journals it, accepted or refused."""
        try:
            self.runner.apply(event)
        except Refused as r:
            self.changed()  # the refusal is in the journal tail
            raise CommandRefused(r.reason) from None
        self.changed()
        return {"accepted": True}

    def _stale(self, body: dict[str, Any]) -> str | None:
        """A keystroke meant for a step that has since completed must not complete the next."""
        if body.get("type") in ("acknowledge", "record", "signoff"):
            cur = self.m.current
            step = body.get("step")
            if cur is not None and step is not None and step != cur.n:
                meant = step if isinstance(step, int) and not isinstance(step, bool) else "?"
                return f"step {meant} is no longer current (step {cur.n} is)"
        return None

    def _refused(self, officer: str, body: Any, reason: str, now: float) -> None:
        """Journal a refused command: the console, the command's type and the reason, each
        cut short (64 and 1,000 characters) and made UTF-8 (a lone surrogate is written as its
        escape), so a journal can always write them, whatever the console sent."""
        kind = body.get("type") if isinstance(body, dict) else None
        if kind in ("presence", "journal", "checkpoint"):
            return
        cur = self.m.current
        self._journal_refused(records.Refused(
            at=now, step=cur.n if cur else None,
            console=safe_text(officer, 63),  # with its ellipsis: 64
            command=safe_text(str(kind), 63),
            reason=safe_text(reason, 999)))

    def _journal_refused(self, refused: records.Refused) -> None:
        record = refused.to_dict()
        entry = self.journal.append(record)
        if refused.command == "cosign":  # every screen shows it
            self.cosign_refusals.append(JournalLine(entry.seq, refused.at, describe(record)))
        self.changed()

    def _own(self, act: Own, now: float) -> dict[str, Any]:
        if act.kind == "presence":
            self.seen[self.m.roster.officers[act.seat].person] = now
            self._presence(now)
            return {"seq": self.bus.seq if self.bus else 0}
        if act.kind == "journal":
            return self._journal_page(act.params.get("from", 0))
        if act.kind == "checkpoint":
            return self._checkpoint_page(act.params["from"])
        if act.kind == "cosign":
            return self._cosign(act, now)
        if act.kind == "share":
            return self._share(act, now)
        return self._secret(act, now)

    def _share(self, act: Own, now: float) -> dict[str, Any]:
        """A KEK share an officer brought for a wrap backup's restore or drill, sealed on their
        console to the signer's share key: this coordinator cannot open it, and keeps it in
        memory for that one piece of work. The machine judges who brought it (`ShareGiven`);
        the signer whether it opens."""
        ask = self.m.share_asked(now)
        held = self.world.share_boxes.get(ask.step, {}) if ask is not None else {}
        if ask is not None and len(held) >= ask.threshold and act.seat not in held:
            raise CommandRefused(f"the {ask.threshold} KEK shares needed are already brought")
        answer = self._apply(ev.ShareGiven(at=now, seat=act.seat, step=act.params["step"],
                                           purpose=act.params["purpose"]))
        assert ask is not None  # the machine refuses a share nobody asked for
        self.world.share_boxes.setdefault(ask.step, {})[act.seat] = act.params["box"]
        return answer

    def _secret(self, act: Own, now: float) -> dict[str, Any]:
        """A password for the work about to run, checked here against the verifier the KGA
        recorded before the ceremony; the machine then judges who typed it and for what
        (`PasswordEntered`). Taken, it is kept in memory for that one piece of work only: never
        journaled, logged or broadcast."""
        name, value = act.params["name"], act.params["value"]
        if name in self.world.secrets:
            raise CommandRefused(f"the {name} password is already entered")
        verifier = self.passwords.get(name)
        ask = self.m.password_asked(now)
        if verifier is None and ask is not None and name in ask.names:
            raise CommandRefused(f"no verifier of the {name} password was recorded before the "
                                 "ceremony ([passwords] in the coordinator's config)")
        answer = self._apply(ev.PasswordEntered(
            at=now, seat=act.seat, step=act.params["step"], name=name,
            purpose=ask.purpose if ask else "backup",
            verified=verifier is not None and verifier.matches(value)))
        self.world.secrets[name] = value
        return answer

    def _journal_page(self, start: Any) -> dict[str, Any]:
        if not isinstance(start, int) or start < 0:
            raise CommandRefused("journal: 'from' must be a line number (0 or more)")
        size = self.journal.journal.size
        lines: list[str] = []
        with open(self.journal.journal.path, "rb") as f:
            for i, raw in enumerate(f):
                if i >= size or len(lines) >= JOURNAL_PAGE:
                    break
                if i >= start:
                    lines.append(raw.rstrip(b"\n").decode())
        return {"from": start, "lines": lines, "size": size}

    # --- the record the consoles cosign -------------------------------------------------------
    def _read_record(self, journal: Any) -> None:
        """What a restarted coordinator knows of the record from its journal: every checkpoint,
        every cosignature and every refusal to cosign (shown again on every screen)."""
        entries = getattr(journal, "entries", None)
        if entries is None:
            return
        for e in entries():
            r = e.record
            t = r.get("type")
            if t == "checkpoint":
                self.journal.notes[e.seq] = r["note"]
            elif t == "cosignature":
                self.cosigned.add((str(r.get("seat")), int(r.get("size", -1))))
            elif t == "refused" and r.get("command") == "cosign":
                self.cosign_refusals.append(JournalLine(e.seq, float(r.get("at") or 0.0),
                                                        describe(r)))

    def _leaf_hashes(self, size: int) -> list[bytes]:
        """The RFC 6962 leaf hashes of the journal's first `size` lines, read from the file once
        each (it only grows)."""
        if len(self._leaves) < size:
            with open(self.journal.journal.path, "rb") as f:
                f.seek(self._leaves_at)
                for raw in f:
                    if len(self._leaves) >= size or not raw.endswith(b"\n"):
                        break
                    self._leaves.append(leaf_hash(raw[:-1]))
                    self._leaves_at += len(raw)
        return self._leaves[:size]

    def _checkpoint_page(self, start: int) -> dict[str, Any]:
        """The latest checkpoint and the RFC 6962 consistency proof (base64 hashes) that it
        extends the tree of size `start`, the last a console accepted; `proof` is null when
        there is none to give (`start` beyond the checkpoint: the console sees it shrink)."""
        if not self.journal.notes:
            return {"note": None, "size": 0, "proof": []}
        size = max(self.journal.notes)
        proof = None
        if start <= size:
            hashes = consistency_proof(self._leaf_hashes(size), start, size)
            proof = [base64.b64encode(h).decode() for h in hashes]
        return {"note": self.journal.notes[size], "size": size, "proof": proof}

    def _cosign(self, act: Own, now: float) -> dict[str, Any]:
        """A console's cosignature of a checkpoint, or its refusal to cosign one: journaled once
        judged (`translate.judge_cosign`: verified against the seat's enrolled key over the
        journal's own checkpoint); a bad cosignature is refused and journaled as refused, and
        every screen shows it, as it shows a console's refusal."""
        seat, size = act.seat, act.params["size"]
        cur = self.m.current
        if "refusal" in act.params:
            if size not in self.journal.notes:
                raise CommandRefused(f"cosign: the journal has no checkpoint of size {size} "
                                     "to refuse")
            if (seat, size) in self.disputed:
                return {"journaled": True, "already": True}
            self.disputed.add((seat, size))
        else:
            if seat not in self.m.signed_in:
                raise self._cosign_refused(records.Refused(
                    at=now, step=cur.n if cur else None, console=seat, command="cosign",
                    reason=f"sent a cosignature of checkpoint {size} that was refused: {seat} "
                    "is not signed in"))
            if (seat, size) in self.cosigned:
                return {"accepted": True, "already": True}
        record = judge_cosign(self.m.roster, self.journal.notes, seat, act.params, now,
                              cur.n if cur else None)
        if isinstance(record, records.Refused):
            if "cosignature" in act.params:
                raise self._cosign_refused(record)
            self._journal_refused(record)
            return {"journaled": True}
        self.journal.append(record.to_dict())
        self.cosigned.add((seat, size))
        self.changed()
        return {"accepted": True}

    def _cosign_refused(self, refused: records.Refused) -> CommandRefused:
        self._journal_refused(refused)
        return CommandRefused(refused.reason)

    # --- time ----------------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.clock()
        if self.halted is not None:
            self._presence(now)  # who is there is still shown; nothing is journaled
            if now - self._recover_at >= RECOVER_EVERY:
                if not self.recovered:
                    self._recover()
                if self.recovered:
                    self._probe()
            return
        with contextlib.suppress(JournalHalted):  # halted: every screen says why
            self._ticked(now)

    def _ticked(self, now: float) -> None:
        self._presence(now)
        self._expiries(now)
        for console, n in self.budget.closed(now).items():
            cur = self.m.current
            self.journal.append(records.Refused(
                at=now, step=cur.n if cur else None, console=console, command="*",
                reason=f"{n} more commands from this console refused unread "
                f"(over {self.budget.limit} refusals in {self.budget.window:g} s)").to_dict())
            self.changed()

    def _presence(self, now: float) -> None:
        """Whose console is live (a presence within the timeout): shown at once; a change for a
        signed-in person is the machine's to record (`Machine.presence_changes`)."""
        live = {p for p, t in self.seen.items() if now - t < PRESENCE_TIMEOUT}
        seats = frozenset(s for s, o in self.m.roster.officers.items() if o.person in live)
        changes = self.m.presence_changes(live, now) if self.halted is None else ()
        for change in changes:
            self._record(change)
        if seats != self.connected or changes:
            self.connected = seats
            self.changed()

    def _expiries(self, now: float) -> None:
        """An approval that lapsed before its operation started is journaled once; the quorum is
        then asked again (the machine no longer counts it)."""
        for lapse in self.m.lapses(now):
            self._record(lapse)
            self.changed()

    def _record(self, event: ev.Event) -> None:
        """Time's events, which the machine itself proposed: one it refuses after all (the
        ceremony ended in between) is journaled as refused and logged; time goes on."""
        try:
            self.runner.apply(event)
        except Refused as r:
            log.warning("%s not recorded: %s", type(event).__name__, r.reason)

    # --- the coordinator's own work ------------------------------------------------------------
    def _blocked(self, wants: tuple[d.Decision, ...], now: float) -> bool:
        want = wants[0]
        if isinstance(want, (d.Ask, d.RequestApproval)):
            if isinstance(want, d.Ask) and want.kind == "signoff":
                self._ensure_checkpoint(want.step, now)
            return True  # people's turn: their commands wake the driver
        if self.m.paused or self.m.status != "running":
            return True
        if isinstance(want, (d.Execute, d.Perform)) and (
                self._secrets_needed(now, wants) or self._shares_short(now, wants)):
            return True
        return absent_actor(self._view_object(now, wants)) is not None

    def _ensure_checkpoint(self, step: int, now: float) -> None:
        """The checkpoint a sign-off step's officers sign: the one its first sign-off signed
        (after a restart too), else a new one; every officer signs the same."""
        if self.checkpoint is None or self.checkpoint[0] != step:
            self.checkpoint = (step, self.runner.signoff_checkpoint(step, now))
            self.changed()

    async def drive(self) -> None:
        """Do the coordinator's part of each step until the ceremony ends."""
        self._token = trio.lowlevel.current_trio_token()
        try:
            while self.m.status in ("running", "exception") and self.halted is None:
                now = self.clock()
                wants = self.m.wants(now=now)
                if not wants:
                    break
                want = wants[0]
                if self._blocked(wants, now):
                    with trio.move_on_after(TICK):
                        await self._wake.wait()
                    self._wake = trio.Event()
                    continue
                await self._work(want)
                self.changed()
        except JournalHalted:
            pass  # the ceremony work stops here; every screen says why
        self.changed()

    async def _work(self, want: d.Decision) -> None:
        """The coordinator's work for `want`, as `coordinator.executor`'s table says: its
        prelude applied here, the work in a worker thread, its outcome applied back here."""
        job = executor.job(want)
        if job is None:
            raise AssertionError(f"unhandled decision {want!r}")
        if job.new_bar:
            self.progress = None  # a new bar; the consoles decide how long a finished one shows
        started = job.prelude(self.world.now())
        if started is not None:
            try:
                self.runner.apply(started)
            except Refused as r:  # an approval lapsed in between: journaled, asked again
                log.warning("step %d not started: %s", job.step, r.reason)
                return
            self.changed()
        if job.seals_journal:  # the copy ends with a checkpoint over all of it
            self.runner.seal(self.world.now())
            self.changed()
        event = await self._in_thread(job)
        with trio.CancelScope(shield=True):  # what was done is journaled, even at shutdown
            try:
                self.runner.apply(event)
            except Refused as r:  # e.g. a plan refused: the ceremony stops on it
                log.error("step %d: %s", job.step, r.reason)
                self.runner.apply(ev.PerformFailed(at=self.world.now(), step=job.step,
                                                   error=r.reason))

    async def _in_thread(self, job: executor.Job) -> ev.Event:
        """The job's work in a worker thread, then the event saying what it gave (or how it
        failed). Waiting for a flash drive may take minutes and changes nothing: a stopping
        daemon leaves that thread behind rather than wait for someone to plug a drive in."""
        return await trio.to_thread.run_sync(job.run, self.world, self._progress_from_thread,
                                             abandon_on_cancel=job.waits_for_person)

    def _progress_from_thread(self, done: int, total: int, what: str) -> None:
        """Called from whichever thread reports (the signer link's own loop, for one): hand the
        numbers to the trio thread without waiting."""
        assert self._token is not None
        self._token.run_sync_soon(self._set_progress, done, total, what)

    def _set_progress(self, done: int, total: int, what: str) -> None:
        # the work reported on is the current step's: the machine moves on only once the work's
        # event is applied, which the worker thread hands over after its last report
        cur = self.m.current
        self.progress = Progress(done, total, what, cur.n if cur is not None else None)
        self._dirty.set()

    # --- running -------------------------------------------------------------------------------
    async def publish_forever(self, min_interval: float = 0.05) -> None:
        """Broadcast the view after each change, at most every `min_interval` seconds (HSM
        progress can come hundreds of times a second; consoles need a few)."""
        assert self.bus is not None
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            await self.publish()
            await trio.sleep(min_interval)

    async def publish(self) -> int:
        """Broadcast what changed since the last broadcast (the whole view the first time);
        returns its sequence number. (bench/bus.py --view times this, as it is.)"""
        assert self.bus is not None
        view = self.view()
        body = view_delta.delta(self.published, view)
        self.published = view  # no await before the publish: a snapshot is consistent
        return await self.bus.publish(body)

    def snapshot(self) -> dict[str, Any]:
        """What a console (re)joining is given: the view as last broadcast, to which the next
        broadcast's changes apply (coordinator.bus.view_delta); the current view before any."""
        return self.published if self.published is not None else self.view()

    async def tick_forever(self) -> None:
        while True:
            await trio.sleep(TICK)
            self.tick()
