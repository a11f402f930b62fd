"""`keyrite rehearse`: the whole bundled (or given) ceremony, end to end, on a fresh SoftHSM2 token.

The order is boulder's: the script is validated and the work directory checked before anything
touches the HSM; set-up makes the token, the cast and the materials; a signer shim is enrolled
and started on 127.0.0.1 and reached over SSH with the script's pinned host key (as a live
ceremony reaches its signer); then the machine runs every step through the journal. `--resume`
rebuilds the machine from the journal (the journal is the truth) and carries on; an HSM
operation started but not journaled as finished is reconciled by the signer against its
inventory before anything is retried.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ceremony.machine import Machine
from ceremony.machine.replay import replay
from ceremony.script import bundled_script_path
from ceremony.script.load import load_script
from coordinator.folder_drives import FolderDrives
from coordinator.journal import Journal
from coordinator.journal.file import discard_unborn
from coordinator.rehearsal import summary as summary_
from coordinator.rehearsal.display import Display
from coordinator.rehearsal.officers import ScriptedRoom
from coordinator.rehearsal.people import CUSTODIANS, PEOPLE, check_cast
from coordinator.rehearsal.rehearsal_world import RehearsalWorld
from coordinator.rehearsal.signer_link import open_link
from coordinator.rehearsal.workdir import Paths, load_cast, read_toml, set_up
from coordinator.runner import Runner
from keyrite.exits import BadInput
from keyrite.files import write_exclusive
from keyrite.keyfiles import load_private_key
from signer_shim.config import SignerConfig

FIXTURES = ("seed", "small")


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _options(paths: Paths, script_arg: str | None, fixture: str, resume: bool) -> tuple[Path, str]:
    if resume:
        if not paths.options.is_file():
            raise BadInput(f"{paths.root}: nothing to resume ({paths.options.name} is missing)")
        opts = read_toml(paths.options)
        script = Path(opts["script"])
        if script_arg and Path(script_arg).absolute() != script:
            raise BadInput(f"{paths.root} rehearses {script}, not {script_arg}")
        return script, str(opts["fixture"])
    if paths.root.exists() and any(paths.root.iterdir()):
        raise BadInput(f"{paths.root} exists and is not empty: --resume it, or choose a new "
                       "--workdir")
    return (Path(script_arg).absolute() if script_arg else bundled_script_path()), fixture


def rehearse(script_arg: str | None, workdir: Path, *, fixture: str = "seed",
             resume: bool = False, as_json: bool = False) -> tuple[int, dict[str, Any]]:
    paths = Paths(workdir.absolute())
    script_path, fixture = _options(paths, script_arg, fixture, resume)
    script = load_script(script_path)  # every check before the HSM is touched
    check_cast(script, PEOPLE)  # the script's separation of duty, before anyone signs in
    display = Display(out=sys.stderr if as_json else sys.stdout)
    if not resume:
        paths.root.mkdir(parents=True, exist_ok=True)
        options = f'script = "{script_path}"\nfixture = "{fixture}"\n'
        write_exclusive(paths.options, options.encode())
    if not paths.done.exists():
        display.say(f"setting up {paths.root} (fixture {fixture})")
        set_up(paths, script, fixture, display.progress)

    roster, keys = load_cast(paths)
    previous = {k: str(v) for k, v in read_toml(paths.previous).items()}
    coordinator_key = load_private_key(paths.coordinator_key)
    machine = Machine(script, roster, previous)
    discard_unborn_journal(paths.journal, display)
    if paths.journal.exists():
        journal = Journal.open(paths.journal, key=coordinator_key)
        if journal.torn:
            display.say(f"journal: cut a torn final line ({journal.torn})")
        replay(((e.seq, e.record) for e in journal.entries()), machine, script.sha256)
        display.say(f"resumed at step {machine.current.n if machine.current else '-'} "
                       f"with {len(machine.completed)} steps done")
    else:
        origin = f"keyrite.rehearsal/{script.ceremony.id}/{time.strftime('%Y%m%dT%H%M%SZ')}"
        journal = Journal.create(
            paths.journal, key=coordinator_key, name=origin, origin=origin,
            genesis_record={
                "type": "genesis", "at": iso(time.time()), "ceremony": script.ceremony.id,
                "title": script.ceremony.title, "rehearsal": True,
                "script": {"name": script_path.name, "sha256": script.sha256,
                           "text": script_path.read_text()},
                "roster": roster.to_dict(), "previous": previous,
            },
        )

    signer_config = SignerConfig.load(paths.signer / "signer.toml")
    drives = FolderDrives(paths.drives)
    bags = {k: str(v) for k, v in read_toml(paths.bags).items()}
    room = ScriptedRoom(machine, list(PEOPLE), keys, time.time,
                        lambda label: drives.info(label).serial, bags.__getitem__, CUSTODIANS)
    copies = {"device-backup": (paths.materials / "device-backup-password").read_text().strip()}
    declared = script.signers[0]
    link = open_link(paths.root / "shim", paths.signer / "signer.toml", script, roster,
                     machine.host_key_pin(declared.name))
    display.say(f"signer {declared.name}: shim listening on 127.0.0.1 port "
                f"{link.process.port}, reached over SSH")
    try:
        world = RehearsalWorld(machine, link.client, drives, room, paths.livecd, paths.journal,
                               lambda: ((e.seq, e.record) for e in journal.entries()), copies)
        status = Runner(machine, journal, world, display, iso).run()
    finally:
        link.close()
    note = journal.checkpoint(iso(time.time()))
    result = summary_.build(
        machine, status=status, journal=paths.journal, checkpoint=note,
        checkpoint_key=journal.verifier.text(), drives_root=paths.drives,
        token={"softhsm2_conf": str(signer_config.softhsm2_conf),
               "label": signer_config.token_label, "user_pin": signer_config.user_pin},
    )
    return (0 if status == "completed" else 1), result


def discard_unborn_journal(path: Path, display: Any) -> None:
    """A journal file being created when the process died holds nothing of the ceremony: it is
    started again (`coordinator.journal.file.discard_unborn`)."""
    if discard_unborn(path):
        display.say(f"journal: {path.name} was being created when the rehearsal stopped; "
                    "starting it again")
