"""The rehearsal's world: the ceremony's real signer, drives and live CD (`CeremonyWorld`), with
scripted officers answering what the machine asks of people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ceremony.machine import Machine
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import ShareAsk
from coordinator.ceremony_world import CeremonyWorld
from coordinator.folder_drives import FolderDrives
from coordinator.rehearsal.officers import ScriptedRoom
from keyrite import sealing
from keyrite.exits import Failure
from keyrite.files import write_atomic
from signer_shim.interface import Signer


class RehearsalWorld(CeremonyWorld):
    def __init__(self, machine: Machine, signer: Signer, drives: FolderDrives, room: ScriptedRoom,
                 livecd: Path, journal_path: Path, journal_records: Any,
                 copies: dict[str, str]) -> None:
        super().__init__(machine, signer, drives, livecd, journal_path, journal_records, {})
        self.room = room
        self.copies = copies  # the pre-generated passwords' paper copies, read when asked
        self.officers = journal_path.parent / "officers"  # their keys, and what they write down

    def take_secret(self, name: str, purpose: str) -> str:
        """A scripted officer reads the password off the pre-generated copy each time one is
        asked for (at the backup, and again at the restore drill): nothing typed is reused."""
        if name not in self.copies:
            raise Failure(f"{purpose} needs the {name} password, and the rehearsal has no copy")
        return self.copies[name]

    def people(self, want: d.Ask | d.RequestApproval, context: dict[str, Any]) -> list[ev.Event]:
        answers = self.room.answer(want, context)
        if isinstance(want, d.Ask) and want.kind == "kek.share" and any(
                isinstance(e, ev.Acknowledge) for e in answers):
            self._write_down_share(want)
        return answers

    def _write_down_share(self, want: d.Ask) -> None:
        """The holder opens their share on their console (with their console's secret key)
        and writes it on paper: here `officers/SEAT.share`, which they read at a drill."""
        seat = str(self.m.script.step(want.step).seat)
        box = self.sealed_shares().get(seat)
        if box is None:
            raise Failure(f"no sealed KEK share waits for {seat}")
        words = sealing.open_sealed(self._console_secret(seat), box,
                                    sealing.share_context(str(want.detail.get("kek_id")), seat))
        write_atomic(self.officers / f"{seat}.share", words, 0o600)
        self.share_handed(seat)

    def _console_secret(self, seat: str) -> str:
        return (self.officers / f"{seat}.curve").read_text().split()[1]

    def bring_shares(self, ask: ShareAsk) -> list[ev.Event]:
        """The signed-in officers of the role who wrote a share down each type it on their
        console, which seals it to the signer's share key; as many as the KEK needs."""
        boxes = self.share_boxes.setdefault(ask.step, {})
        out: list[ev.Event] = []
        for seat in sorted(self.m.signed_in):
            paper = self.officers / f"{seat}.share"
            if len(boxes) >= ask.threshold:
                break
            if seat in boxes or self.m.roster.officers[seat].role != ask.role or \
                    not paper.exists():
                continue
            boxes[seat] = sealing.seal(self.share_key(), paper.read_bytes(),
                                       sealing.share_context(ask.kek_id, "signer"))
            out.append(ev.ShareGiven(at=self.now(), seat=seat, step=ask.step,
                                     purpose=ask.purpose))
        return out
