"""A staged live ceremony on this machine: everything `keyrite coordinator`, `keyrite shim` and
each officer's `keyrite console` need, made at once, for trying the live ceremony out and for the
end-to-end tests.

Any valid script can be staged (the bundled one by default), with the cast a rehearsal of it
has (`coordinator.rehearsal.people.cast_for`). It is the rehearsal's set-up (a SoftHSM2 token
seeded with the previous ceremony's keys, folder drives, the live-CD image, the previous record,
bags, the script's pre-generated passwords) plus what a real
ceremony's enrolment day makes: each seat enrolled with `keyrite.enroll` (an encrypted signing key
and a console CURVE pair), a roster with console keys, the coordinator's CURVE pair, the signer
shim's files, and one console config per person. The passphrases are written to
`live/passphrases.toml` (0600) because nobody here has to remember them: a staged ceremony is a
rehearsal, never a real one.

A script that opens bags an earlier ceremony sealed (an audit, a standby restore) is staged from
that ceremony's journal (`previous`, `previous_key`), as `keyrite rehearse --previous` rehearses
it: the journal is verified and folded first, the rehearsal's set-up continues from it (the
drives in its held bags, its signer's token or a fresh one for a restore, its sealed password),
and the coordinator's config names it, so the live coordinator continues its custody.

    DIR/...                      the rehearsal set-up (coordinator/rehearsal/workdir.py)
    DIR/live/roster.toml         the seats, with signing and console keys
    DIR/live/officers/SEAT/      each seat's enrolment (keyrite enroll's layout)
    DIR/live/passphrases.toml    seat -> passphrase (staging only)
    DIR/live/coordinator.toml    `keyrite coordinator --config` (ports fixed at staging)
    DIR/live/coordinator.key_secret   the bus's CURVE pair
    DIR/live/shim/shim.toml      `keyrite shim --config` (authority from script and roster; no
                                 shim, and no token, for a script that declares no signer)
    DIR/live/consoles/SEAT.toml  one console per person, named by their first seat
    DIR/live/journal-key.txt     the checkpoint verifier key (`keyrite verify --key`)
    DIR/live/materials.txt       the KGA's materials sheet: each drive's serial, each bag's
                                 serial, where the device-backup password's copy is

With `signer="opendnssec"` (`keyrite stage --signer opendnssec`) the signer is a private
OpenDNSSEC 2.1, made as `keyrite rehearse --signer opendnssec` makes it (staging/ods.py): conf.xml,
the script's policies in kasp.xml, the fixture's zones, kasp.db and a SoftHSM2 token, seeded by
the enforcer's own earlier `key generate`, the previous record observed through `OdsSigner`. The
shim's signer_config is its signer.toml (backend "opendnssec"). Its ods-enforcerd is not left
running: as the rehearsal holds `staging.ods.running` around its shim, the staged ceremony's
first command, `python -m staging.ods --config DIR/signer/signer.toml`, runs it in the
foreground until Ctrl-C or SIGTERM stops it (`staging.ods.serve`); the shim is started after it.
Continuing from a previous ceremony is not staged on it (as it is not rehearsed on it): the
signer would continue on a copy of a PKCS#11 rehearsal's token.

    DIR/signer/                  with --signer opendnssec: the private installation
                                 (conf.xml, kasp.xml, zonelist.xml, kasp.db, hsm/, state/,
                                 signer.toml, enforcerd.log)

The coordinator's config carries a verifier of the device-backup password (`[passwords]`, as
`keyrite password verifier` prints it), never the password: the copy in DIR/materials stands in
for the pre-generated password on paper that the SA and, at the restore drill, a second officer
read from.
"""

from __future__ import annotations

import json
import secrets
import shlex
import socket
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ceremony.roster import Officer, Roster, dump_roster
from ceremony.script import bundled_script_path
from ceremony.script.load import load_script
from ceremony.script.model import Script
from coordinator.bus import generate_keypair
from coordinator.executor import Progress
from coordinator.folder_drives import FolderDrives
from coordinator.journal.keys import verifier_key
from coordinator.live.serve import journal_origin
from coordinator.record_command import PreviousJournal, lacking, load_previous_journal
from coordinator.rehearsal.people import Cast, cast_for
from coordinator.rehearsal.rehearse import Continued, continued
from coordinator.rehearsal.signer_link import authority_for
from coordinator.rehearsal.workdir import Paths, password_copy, password_names, set_up
from keyrite.enroll import make_officer, write_curve_pair
from keyrite.exits import BadInput, Failure
from keyrite.files import write_exclusive
from keyrite.keyfiles import load_private_key
from keyrite.passwords import make_verifier
from staging import ods
from staging.standup import write_shim_files

