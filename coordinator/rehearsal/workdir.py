"""A rehearsal's work directory: everything one rehearsal makes, in one place, never overwritten.

    DIR/rehearsal.toml          what was asked (script, fixture), to --resume the same rehearsal
    DIR/coordinator.key         the coordinator's Ed25519 checkpoint key (PKCS#8 PEM, 0600)
    DIR/officers/SEAT.key       each scripted officer's key, encrypted with their passphrase
    DIR/officers/passphrases.toml   the scripted officers' passphrases (0600; rehearsal only)
    DIR/roster.toml             the enrolled seats and their public keys
    DIR/previous-record.toml    the previous ceremony's record the script verifies against: the
                                keys its `[ceremony] previous` names (`previous_record`)
    DIR/previous-journal.json   with --previous: what the previous journal said (its facts, where
                                each was read, the bags it left in custody)
    DIR/livecd.iso              the live boot medium whose digest step 16 verifies
    DIR/bags.toml               the tamper-evident bags in stock and their serials
    DIR/materials/              NAME-password: each pre-generated password the script names (0600)
    DIR/signer/                 the signer: config, SoftHSM2 token, key state, outputs (with
                                --previous: a copy of the previous rehearsal's token, key state
                                and host key, as next year's ceremony finds the same HSM); not
                                made for a script that declares no signer. With
                                --token-module opencryptoki, hsm/ is a private opencryptoki's
                                state (staging/okc.py), its pkcsslotd run only while needed.
                                With --signer opendnssec, a private OpenDNSSEC installation
                                (conf.xml, kasp.xml, zonelist.xml, kasp.db, hsm/: staging/ods.py),
                                its ods-enforcerd run only while needed
    DIR/drives/LABEL/           the folder-backed flash drives
    DIR/journal.jsonl           the ceremony journal
    DIR/setup.done              written last: set-up is complete

Set-up is redone from scratch when `setup.done` is missing (it is all before the journal exists,
so nothing of the ceremony is lost), which is what makes a SIGKILL during set-up resumable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.approval import public_key_text
from ceremony.digests import colon_hex
from ceremony.roster import Officer, Roster, dump_roster, load_roster
from ceremony.script.model import Script
from coordinator.executor import Progress
from coordinator.folder_drives import FolderDrives
from coordinator.record_command import PreviousJournal, render_toml
from coordinator.rehearsal.people import Cast
from keyrite import configfile, sealing
from keyrite.configfile import ConfigError
from keyrite.exits import BadInput
from keyrite.files import write_exclusive
from keyrite.keyfiles import load_private_key, save_private_key
from signer_shim.config import SignerConfig
from signer_shim.interface import PolicyKeys
from signer_shim.keystate import KeyState, save_keystate
from signer_shim.opendnssec.signer import OdsSigner
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.softhsm import create_token, read_tokendir, write_conf
from staging import ods, okc
from staging.fixture import DEFAULT_POLICIES, seed_rehearsal_token

LIVECD_SIZE = 4 << 20


@dataclass(frozen=True)
class Paths:
    root: Path

    def __getattr__(self, name: str) -> Path:
        files = {
            "options": "rehearsal.toml", "coordinator_key": "coordinator.key",
            "officers": "officers", "roster": "roster.toml", "previous": "previous-record.toml",
            "previous_journal": "previous-journal.json",
            "livecd": "livecd.iso", "bags": "bags.toml", "materials": "materials",
            "signer": "signer", "drives": "drives", "journal": "journal.jsonl",
            "done": "setup.done",
        }
        if name in files:
            return self.root / files[name]
        raise AttributeError(name)


def _toml_value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, str) else str(v)


def policy_keys(script: Script) -> list[PolicyKeys]:
    """The keys the token is seeded with: the script's policies, or for a script that generates
    nothing (an audit declares none) the fixture's default ones, so that the HSM it looks at
    holds keys to count."""
    return [PolicyKeys(p.name, k.role, k.algorithm, k.lifetime.seconds)
            for p in script.policies.values() for k in p.keys] or list(DEFAULT_POLICIES)


#: the keys today's scripts name, and the observation each one records
KNOWN = {"livecd_sha256": "livecd.sha256", "signer_host_key": "signer.host_key",
         "hsm_fingerprint": "hsm.fingerprint", "key_count": "hsm.key_count"}


def previous_record(script: Script, observed: dict[str, str],
                    drive_serials: dict[str, str]) -> dict[str, str]:
    """The previous ceremony's record for `script`: exactly the keys its `[ceremony] previous`
    names, each what this ceremony will observe where a step compares an observation with it
    (`observed`: observation -> value, as the rehearsal's signer, live CD and drives give it;
    a drive's serial from `drive_serials`), or a signer's `host_key` pins it; else by the name
    today's scripts give it (`KNOWN`); else a plausible value of the kind its name says (a
    digest, a serial, a count, text), which nothing in the ceremony observes."""
    where: dict[str, str] = {}
    for step in script.steps:
        key = (step.expect or "").removeprefix("previous.")
        if step.action == "verify" and step.expect != key and key not in where:
            src = step.observe or ""
            where[key] = drive_serials.get(step.drive or "", "") if src == "drive.serial" \
                else observed.get(src, "")
    for signer in script.signers:
        key = (signer.host_key or "").removeprefix("previous.")
        if signer.host_key != key:
            where.setdefault(key, observed.get("signer.host_key", ""))
    for label, drive in script.drives.items():
        key = (drive.serial or "").removeprefix("previous.")
        if drive.serial != key:
            where.setdefault(key, drive_serials.get(label, ""))
    return {k: where.get(k) or observed.get(KNOWN.get(k, ""), "") or plausible(k)
            for k in script.ceremony.previous}


def plausible(key: str) -> str:
    """A made-up value for a record key nothing in the rehearsal observes, of the kind its name
    says."""
    if "sha256" in key or "digest" in key:
        return colon_hex(secrets.token_hex(32))
    if "serial" in key:
        return secrets.token_hex(12).upper()
    if "count" in key:
        return str(secrets.randbelow(200))
    return f"rehearsal {key.replace('_', ' ')}"


def drive_serial(script: Script, label: str, record: dict[str, str]) -> str:
    """The USB serial of the rehearsal's drive `label`: the script's, the previous record's
    (`serial = "previous.KEY"`), or made up."""
    serial = script.drives[label].serial
    if serial and serial.startswith("previous."):
        serial = record.get(serial.removeprefix("previous."))
    return serial or secrets.token_hex(12).upper()


def sealed_drives(previous: PreviousJournal | None) -> dict[str, tuple[str, Path]]:
    """The drives a bag of the previous rehearsal still holds: label -> (the serial read off it
    there, its files: in that rehearsal's drives/, or its vault/ for a bag it carried on from
    the one before it unopened). A rehearsal given --previous gets them as they were sealed,
    so opening the bag finds what the record says."""
    out: dict[str, tuple[str, Path]] = {}
    if previous is None:
        return out
    root = previous.path.parent
    for held in previous.facts.custody:
        for label, serial in held.drives.items():
            files = next((d for d in (root / "drives" / label / "files",
                                      root / "vault" / label / "files") if d.is_dir()), None)
            if serial and files is not None:
                out[label] = (serial, files)
    return out


def livecd_bytes() -> bytes:
    """A deterministic stand-in for the live CD image (the same digest in every rehearsal)."""
    out = bytearray()
    counter = 0
    while len(out) < LIVECD_SIZE:
        out += hashlib.sha256(b"keyrite rehearsal live CD %d" % counter).digest()
        counter += 1
    return bytes(out[:LIVECD_SIZE])


def standby_token(dest: Path, source: Path) -> SignerConfig:
    """The signer a restore rehearses onto: the previous rehearsal's signer box (its SSH host
    key, its token's label and PINs, as a standby is configured to match the primary) with a
    fresh, empty token and no key state, as a replaced or new HSM would be. `source` is the
    previous rehearsal's signer directory; it is only read."""
    new = continue_token(dest, source)
    shutil.rmtree(dest / "hsm")
    token = create_token(dest / "hsm", new.token_label, new.user_pin,
                         so_pin=new.so_pin)  # a wrap signer's SO imports the backup KEK
    save_keystate(new.keystate_path, KeyState())
    new = dataclasses.replace(new, softhsm2_conf=token.softhsm2_conf)
    new.save(dest / "signer.toml")
    return new


