"""The rehearsal's world: the ceremony's real signer, drives and live CD (`CeremonyWorld`), with
scripted officers answering what the machine asks of people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consoles.scripted import ScriptedRoom
from coordinator.drives import FolderDrives
from coordinator.machine import Machine
from coordinator.machine import decisions as d
from coordinator.machine import events as ev
from coordinator.world import CeremonyWorld
from signer_shim.interface import Signer


class RehearsalWorld(CeremonyWorld):
    def __init__(self, machine: Machine, signer: Signer, drives: FolderDrives, room: ScriptedRoom,
                 livecd: Path, journal_path: Path, journal_records: Any,
                 secrets: dict[str, str]) -> None:
        super().__init__(machine, signer, drives, livecd, journal_path, journal_records, secrets)
        self.room = room

    def people(self, want: d.Ask | d.RequestApproval, context: dict[str, Any]) -> list[ev.Event]:
        return self.room.answer(want, context)