#: what a staged signer runs on: a PKCS#11 token (SoftHSM2), or a private OpenDNSSEC over one
SIGNERS = ("pkcs11", "opendnssec")


@dataclass(frozen=True)
class Staged:
    root: Path
    coordinator: Path  # coordinator.toml
    shim: Path | None  # shim.toml; None: the script declares no signer, no shim is staged
    consoles: dict[str, Path]  # first seat -> console.toml
    passphrases: dict[str, str]  # seat -> passphrase
    journal_key: str
    ports: tuple[int, int, int]  # shim, commands, broadcasts
    drives: dict[str, str]  # label -> the serial printed on it (what the KGA records)
    bags: dict[str, str]  # bag -> serial
    passwords: dict[str, Path]  # name -> the pre-generated password's copy (on paper, live)
    previous: Path | None = None  # the earlier ceremony's journal this one continues from
    held: dict[str, str] = field(default_factory=dict)  # bag brought in -> serial on it
    signer: str | None = "pkcs11"  # SIGNERS: what the shim's backend drives; None: no signer
    enforcer: Path | None = None  # opendnssec: the signer.toml `enforcer_command` runs over

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
          ports: tuple[int, int, int] | None = None, progress: Progress | None = None,
          previous: Path | None = None, previous_key: str | None = None,
          token: Path | None = None, signer: str = "pkcs11") -> Staged:
    """Stage `script_path` in the new directory `root`. With `previous` (an earlier ceremony's
    journal) and `previous_key` (its checkpoint key), the staged ceremony continues from it as
    `keyrite rehearse --previous` does: the journal is verified and folded before anything is
    made, the coordinator's config names it (`previous_journal`), the drives in the bags it
    left held are as that rehearsal sealed them, and the signer continues on its token
    (`token`, default the `signer/` beside the journal), or on a fresh one of the same box for
    a restore. With `signer` "opendnssec" the signer is a private OpenDNSSEC whose enforcer
    made the previous keys (`check_signer` says what does not go with it)."""
    root = root.absolute()
    if signer not in SIGNERS:
        raise BadInput(f"--signer {signer}: known are {', '.join(SIGNERS)}")
    if signer == "opendnssec" and (previous is not None or token is not None):
        raise BadInput(opendnssec_refusal("--previous" if previous is not None else "--token"))
    cont = continued(previous, previous_key, token)  # the options, checked for what goes together
    if root.exists() and any(root.iterdir()):
        raise BadInput(f"{root} exists and is not empty: choose a new directory")
    script_path = (script_path or bundled_script_path()).absolute()
    script = load_script(script_path)
    check_signer(script, script_path, signer)
    if script.earlier_bags and cont is None:  # its coordinator would refuse to start
        raise BadInput(f"{script_path} opens bags an earlier ceremony sealed "
                       f"({', '.join(script.earlier_bags)}): stage it with that ceremony's "
                       "journal, --previous OLD/journal.jsonl --previous-key KEY (a rehearsal "
                       "of the key generation writes one: keyrite rehearse --workdir OLD prints "
                       "its checkpoint key), so that its record holds them")
    earlier = earlier_ceremony(cont, script) if cont is not None else None
    cast = cast_for(script)  # the script's roles and rules, as a rehearsal of it
    paths = Paths(root)
    root.mkdir(parents=True, exist_ok=True)
    set_up(paths, script, fixture, progress or (lambda done, total, what: None), cast=cast,
           previous=earlier, token=cont.token if cont is not None else None,
           signer_backend=signer)
    live = root / "live"
    (live / "officers").mkdir(parents=True, mode=0o700)
    (live / "consoles").mkdir()

    phrases: dict[str, str] = {}
    officers: dict[str, Officer] = {}
    for p in cast.people:
        for seat in p.seats:
            phrases[seat] = secrets.token_hex(5)
            e = make_officer(live / "officers" / seat, role=cast.roles[seat], name=p.name,
                             passphrase=phrases[seat].encode(), seat=seat, person=p.person,
                             organisation=p.organisation)
            officers[seat] = Officer(seat, e.role, e.person, e.name, e.organisation,
                                     e.signing_key, e.console_key)
    roster = Roster(officers)
    write_exclusive(live / "roster.toml", dump_roster(roster).encode())
    write_exclusive(live / "passphrases.toml", "".join(
        f"{k} = {_q(v)}\n" for k, v in phrases.items()).encode(), 0o600)

    shim_port, commands, broadcasts = ports or (free_port(), free_port(), free_port())
    shim: Path | None = None
    client_key = live / "coordinator-ssh.key"
    if script.signers:
        files = write_shim_files(live / "shim", paths.signer / "signer.toml",
                                 authority_for(script, roster), port=shim_port)
        shim, client_key = files.config, files.client_key
    else:  # nothing to reach: a key that no signer authorizes keeps the config whole
        write_client_key(client_key)
    curve = generate_keypair()
    write_curve_pair(live / "coordinator.key_secret", curve.public, curve.secret,
                     seat="coordinator")
    journal_key = verifier_key(journal_origin(script.ceremony.id),
                               load_private_key(paths.coordinator_key))
    write_exclusive(live / "journal-key.txt", (journal_key + "\n").encode())
    cmd_ep, pub_ep = f"tcp://127.0.0.1:{commands}", f"tcp://127.0.0.1:{broadcasts}"
    verifiers = "".join(
        f'"{name}" = "{make_verifier(password_copy(paths, name).read_text().strip())}"\n'
        for name in password_names(script))
    write_exclusive(live / "coordinator.toml", (
        "[coordinator]\n"
        f"script = {_q(script_path)}\n"
        'roster = "roster.toml"\n'
        + (f"previous_journal = {_q(cont.journal)}\nprevious_key = {_q(cont.key)}\n"
           if cont is not None else f"previous = {_q(paths.previous)}\n") +
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
        f"client_key = {_q(client_key)}\n"
        "\n[passwords]\n" + verifiers).encode())

    consoles: dict[str, Path] = {}
    for p in cast.people:
        first, *others = p.seats
        text = ("[console]\n"
                f'enrolment = "../officers/{first}"\n'
                f"also = [{', '.join(_q('../officers/' + s) for s in others)}]\n"
                f"commands = {_q(cmd_ep)}\n"
                f"broadcasts = {_q(pub_ep)}\n"
                f"coordinator_key = {_q(curve.public)}\n"
                f"journal_key = {_q(journal_key)}\n")  # every console checks checkpoints
        if auditor(script, cast, first):
            text += f'journal_copy = "{first}-journal-copy.jsonl"\n'
        consoles[first] = live / "consoles" / f"{first}.toml"
        write_exclusive(consoles[first], text.encode())
    folders = FolderDrives(paths.drives)
    drives = {label: str(folders.info(label).serial) for label in script.drives}
    bags = {k: str(v) for k, v in tomllib.loads(paths.bags.read_text()).items()}
    held = {h.bag: h.serial for h in earlier.facts.custody
            if h.bag in script.earlier_bags} if earlier is not None else {}
    staged = Staged(root, live / "coordinator.toml", shim, consoles, phrases, journal_key,
                    (shim_port, commands, broadcasts), drives, bags,
                    {n: password_copy(paths, n) for n in password_names(script)},
                    cont.journal if cont is not None else None, held,
                    signer if script.signers else None,
                    paths.signer / "signer.toml"
                    if script.signers and signer == "opendnssec" else None)
    write_exclusive(live / "materials.txt", materials_sheet(staged).encode())
    return staged