def continue_token(dest: Path, source: Path) -> SignerConfig:
    """The signer of a previous rehearsal, continued: a copy of its SoftHSM2 token, its key
    state and its SSH host key (the same HSM on the same signer box, as next year's ceremony
    finds it) in `dest`, with a config pointing at the copies. `source` is that rehearsal's
    signer directory (OLD/signer: signer.toml, hsm/, state/). Its operation and request
    journals and outputs stay behind: they were the previous ceremony's. The previous
    rehearsal's directory is only read."""
    config_path = source / "signer.toml"
    if not config_path.is_file():
        raise BadInput(f"{source}: no signer.toml here: the token to continue on is a previous "
                       "rehearsal's signer directory (OLD/signer, with signer.toml, hsm/ and "
                       "state/); name it with --token DIR")
    try:
        old = SignerConfig.load(config_path)
        tokens = read_tokendir(old.softhsm2_conf)
    except (ConfigError, OSError, ValueError) as e:
        raise BadInput(f"{config_path}: cannot continue on this signer: {e}") from None
    for f in (tokens, old.keystate_path, old.host_key_path):
        if not f.exists():
            raise BadInput(f"{config_path}: cannot continue on this signer: {f} is missing")
    dest.mkdir()
    shutil.copytree(tokens, dest / "hsm" / "tokens")
    conf = write_conf(dest / "hsm" / "softhsm2.conf", dest / "hsm" / "tokens")
    state = dest / "state"
    state.mkdir()
    shutil.copy2(old.keystate_path, state / "keystate.json")
    host_key = state / "ssh_host_ed25519_key"
    shutil.copy2(old.host_key_path, host_key)
    if Path(f"{old.host_key_path}.pub").exists():
        shutil.copy2(f"{old.host_key_path}.pub", f"{host_key}.pub")
    new = dataclasses.replace(old, softhsm2_conf=conf, state_dir=state, host_key_path=host_key)
    new.save(dest / "signer.toml")
    return new


