"""The rehearsal's world: the ceremony's real signer, drives and live CD (`CeremonyWorld`), with
scripted officers answering what the machine asks of people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ceremony.machine import Machine
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from coordinator.ceremony_world import CeremonyWorld
from coordinator.folder_drives import FolderDrives
from coordinator.rehearsal.officers import ScriptedRoom
from keyrite.exits import Failure
from signer_shim.interface import Signer


class RehearsalWorld(CeremonyWorld):
    def __init__(self, machine: Machine, signer: Signer, drives: FolderDrives, room: ScriptedRoom,
                 livecd: Path, journal_path: Path, journal_records: Any,
                 copies: dict[str, str]) -> None:
        super().__init__(machine, signer, drives, livecd, journal_path, journal_records, {})
        self.room = room
        self.copies = copies  # the pre-generated passwords' paper copies, read when asked

    def take_secret(self, name: str, purpose: str) -> str:
        """A scripted officer reads the password off the pre-generated copy each time one is
        asked for (at the backup, and again at the restore drill): nothing typed is reused."""
        if name not in self.copies:
            raise Failure(f"{purpose} needs the {name} password, and the rehearsal has no copy")
        return self.copies[name]

    def people(self, want: d.Ask | d.RequestApproval, context: dict[str, Any]) -> list[ev.Event]:
        return self.room.answer(want, context)