def opendnssec_refusal(what: str) -> str:
    return (f"--signer opendnssec with {what}: a ceremony on OpenDNSSEC is staged on a new "
            "private installation, and continuing from a previous ceremony (--previous, "
            "--token, a script that opens bags an earlier one sealed, or a restore) continues "
            "on a copy of a PKCS#11 rehearsal's token, as `keyrite rehearse --signer "
            "opendnssec` refuses it too: stage that one on the PKCS#11 signer (the default, "
            "--signer pkcs11)")


def check_signer(script: Script, path: Path, signer: str) -> None:
    """Before anything is made, for `signer` "opendnssec": BadInput for a script that would
    continue on an earlier ceremony's signer (it opens bags an earlier one sealed, or
    restores), and Failure when OpenDNSSEC is not installed here. A script that declares no
    signer stages none, whatever `signer` says."""
    if signer != "opendnssec" or not script.signers:
        return
    restores = [st.n for st in script.steps if st.action == "hsm.restore"]
    if script.earlier_bags:
        raise BadInput(f"{path}: " + opendnssec_refusal(
            f"a script that opens bags an earlier ceremony sealed "
            f"({', '.join(script.earlier_bags)})"))
    if restores:
        raise BadInput(f"{path}: " + opendnssec_refusal(
            f"a script that restores (step {restores[0]})"))
    why = ods.unavailable()
    if why:
        raise Failure(f"--signer opendnssec: {why}")


def enforcer_command(config: Path) -> str:
    """The command that runs a staged OpenDNSSEC's enforcer in the foreground (`staging.ods`),
    with this interpreter: keyrite has no subcommand for it, it is staging's."""
    return f"{shlex.quote(sys.executable)} -m staging.ods --config {shlex.quote(str(config))}"