def set_up(paths: Paths, script: Script, fixture: str, progress: Progress, *, cast: Cast,
           previous: PreviousJournal | None = None, token: Path | None = None,
           token_module: str = "softhsm2", signer_backend: str = "pkcs11") -> None:
    """Make everything the rehearsal needs for `cast`, then write `setup.done`. With `previous`
    (a verified previous journal) and `token` (its rehearsal's signer directory), the signer
    continues on that token and the previous record is the journal's. A script that declares
    no signer gets no token; `token_module` says which PKCS#11 implementation a new one is
    made on (staging.fixture.TOKEN_MODULES); `signer_backend` "opendnssec" makes a private
    OpenDNSSEC whose enforcer generated the previous keys itself (`ods_signer`)."""
    ods.stop_leftover(paths.signer)  # a killed set-up's enforcer, before its files go
    for sub in ("officers", "materials", "signer", "drives"):
        d = getattr(paths, sub)
        if d.exists():
            shutil.rmtree(d)  # an interrupted set-up of our own: start it again
    shutil.rmtree(paths.root / "vault", ignore_errors=True)
    for f in ("roster", "previous", "previous_journal", "livecd", "bags", "coordinator_key"):
        getattr(paths, f).unlink(missing_ok=True)

    # officers: keys encrypted with their passphrases, and the roster of public keys
    paths.officers.mkdir(mode=0o700)
    officers: dict[str, Officer] = {}
    passphrases: dict[str, str] = {}
    for p in cast.people:
        for seat in p.seats:
            key = Ed25519PrivateKey.generate()
            passphrases[seat] = secrets.token_urlsafe(12)
            save_private_key(paths.officers / f"{seat}.key", key, passphrases[seat].encode())
            # the console's CURVE pair: a KEK share is sealed to its public half
            curve_public, curve_secret = sealing.new_pair()
            write_exclusive(paths.officers / f"{seat}.curve",
                            f"{curve_public} {curve_secret}\n".encode(), 0o600)
            officers[seat] = Officer(seat, cast.roles[seat], p.person, p.name, p.organisation,
                                     public_key_text(key.public_key()), console_key=curve_public)
    write_exclusive(paths.officers / "passphrases.toml",
              "".join(f"{k} = {_toml_value(v)}\n" for k, v in passphrases.items()).encode(), 0o600)
    write_exclusive(paths.roster, dump_roster(Roster(officers)).encode())
    if previous is not None:  # the KSOs bring the share cards they wrote at the key backup
        for paper in sorted((previous.path.parent / "officers").glob("*.share")):
            if paper.stem in officers:
                write_exclusive(paths.officers / paper.name, paper.read_bytes(), 0o600)

    # the signer with its token: seeded with the previous ceremony's keys, or the previous
    # rehearsal's own token continued
    signer: dict[str, Any] = {}
    restores = any(st.action == "hsm.restore" for st in script.steps)
    if token is not None and restores:
        standby_token(paths.signer, token)  # restored onto: a fresh token on the same box
    elif token is not None:
        continue_token(paths.signer, token)
    elif script.signers and signer_backend == "opendnssec":
        signer = ods_signer(paths.signer, script, fixture, progress)
    elif script.signers:
        declared = script.signers[0]
        seeded = seed_rehearsal_token(paths.signer, policy_keys(script), shape=fixture,
                                      name=declared.name, role=declared.role or "standby",
                                      progress=progress, token_module=token_module,
                                  backup_method="wrap" if any(
                                      st.action == "hsm.kek" for st in script.steps)
                                  else "tokendir")
        with contextlib.ExitStack() as up:
            if okc.is_okc(seeded.config):  # its pkcsslotd again, for as long as we look
                up.enter_context(okc.running(seeded.config_path))
            config = SignerConfig.load(seeded.config_path)  # the launcher running() wrote
            with Pkcs11Signer(config) as s:
                signer = {"signer.host_key": s.info()["host_key"],
                          "signer.role": s.info()["role"], "hsm.fingerprint": s.fingerprint(),
                          "hsm.key_count": str(len(s.inventory().keys))}

    # materials, drives, bags, live CD
    paths.materials.mkdir(mode=0o700)
    for name in password_names(script):
        # a password the previous rehearsal sealed (a restore types it from its copy), or new
        sealed = previous.path.parent / "materials" / f"{name}-password" if previous else None
        value = sealed.read_bytes() if sealed is not None and sealed.is_file() else \
            secrets.token_urlsafe(24).encode()
        write_exclusive(password_copy(paths, name), value, 0o600)
    known = {k: str(v) for k, v in previous.facts.record.items()} if previous else {}
    serials = {label: drive_serial(script, label, known) for label in script.drives}
    sealed = sealed_drives(previous)
    serials.update({label: serial for label, (serial, _) in sealed.items()
                    if label in script.drives})
    drives = FolderDrives(paths.drives)
    for label, serial in serials.items():
        info = drives.provision(label, serial)
        if label in sealed:  # the drive the previous ceremony sealed in a bag, as it left it
            shutil.copytree(sealed[label][1], info.path, dirs_exist_ok=True)
    vault = FolderDrives(paths.root / "vault")  # sealed drives this script never handles
    for label, (serial, files) in sealed.items():
        if label not in script.drives:
            shutil.copytree(files, vault.provision(label, serial).path, dirs_exist_ok=True)
    bag_serials = {b: str(3_000_000 + secrets.randbelow(999_999)) for b in script.bags}
    write_exclusive(paths.bags, "".join(f'{k} = "{v}"\n' for k, v in bag_serials.items()).encode())
    cd = livecd_bytes()
    write_exclusive(paths.livecd, cd)

    # the previous ceremony's record: what this ceremony must find again
    if previous is not None:  # read from its journal, as `keyrite record export` writes it
        write_exclusive(paths.previous, render_toml(previous).encode())
        write_exclusive(paths.previous_journal,
                        json.dumps({**previous.to_dict(), "token": str(token),
                                    "fresh_token": restores},
                                   indent=1).encode() + b"\n")
    else:
        observed = {"livecd.sha256": colon_hex(hashlib.sha256(cd).hexdigest()), **signer}
        record = previous_record(script, observed, serials)
        write_exclusive(paths.previous,
                  "".join(f"{k} = {_toml_value(v)}\n" for k, v in record.items()).encode())
    key = Ed25519PrivateKey.generate()
    save_private_key(paths.coordinator_key, key)  # the machine's own key: file mode guards it
    write_exclusive(paths.done, b"")  # last: set-up is complete


