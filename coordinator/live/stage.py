"""A staged live ceremony on this machine: everything `keyrite coordinator`, `keyrite shim` and
each officer's `keyrite console` need, made at once, for trying the live ceremony out and for the
end-to-end tests.

It is the rehearsal's set-up (a SoftHSM2 token seeded with the previous ceremony's keys, folder
drives, the live-CD image, the previous record, bags, the device-backup password) plus what a real
ceremony's enrolment day makes: each seat enrolled with `keyrite.enroll` (an encrypted signing key
and a console CURVE pair), a roster with console keys, the coordinator's CURVE pair, the signer
shim's files, and one console config per person. The passphrases are written to
`live/passphrases.toml` (0600) because nobody here has to remember them: a staged ceremony is a
rehearsal, never a real one.

    DIR/...                      the rehearsal set-up (coordinator/rehearsal/workdir.py)
    DIR/live/roster.toml         the seats, with signing and console keys
    DIR/live/officers/SEAT/      each seat's enrolment (keyrite enroll's layout)
    DIR/live/passphrases.toml    seat -> passphrase (staging only)
    DIR/live/coordinator.toml    `keyrite coordinator --config` (ports fixed at staging)
    DIR/live/coordinator.key_secret   the bus's CURVE pair
    DIR/live/shim/shim.toml      `keyrite shim --config` (authority from script and roster)
    DIR/live/consoles/SEAT.toml  one console per person, named by their first seat
    DIR/live/journal-key.txt     the checkpoint verifier key (`keyrite verify --key`)
"""

from __future__ import annotations

import json
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from coordinator.bus import generate_keypair
from coordinator.journal.keys import verifier_key
from coordinator.live.serve import journal_origin
from coordinator.rehearsal.link import authority_for
from coordinator.rehearsal.people import PEOPLE, seat_role
from coordinator.rehearsal.workdir import Paths, set_up
from coordinator.roster import Officer, Roster, dump_roster
from coordinator.runner import Progress
from coordinator.script import bundled_script_path
from coordinator.script.load import load_script
from keyrite.enroll import make_officer, write_curve_pair
from keyrite.exits import BadInput
from keyrite.files import write_exclusive
from keyrite.keyfiles import load_private_key
from signer_shim.standup import write_shim_files


@dataclass(frozen=True)
class Staged:
    root: Path
    coordinator: Path  # coordinator.toml
    shim: Path  # shim.toml
    consoles: dict[str, Path]  # first seat -> console.toml
    passphrases: dict[str, str]  # seat -> passphrase
    journal_key: str
    ports: tuple[int, int, int]  # shim, commands, broadcasts

    @property
    def live(self) -> Path:
        return self.root / "live"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _q(v: object) -> str:
    return json.dumps(str(v))


def stage(root: Path, *, fixture: str = "small", script_path: Path | None = None,
          ports: tuple[int, int, int] | None = None, progress: Progress | None = None) -> Staged:
    root = root.absolute()
    if root.exists() and any(root.iterdir()):
        raise BadInput(f"{root} exists and is not empty: choose a new directory")
    script_path = (script_path or bundled_script_path()).absolute()
    script = load_script(script_path)
    paths = Paths(root)
    root.mkdir(parents=True, exist_ok=True)
    set_up(paths, script, fixture, progress or (lambda done, total, what: None))
    live = root / "live"
    (live / "officers").mkdir(parents=True, mode=0o700)
    (live / "consoles").mkdir()

    phrases: dict[str, str] = {}
    officers: dict[str, Officer] = {}
    for p in PEOPLE:
        for seat in p.seats:
            phrases[seat] = secrets.token_hex(5)
            e = make_officer(live / "officers" / seat, role=seat_role(seat), name=p.name,
                             passphrase=phrases[seat].encode(), seat=seat, person=p.person,
                             organisation=p.organisation)
            officers[seat] = Officer(seat, e.role, e.person, e.name, e.organisation,
                                     e.signing_key, e.console_key)
    roster = Roster(officers)
    write_exclusive(live / "roster.toml", dump_roster(roster).encode())
    write_exclusive(live / "passphrases.toml", "".join(
        f"{k} = {_q(v)}\n" for k, v in phrases.items()).encode(), 0o600)

    shim_port, commands, broadcasts = ports or (free_port(), free_port(), free_port())
    files = write_shim_files(live / "shim", paths.signer / "signer.toml",
                             authority_for(script, roster), port=shim_port)
    curve = generate_keypair()
    write_curve_pair(live / "coordinator.key_secret", curve.public, curve.secret,
                     seat="coordinator")
    journal_key = verifier_key(journal_origin(script.ceremony.id),
                               load_private_key(paths.coordinator_key))
    write_exclusive(live / "journal-key.txt", (journal_key + "\n").encode())
    cmd_ep, pub_ep = f"tcp://127.0.0.1:{commands}", f"tcp://127.0.0.1:{broadcasts}"
    write_exclusive(live / "coordinator.toml", (
        "[coordinator]\n"
        f"script = {_q(script_path)}\n"
        'roster = "roster.toml"\n'
        f"previous = {_q(paths.previous)}\n"
        'journal = "journal.jsonl"\n'
        f"key = {_q(paths.coordinator_key)}\n"
        'curve = "coordinator.key_secret"\n'
        f"commands = {_q(cmd_ep)}\n"
        f"broadcasts = {_q(pub_ep)}\n"
        f"livecd = {_q(paths.livecd)}\n"
        f"drives = {_q(paths.drives)}\n"
        "\n[signer]\n"
        'host = "127.0.0.1"\n'
        f"port = {shim_port}\n"
        f"client_key = {_q(files.client_key)}\n").encode())

    consoles: dict[str, Path] = {}
    for p in PEOPLE:
        first, *others = p.seats
        text = ("[console]\n"
                f'enrolment = "../officers/{first}"\n'
                f"also = [{', '.join(_q('../officers/' + s) for s in others)}]\n"
                f"commands = {_q(cmd_ep)}\n"
                f"broadcasts = {_q(pub_ep)}\n"
                f"coordinator_key = {_q(curve.public)}\n")
        if seat_role(first) == "SAU":
            text += (f'journal_copy = "{first}-journal-copy.jsonl"\n'
                     f"journal_key = {_q(journal_key)}\n")
        consoles[first] = live / "consoles" / f"{first}.toml"
        write_exclusive(consoles[first], text.encode())
    return Staged(root, live / "coordinator.toml", files.config, consoles, phrases, journal_key,
                  (shim_port, commands, broadcasts))


def instructions(s: Staged) -> str:
    lines = [f"staged a live ceremony in {s.root}", "", "start, each in its own terminal:",
             f"  keyrite shim --config {s.shim}",
             f"  keyrite coordinator --config {s.coordinator}"]
    lines += [f"  keyrite console --config {c}" for c in s.consoles.values()]
    lines += ["", f"passphrases (staging only): {s.live / 'passphrases.toml'}",
              f"device-backup password: {s.root / 'materials' / 'device-backup-password'}",
              f"journal verifier key: {s.journal_key}"]
    return "\n".join(lines)