def earlier_ceremony(cont: Continued, script: Script) -> PreviousJournal:
    """The earlier ceremony's journal verified and folded, and its token found, before anything
    is made: a journal that does not verify, lacks a fact the script needs or leaves none of
    the bags it opens held is bad input, as the staged coordinator would refuse to start."""
    earlier = load_previous_journal(cont.journal, cont.key)
    lacking(earlier, script.ceremony.previous)
    held = {h.bag for h in earlier.facts.custody}
    missing = [b for b in script.earlier_bags if b not in held]
    if missing:
        raise BadInput(f"{cont.journal}: the previous ceremony left no bag {', '.join(missing)} "
                       f"held (it left {', '.join(sorted(held)) or 'none'}), which this script "
                       "opens: continue from the ceremony that sealed it")
    if script.signers and not (cont.token / "signer.toml").is_file():
        raise BadInput(f"{cont.token}: no signer.toml here: a ceremony staged with --previous "
                       "continues on the previous rehearsal's signer, its signer/ directory "
                       "beside the journal; name another with --token DIR")
    return earlier


def auditor(script: object, cast: Cast, seat: str) -> bool:
    """Whether `seat`'s console keeps the auditor's copy of the journal: the seed's SAU, or a
    seat of an observer role whose title says it audits."""
    role = cast.roles[seat]
    declared = script.roles[role]  # type: ignore[attr-defined]
    return role == "SAU" or (declared.observer and "audit" in declared.title.lower())


def write_client_key(path: Path) -> None:
    """The coordinator's SSH key, made where no shim's enrolment makes it (no signer)."""
    import asyncssh  # only staging makes SSH keys here

    key = asyncssh.generate_private_key("ssh-ed25519", comment="keyrite coordinator")
    write_exclusive(path, key.export_private_key(), 0o600)


def keyrite_command() -> str:
    """How to run this keyrite from a shell: the `keyrite` beside this interpreter (the README's
    set-up puts it in .venv/bin, which is not on PATH), else the interpreter with -m."""
    beside = Path(sys.executable).parent / "keyrite"
    if beside.is_file():
        return shlex.quote(str(beside))
    return f"{shlex.quote(sys.executable)} -m keyrite.cli"


def materials_sheet(s: Staged) -> str:
    """What the KGA has in hand on the day: the serial printed on each drive and bag (typed at
    the steps that record them), and the pre-generated password's copy."""
    lines = ["Materials (staged ceremony)", "", "Flash drives (label: serial printed on it)"]
    lines += [f"  {label}: {serial}" for label, serial in sorted(s.drives.items())]
    lines += ["", "Tamper-evident bags (label: serial)"]
    lines += [f"  {label}: {serial}" for label, serial in sorted(s.bags.items())]
    if s.held:  # sealed at the previous ceremony: the serial its holder brings it with
        lines += ["", f"Bags held since the previous ceremony ({s.previous}), as brought in "
                  "(label: serial)"]
        lines += [f"  {label}: {serial}" for label, serial in sorted(s.held.items())]
    for name, copy in sorted(s.passwords.items()):
        lines += ["", f"Pre-generated {name} password (the copy on paper):", f"  {copy}"]
    lines.append("")
    return "\n".join(lines)


def instructions(s: Staged) -> str:
    k = keyrite_command()
    lines = [f"staged a live ceremony in {s.root}", "", "start, each in its own terminal:"]
    if s.enforcer is not None:  # first: the shim's OpenDNSSEC needs its enforcer up
        lines[-1] = ("start, each in its own terminal (the private ods-enforcerd first, and "
                     "stop it last, with Ctrl-C, after the shim):")
        lines += [f"  {enforcer_command(s.enforcer)}"]
    lines += [f"  {k} shim --config {s.shim}"] if s.shim else []
    lines += [f"  {k} coordinator --config {s.coordinator}"]
    lines += [f"  {k} console --config {c}" for c in s.consoles.values()]
    lines += ["", "drive serials (the KGA records these; also in "
              f"{s.live / 'materials.txt'}):"]
    lines += [f"  {label}: {serial}" for label, serial in sorted(s.drives.items())]
    lines += ["", f"passphrases (staging only): {s.live / 'passphrases.toml'}"]
    lines += [f"{name} password (the paper copy): {copy}"
              for name, copy in sorted(s.passwords.items())]
    if s.shim is None:
        lines.append("no signer shim: the script declares no signer, so nothing is staged for "
                     "one and none is started")
    if s.enforcer is not None:
        lines.append(f"signer: a private OpenDNSSEC in {s.enforcer.parent} (its enforcer's "
                     f"log: {s.enforcer.parent / 'enforcerd.log'})")
    if s.previous is not None:
        lines.append(f"continues from {s.previous} (the coordinator verifies it at each start)")
    lines.append(f"journal verifier key: {s.journal_key}")
    return "\n".join(lines)