def ods_signer(directory: Path, script: Script, fixture: str,
               progress: Progress) -> dict[str, str]:
    """A private OpenDNSSEC in `directory` seeded by its own enforcer (staging.ods), and what
    the previous ceremony's record takes from it, observed through `OdsSigner` with the
    enforcer running: the host key, the role, the token's fingerprint and its key count (as
    `ods-hsmutil list` gives it: the count step 30 compares with)."""
    declared = script.signers[0]
    seeded = ods.seed_rehearsal_ods(directory, policy_keys(script), shape=fixture,
                                    name=declared.name, role=declared.role or "standby",
                                    progress=progress)
    with ods.running(seeded.config_path), OdsSigner(seeded.config) as s:
        return {"signer.host_key": s.info()["host_key"], "signer.role": s.info()["role"],
                "hsm.fingerprint": s.fingerprint(), "hsm.key_count": str(len(s.inventory().keys))}


def password_names(script: Script) -> list[str]:
    """The pre-generated passwords the script's steps name (the seed's one: device-backup)."""
    return sorted({st.password for st in script.steps if st.password})


def password_copy(paths: Paths, name: str) -> Path:
    """The paper copy of the pre-generated password `name`: materials/NAME-password."""
    return paths.materials / f"{name}-password"


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return configfile.read_toml(path)
    except configfile.ConfigError as e:
        raise BadInput(str(e)) from None


def load_cast(paths: Paths) -> tuple[Roster, dict[str, Ed25519PrivateKey]]:
    roster = load_roster(paths.roster)
    phrases = read_toml(paths.officers / "passphrases.toml")
    keys = {seat: load_private_key(paths.officers / f"{seat}.key", str(phrases[seat]).encode())
            for seat in roster.officers}
    return roster, keys
