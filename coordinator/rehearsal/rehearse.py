"""`keyrite rehearse`: the whole bundled (or given) ceremony, end to end, on a fresh SoftHSM2 token.

Any valid script: its cast is derived from its roles and rules (`people.cast_for`), its previous
record from the keys it names (`workdir.previous_record`); a script with no signer gets no token
and no shim. A step the machine refuses stops the rehearsal in order (exit 1, the machine's
words), as an exception does, never with a traceback.

The order is boulder's: the script is validated and the work directory checked before anything
touches the HSM; set-up makes the token, the cast and the materials; a signer shim is enrolled
and started on 127.0.0.1 and reached over SSH with the script's pinned host key (as a live
ceremony reaches its signer); then the machine runs every step through the journal. `--resume`
rebuilds the machine from the journal (the journal is the truth) and carries on; an HSM
operation started but not journaled as finished is reconciled by the signer against its
inventory before anything is retried.

`--previous JOURNAL --previous-key VKEY` continues from a previous ceremony's journal instead of a
fresh token: the journal is verified and its facts read before anything is made
(`coordinator.record_command.load_previous_journal`), the previous record is those facts, and
the signer continues on that rehearsal's own token (`--token DIR`, default the `signer/`
directory beside the journal), copied into this work directory: as next year's ceremony finds
the same HSM, this one's fingerprint and key count must match the journal's.

`--token-module opencryptoki` makes the token on opencryptoki's software token instead, in a
private pkcsslotd the rehearsal starts for set-up and again for the ceremony and stops after it
(staging/okc.py). What that token cannot do (a backup, a restore, a restore drill, an EC key:
its profile says why) is refused before anything is made, naming the step (`unfit_steps`).

`--signer opendnssec` puts the OdsSigner backend behind the shim instead: a private OpenDNSSEC
(conf.xml, the script's policies in kasp.xml, the fixture's zones, a SoftHSM2 token) whose
ods-enforcerd the rehearsal starts for set-up and again for the ceremony and stops after it
(staging/ods.py). The previous keys are the enforcer's own, from an earlier `key generate`, so
the key counts the ceremony verifies and the counts it generates are the enforcer's (OpenDNSSEC
2.1 does not multiply by zones). Continuing from another rehearsal and a restore are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceremony.machine import Machine, Refused
from ceremony.machine import decisions as d
from ceremony.machine.replay import replay
from ceremony.previous import Held
from ceremony.records import FORMAT, Document
from ceremony.script import bundled_script_path
from ceremony.script.load import load_script
from ceremony.view import Extras
from coordinator.folder_drives import FolderDrives
from coordinator.journal import Journal
from coordinator.journal.file import discard_unborn
from coordinator.record_command import PreviousJournal, lacking, load_previous_journal
from coordinator.rehearsal import summary as summary_
from coordinator.rehearsal.display import Display
from coordinator.rehearsal.officers import ScriptedRoom
from coordinator.rehearsal.people import cast_for
from coordinator.rehearsal.rehearsal_world import RehearsalWorld
from coordinator.rehearsal.signer_link import ShimDied, open_link
from coordinator.rehearsal.workdir import (
    Paths,
    load_cast,
    password_copy,
    password_names,
    read_toml,
    set_up,
)
from coordinator.runner import Runner
from coordinator.shim_client import NoSigner
from keyrite.exits import BadInput, Failure
from keyrite.files import write_exclusive
from keyrite.heap import return_large_buffers
from keyrite.keyfiles import load_private_key
from signer_shim.backends import load_signer_config
from signer_shim.config import SignerConfig
from signer_shim.interface import SignerError
from signer_shim.opendnssec.ods_config import OdsConfig
from signer_shim.pkcs11 import profiles
from staging import ods, okc
from staging.fixture import TOKEN_MODULES

#: what `keyrite rehearse --signer` may put behind the shim: the PKCS#11 backend (on the
#: --token-module's token) or OpenDNSSEC's enforcer over SoftHSM2 (staging/ods.py)
SIGNERS = ("pkcs11", "opendnssec")

FIXTURES = ("seed", "small")


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


@dataclass(frozen=True)
class Continued:
    """What a rehearsal continues from: the previous ceremony's journal, its checkpoint key,
    and the signer directory whose token it continues on."""

    journal: Path
    key: str
    token: Path

    def toml(self) -> str:
        return "".join(f"{k} = {json.dumps(str(v))}\n" for k, v in
                       (("previous", self.journal), ("previous_key", self.key),
                        ("token", self.token)))


def continued(previous: Path | None, previous_key: str | None, token: Path | None
              ) -> Continued | None:
    """The --previous, --previous-key and --token options, checked for what goes together."""
    if previous is None:
        if previous_key is not None or token is not None:
            given = "--previous-key" if previous_key is not None else "--token"
            raise BadInput(f"{given} goes with --previous JOURNAL (the previous ceremony's "
                           "journal this rehearsal continues from)")
        return None
    if previous_key is None or not previous_key.strip():
        raise BadInput(f"--previous {previous}: the previous journal is verified with its "
                       "coordinator's checkpoint key: --previous-key VKEY is missing")
    journal = Path(previous).absolute()
    return Continued(journal, previous_key.strip(),
                     Path(token).absolute() if token is not None else journal.parent / "signer")


def literal_host_keys(script: Any, path: Path) -> None:
    """BadInput for a signer pinned to a literal host key: a rehearsal makes its signer here,
    with a key of its own, so it would stop at the first host-key check every time."""
    for signer in script.signers:
        pin = signer.host_key
        if pin is not None and not pin.startswith("previous."):
            raise BadInput(f"{path}: signer {signer.name} pins the literal host key {pin}; a "
                           "rehearsal's signer is made here with a key of its own, so it could "
                           "never match: pin it with host_key = \"previous.signer_host_key\" "
                           "(and list signer_host_key in [ceremony] previous), which a "
                           "rehearsal fills in with the key it makes")


#: the profile each --token-module's token has (signer_shim.pkcs11.profiles)
PROFILE_OF = {"softhsm2": profiles.SOFTHSM2.name, "opencryptoki": okc.PROFILE}
#: a script without the steps a token that cannot back up refuses, to suggest
NO_BACKUP_SCRIPT = "tests/scripts/keygen-no-backup.toml"


def unfit_steps(script: Any, token_module: str) -> list[str]:
    """What in `script` the token of `token_module` cannot do, each naming its step and the
    token profile's reason: a backup, a restore or a restore drill on a token with no backup
    method, a key algorithm it has no mechanism for. Asked of the profile itself, so a token
    that learns to back up is let through without a change here."""
    profile = profiles.by_name(PROFILE_OF[token_module])
    out: list[str] = []
    for step in script.steps:
        what = {"hsm.backup": "a backup", "hsm.restore": "a restore"}.get(step.action) or (
            "a restore drill" if step.action == "drive.verify" and step.drill else "")
        if what:
            try:
                profile.refuse_backup(what)
            except SignerError as e:
                out.append(f"step {step.n} ({step.action}): {e}")
    try:
        profile.refuse_algorithms(k.algorithm for p in script.policies.values() for k in p.keys)
    except SignerError as e:
        out.append(f"its policies: {e}")
    return out


def check_token_module(script: Any, path: Path, token_module: str,
                       cont: Continued | None) -> None:
    """Before anything is made: BadInput for a script the chosen token cannot carry out (it
    would stop halfway, at its first backup), for continuing from another rehearsal (that
    continues on a copy of a SoftHSM2 token), and Failure when a private opencryptoki cannot
    run on this machine."""
    if token_module not in TOKEN_MODULES:
        raise BadInput(f"--token-module {token_module}: known are {', '.join(TOKEN_MODULES)}")
    if token_module == "softhsm2" or not script.signers:
        return
    unfit = unfit_steps(script, token_module)
    if unfit:
        raise BadInput(
            f"{path}: cannot be rehearsed on --token-module {token_module}, nothing was made: "
            + "; ".join(unfit) + ". Rehearse it on softhsm2 (the default), or give a script "
            f"without those steps (e.g. {NO_BACKUP_SCRIPT}: the bundled key generation "
            "without its backup, copies, restore drill and their bags)")
    if cont is not None or script.earlier_bags:
        raise BadInput(f"{path}: --token-module {token_module} makes a new token; continuing "
                       "from a previous ceremony (--previous, or a script that opens bags an "
                       "earlier one sealed) continues on a SoftHSM2 token's copy")
    why = okc.unavailable()
    if why:
        raise Failure(f"--token-module {token_module}: {why}")


def check_signer(script: Any, path: Path, signer: str, token_module: str,
                 cont: Continued | None) -> None:
    """Before anything is made: BadInput for what a rehearsal on OpenDNSSEC cannot do (another
    token module: the enforcer's repository here is SoftHSM2; continuing from a previous
    rehearsal or restoring: both continue on a PKCS#11 signer's token), and Failure when
    OpenDNSSEC is not installed."""
    if signer not in SIGNERS:
        raise BadInput(f"--signer {signer}: known are {', '.join(SIGNERS)}")
    if signer == "pkcs11" or not script.signers:
        return
    if token_module != "softhsm2":
        raise BadInput(f"--signer opendnssec runs its enforcer over a SoftHSM2 token: "
                       f"--token-module {token_module} does not go with it")
    restores = [st.n for st in script.steps if st.action == "hsm.restore"]
    if cont is not None or script.earlier_bags or restores:
        raise BadInput(f"{path}: --signer opendnssec makes a new installation; continuing from "
                       "a previous ceremony (--previous, a script that opens bags an earlier "
                       "one sealed" + (f", or restores: step {restores[0]}" if restores else "")
                       + ") is rehearsed on the PKCS#11 signer (the default)")
    why = ods.unavailable()
    if why:
        raise Failure(f"--signer opendnssec: {why}")


def synthetic_earlier(paths: Paths, fixture: str) -> Continued:
    """The ceremony a script that opens earlier bags continues from, when no --previous is
    given: the bundled key generation, rehearsed first in WORKDIR/earlier/ with the same
    fixture. Its journal (verified with its own key, as --previous-key would be), its bags and
    drives, and its token are then what this rehearsal finds."""
    root = paths.root / "earlier"
    print(f"keyrite rehearse: this script opens bags an earlier ceremony sealed, and no "
          f"--previous was given: rehearsing the bundled key generation first, in {root}",
          file=sys.stderr, flush=True)
    code, summary = rehearse(None, root, fixture=fixture, as_json=True)
    if code != 0:
        raise Failure(f"the earlier key generation rehearsed in {root} did not complete "
                      f"({summary.get('status')}): nothing to continue from")
    return Continued(root / "journal.jsonl", str(summary["checkpoint_key"]), root / "signer")


def _options(paths: Paths, script_arg: str | None, fixture: str, resume: bool,
             given: Continued | None, token_module: str, signer: str
             ) -> tuple[Path, str, Continued | None, str, str]:
    if resume:
        if not paths.options.is_file():
            raise BadInput(f"{paths.root}: nothing to resume ({paths.options.name} is missing)")
        opts = read_toml(paths.options)
        script = Path(opts["script"])
        if script_arg and Path(script_arg).absolute() != script:
            raise BadInput(f"{paths.root} rehearses {script}, not {script_arg}")
        was = (Continued(Path(opts["previous"]), str(opts["previous_key"]), Path(opts["token"]))
               if "previous" in opts else None)
        if given is not None and given != was:
            raise BadInput(f"{paths.root} was not started with these --previous, --previous-key "
                           "and --token: --resume continues with what it was started with")
        return (script, str(opts["fixture"]), was, str(opts.get("token_module", "softhsm2")),
                str(opts.get("signer", "pkcs11")))
    if paths.root.exists() and any(paths.root.iterdir()):
        raise BadInput(f"{paths.root} exists and is not empty: --resume it, or choose a new "
                       "--workdir")
    script = Path(script_arg).absolute() if script_arg else bundled_script_path()
    return script, fixture, given, token_module, signer


def rehearse(script_arg: str | None, workdir: Path, *, fixture: str = "seed",
             resume: bool = False, as_json: bool = False, previous: Path | None = None,
             previous_key: str | None = None, token: Path | None = None,
             token_module: str = "softhsm2", signer_backend: str = "pkcs11"
             ) -> tuple[int, dict[str, Any]]:
    return_large_buffers()  # the backup read from the shim must not stay resident (keyrite.heap)
    paths = Paths(workdir.absolute())
    given = continued(previous, previous_key, token)
    script_path, fixture, cont, token_module, signer_backend = _options(
        paths, script_arg, fixture, resume, given, token_module, signer_backend)
    script = load_script(script_path)  # every check before the HSM is touched
    literal_host_keys(script, script_path)
    check_signer(script, script_path, signer_backend, token_module, cont)
    check_token_module(script, script_path, token_module, cont)
    cast = cast_for(script)  # from the script's roles and rules, before anyone signs in
    if cont is None and not resume and script.earlier_bags:
        cont = synthetic_earlier(paths, fixture)
    earlier: PreviousJournal | None = None
    if cont is not None and not paths.done.exists():
        # the previous journal verified and read, and the token found, before anything is made
        earlier = load_previous_journal(cont.journal, cont.key)
        lacking(earlier, script.ceremony.previous)
        if not (cont.token / "signer.toml").is_file():
            raise BadInput(f"{cont.token}: no signer.toml here: a rehearsal given --previous "
                           "continues on the previous rehearsal's token, its signer/ directory "
                           "beside the journal; name another with --token DIR")
    display = Display(out=sys.stderr if as_json else sys.stdout)
    if not resume:
        paths.root.mkdir(parents=True, exist_ok=True)
        options = (f'script = "{script_path}"\nfixture = "{fixture}"\n'
                   f'token_module = "{token_module}"\nsigner = "{signer_backend}"\n')
        write_exclusive(paths.options, (options + (cont.toml() if cont else "")).encode())
    if not paths.done.exists():
        if cont is not None:
            display.say(f"setting up {paths.root}: continuing from {cont.journal} on the token "
                        f"of {cont.token}")
        else:
            display.say(f"setting up {paths.root} (fixture {fixture})")
        set_up(paths, script, fixture, display.progress, cast=cast, previous=earlier,
               token=cont.token if cont else None, token_module=token_module,
               signer_backend=signer_backend)

    roster, keys = load_cast(paths)
    # every fact of the record (a made-up one holds only what the script names; one read from a
    # journal all it gave, so the next ceremony can carry the backup's digest on)
    previous: dict[str, Any] = {k: str(v) for k, v in read_toml(paths.previous).items()}
    if paths.previous_journal.exists():  # the bags it left held, which unseal steps open
        held = json.loads(paths.previous_journal.read_text()).get("custody") or []
        if held:
            previous["custody"] = held
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
                "format": FORMAT,  # sign-ins are signed: the fold requires it on replay
            },
        )

    drives = FolderDrives(paths.drives)
    bags = {k: str(v) for k, v in read_toml(paths.bags).items()}
    room = ScriptedRoom(machine, list(cast.people), keys, time.time,
                        lambda label: drives.info(label).serial, bags.__getitem__,
                        cast.custodians)
    copies = {name: password_copy(paths, name).read_text().strip()
              for name in password_names(script)}
    link = None
    signer: Any = NoSigner()
    hsm = contextlib.ExitStack()  # a private pkcsslotd or ods-enforcerd, while the shim runs
    loaded = load_signer_config(paths.signer / "signer.toml") if script.signers else None
    if isinstance(loaded, OdsConfig):
        enforcer = hsm.enter_context(ods.running(paths.signer / "signer.toml"))
        pid = enforcer.proc.pid if enforcer.proc is not None else "?"
        display.say(f"opendnssec: a private ods-enforcerd (pid {pid}) serves {loaded.conf}")
    elif isinstance(loaded, SignerConfig) and okc.is_okc(loaded):
        okc_token = hsm.enter_context(okc.running(paths.signer / "signer.toml"))
        display.say(f"opencryptoki: a private pkcsslotd (pid {okc_token.pid}) serves the token "
                    f"in {okc_token.directory}")
    if script.signers:
        declared = script.signers[0]
        try:
            link = open_link(paths.root / "shim", paths.signer / "signer.toml", script, roster,
                             machine.host_key_pin(declared.name))
        except BaseException:
            hsm.close()
            raise
        signer = link.client
        display.say(f"signer {declared.name}: shim listening on 127.0.0.1 port "
                    f"{link.process.port}, reached over SSH")
    else:
        display.say("no signer: the script declares none, so no token is made and no shim "
                    "is started")
    refused: dict[str, Any] | None = None
    try:
        world = RehearsalWorld(machine, signer, drives, room, paths.livecd, paths.journal,
                               lambda: ((e.seq, e.record) for e in journal.entries()), copies)
        runner = Runner(machine, journal, world, display, iso)
        runner.cosigners = room.cosigners(journal)  # the officers cosign each checkpoint
        if ended(journal):  # resumed after the end: said again, nothing run or journaled
            status = machine.status if machine.status in ("completed", "aborted") else "stopped"
            refused = last_refusal(journal) if status == "stopped" else None
        else:
            try:
                status = runner.run()
            except ShimDied as e:  # the signer crashed: so does the rehearsal, resumable
                raise Failure(f"{e}; nothing was journaled of it: --resume starts a new shim, "
                              "which reconciles the operation") from None
            except Refused as r:  # journaled as refused by the runner: an orderly stop, exit 1
                refused = {"step": machine.current.n if machine.current else None,
                           "reason": r.reason}
                display.say(f"  !! step {refused['step']} refused: {r.reason}")
                status = "stopped"
            if status == "stopped" and refused is None and runner.stalled is not None:
                refused = stalled(machine, runner.stalled)
                display.say(f"  !! step {refused['step']} stopped: {refused['reason']}")
            elif status == "stopped" and refused is None and runner.short_of_shares is not None:
                ask, came = runner.short_of_shares
                refused = {"step": ask.step, "stalled": True,
                           "reason": f"{came} of the {ask.threshold} KEK shares the "
                                     f"{ask.purpose} needs came: only {came} {ask.role}s of the "
                                     "cast hold a share of this KEK"}
                display.say(f"  !! step {refused['step']} stopped: {refused['reason']}")
    finally:
        try:
            if link is not None:
                link.close()
        finally:
            hsm.close()  # after the shim: its workers leave first
    if ended(journal):
        # resumed after the end: the documents and the sealing checkpoints are written already
        documents = {kind: paths.root / name for kind, name in DOCUMENTS.items()}
        note = journal.last_checkpoint.note if journal.last_checkpoint else ""
    else:
        runner.checkpoint(time.time())  # the ceremony's final checkpoint, cosigned
        display.say("writing the report and the printable transcript")
        documents = write_documents(paths.root, script, journal, journal.verifier.text())
        runner.checkpoint(time.time())  # covers the documents' digests too, cosigned
        # and one over those cosignatures, which ends the journal: nothing is left uncovered
        note = journal.checkpoint(iso(time.time()))
    token: dict[str, str] | None = None
    if isinstance(loaded, OdsConfig):
        inst = ods.installation_at(paths.signer / "signer.toml")
        token = {"softhsm2_conf": str(loaded.softhsm2_conf), "label": inst.token.label,
                 "user_pin": inst.token.user_pin, "signer": "opendnssec",
                 "conf": str(loaded.conf)}
    elif script.signers:
        signer_config = SignerConfig.load(paths.signer / "signer.toml")
        token = {"softhsm2_conf": str(signer_config.softhsm2_conf),
                 "label": signer_config.token_label, "user_pin": signer_config.user_pin}
        if okc.is_okc(signer_config):  # no SoftHSM2 conf: where its state is, to restart it
            token.update(softhsm2_conf="", module=str(signer_config.module),
                         token_module="opencryptoki",
                         directory=str(okc.token_directory(signer_config)))
    result = summary_.build(
        machine, status=status, journal=paths.journal, checkpoint=note,
        checkpoint_key=journal.verifier.text(), drives_root=paths.drives,
        token=token,  # type: ignore[arg-type]  # None: no signer, no token
    )
    if refused is not None:
        result["refused"] = refused
    result.update({kind.replace("-", "_"): str(path) for kind, path in documents.items()})
    result["cosigners"] = cosigners((e.seq, e.record) for e in journal.entries())
    if paths.previous_journal.exists():
        result["previous"] = json.loads(paths.previous_journal.read_text())
    return (0 if status == "completed" else 1), result


#: what the end of a rehearsal writes beside its journal: kind -> file name
DOCUMENTS = {"report": "report.pdf", "transcript": "transcript.txt",
             "transcript-pdf": "transcript.pdf"}


def write_documents(root: Path, script: Any, journal: Journal, key: str) -> dict[str, Path]:
    """The auditor's report and the printable transcript (text and PDF) of the journal as it
    stands, written beside it; each one's SHA-256 is journaled (a `document` record), so the
    checkpoint that follows binds the printed papers to the journal."""
    # imported here: only the end of a rehearsal needs reportlab
    from ceremony.digests import colon_hex
    from coordinator.journal.verify import verify_journal
    from coordinator.report.facts import Verification, facts_of
    from coordinator.report.pdf import report_pdf
    from coordinator.transcript import render, transcript_pdf
    from keyrite.files import write_atomic

    records = [(e.seq, e.record) for e in journal.entries()]
    verified = verify_journal(journal.path, [key])
    text = render(script, records)
    made = {
        "report": report_pdf(facts_of(records, Verification(
            journal=journal.path.name, entries=verified.entries,
            checkpoints=verified.checkpoints, keys=verified.key_names, trust=verified.trust))),
        "transcript": text.encode(),
        "transcript-pdf": transcript_pdf(text),
    }
    out: dict[str, Path] = {}
    for kind, data in made.items():
        name = DOCUMENTS[kind]
        write_atomic(root / name, data, mode=0o644)
        journal.append(Document(at=time.time(), what=kind, file=name,
                                sha256=colon_hex(hashlib.sha256(data).hexdigest())).to_dict())
        out[kind] = root / name
    return out


def cosigners(entries: Any) -> list[str]:
    """The seats that cosigned the journal's last cosigned checkpoint (the one after it seals
    their cosignatures and is the coordinator's alone)."""
    by_size: dict[int, set[str]] = {}
    for _, rec in entries:
        if rec.get("type") == "cosignature" and isinstance(rec.get("size"), int):
            by_size.setdefault(rec["size"], set()).add(str(rec.get("seat")))
    return sorted(by_size[max(by_size)]) if by_size else []


def render_previous(summary: dict[str, Any]) -> str:
    """The summary's lines about the previous ceremony this rehearsal continued from: its
    journal, the record read from it, and the bags it left in custody (an `unseal` step checks
    the ones it opens)."""
    p = summary.get("previous")
    if not p:
        return ""
    lines = [f"continued from {p['journal']} ({p['ceremony']}, {p['status']}, "
             f"verified with key {', '.join(p['keys'])})"
             + (f" on {'the signer box of' if p.get('fresh_token') else 'a copy of the token of'}"
                f" {p['token']}{', with a fresh token' if p.get('fresh_token') else ''}"
                if p.get("token") else "")]
    lines += [f"  previous {k} = {v}, from {p['sources'].get(k, '?')}"
              for k, v in p["record"].items()]
    for h in p["custody"]:
        held = Held(**{**h, "contents": tuple(h["contents"])})
        lines.append(f"  previous {held.describe()}")
    return "\n".join(lines)


def ended(journal: Journal) -> bool:
    """Whether the rehearsal's end is journaled already: its documents' digests."""
    return any(e.record.get("type") == "document" for e in journal.entries())


def stalled(machine: Machine, want: d.Ask | d.RequestApproval) -> dict[str, Any]:
    """Why the scripted room answered nothing: nobody of the cast may do what the machine asks
    (a step for one seat, apart from earlier steps' people, a quorum of named seats: a script
    whose rules contradict each other, or a cast too small for them)."""
    step = machine.view(Extras(now=time.time())).step
    asked = next((a for a in step.asked if a.step == want.step and a.role == want.role),
                 None) if step is not None else None
    what = asked.text if asked is not None else f"the {want.role} acts"
    return {"step": want.step, "stalled": True,
            "reason": f"nobody in the rehearsal's cast may do it ({what}): the script's rules "
                      "for who does it leave nobody"}


def last_refusal(journal: Journal) -> dict[str, Any] | None:
    """The step and reason of the refusal a rehearsal stopped on, from its journal: the last
    refused event (scripted officers and the world's work send nothing else that is refused)."""
    last = None
    for e in journal.entries():
        if e.record.get("type") == "refused" and "event" in e.record:
            last = {"step": e.record.get("step"), "reason": e.record.get("reason")}
    return last


def discard_unborn_journal(path: Path, display: Any) -> None:
    """A journal file being created when the process died holds nothing of the ceremony: it is
    started again (`coordinator.journal.file.discard_unborn`)."""
    if discard_unborn(path):
        display.say(f"journal: {path.name} was being created when the rehearsal stopped; "
                    "starting it again")
