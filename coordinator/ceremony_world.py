"""The machine's hands in the room: a real signer (behind a signer shim, over SSH), the flash
drives, the live-CD image. `CeremonyWorld` observes, performs and runs HSM operations for the
runner and the live coordinator alike; who answers the people's questions is the subclass's (the
rehearsal's scripted officers) or the consoles' (the live coordinator). Every rule is still the
machine's."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ceremony.digests import colon_hex, from_colon_hex
from ceremony.machine import Machine
from ceremony.machine import decisions as d
from coordinator import publish
from coordinator.drives import SUM_SUFFIX, Drives, sha256_file
from coordinator.executor import Progress
from coordinator.shim_client import HostKeyMismatch, ShimClient
from coordinator.transcript import render, transcript_pdf_apart
from keyrite.exits import Failure
from keyrite.files import write_atomic
from signer_shim.interface import PolicyKeys, Signer
from signer_shim.protocol import INPUT_CHUNK, INPUT_NAME, MAX_INPUT


class CeremonyWorld:
    def __init__(
        self,
        machine: Machine,
        signer: Signer,
        drives: Drives,
        livecd: Path,
        journal_path: Path,
        journal_records: Any,  # () -> iterable of (seq, record)
        secrets: dict[str, str],
    ) -> None:
        self.m = machine
        self.signer = signer
        self.drives = drives
        self.livecd = livecd
        self.journal_path = journal_path
        self.journal_records = journal_records
        self.secrets = secrets
        #: KEK shares brought for a wrap backup's restore or drill: step -> seat -> a box sealed
        #: on the officer's console to the signer's share key (the coordinator cannot open it)
        self.share_boxes: dict[int, dict[str, str]] = {}
        self._share_key: str | None = None

    # --- KEK shares ----------------------------------------------------------------------------
    @property
    def handover_path(self) -> Path:
        """Shares of a KEK just made, each sealed to its holder's console key, until each holder
        has written theirs down: ciphertext only, beside the journal (never in it), so that a
        coordinator restarted between the KEK's creation and a handover still has them."""
        return self.journal_path.with_name("kek-shares.sealed.json")

    def sealed_shares(self) -> dict[str, str]:
        """seat -> the box sealed to that holder's console key, for the shares not yet handed."""
        try:
            data = json.loads(self.handover_path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def share_handed(self, seat: str) -> None:
        """The holder confirmed: their box is forgotten here (only their console opened it)."""
        left = self.sealed_shares()
        if left.pop(seat, None) is not None:
            write_atomic(self.handover_path, json.dumps(left, sort_keys=True).encode(), 0o600)

    def share_key(self) -> str:
        """The signer's share key (Z85), to which the officers' consoles seal the shares they
        bring; asked once."""
        if self._share_key is None:
            self._share_key = str(self.signer.share_key())
        return self._share_key

    def console_key(self, seat: str) -> str | None:
        """The seat's enrolled console key (Z85): a KEK share is sealed to it."""
        officer = self.m.roster.officers.get(seat)
        return officer.console_key if officer is not None else None

    def take_shares(self, step: int, threshold: int) -> list[str]:
        boxes = self.share_boxes.pop(step, {})
        if len(boxes) < threshold:
            raise Failure(f"step {step} needs {threshold} KEK shares; {len(boxes)} were brought")
        return list(boxes.values())

    def now(self) -> float:
        return time.time()

    # --- values the machine checks -----------------------------------------------------------
    def observe(self, want: d.Observe) -> str:
        p = want.params
        src = want.source
        if src == "livecd.sha256":
            return colon_hex(sha256_file(self.livecd))
        if src == "signer.host_key":
            return self._live_host_key(p.get("format", "sha256"))
        if src == "signer.role":
            return str(self.signer.info()["role"])
        if src == "hsm.fingerprint":
            return self.signer.fingerprint()
        if src == "hsm.key_count":
            return str(len(self.signer.inventory().keys))
        if src == "drive.serial":
            return self.drives.wait_for(p["drive"], self.m.recorded_serial(p["drive"])).serial
        if src == "backup.sha256":
            if not p.get("file"):
                raise Failure("no backup has been written yet")
            return colon_hex(hashlib.sha256(self.signer.read_output(p["file"])).hexdigest())
        if src == "drive.sha256" and not p.get("file"):  # the key backup the drive holds
            data = self._backup_on_drive(p["drive"], None)[1]
            return colon_hex(hashlib.sha256(data).hexdigest())
        if src in ("transcript.sha256", "drive.sha256"):
            data = self.drives.read(p["drive"], p["file"])
            return colon_hex(hashlib.sha256(data).hexdigest())
        raise Failure(f"this coordinator cannot observe {src}")

    def _live_host_key(self, fmt: str) -> str:
        """The key the signer presented in the SSH handshake, not what it says of itself:
        a wrong key stops the link before any request, and the verify step shows which."""
        if isinstance(self.signer, ShimClient):
            try:
                return self.signer.host_key(fmt)
            except HostKeyMismatch as e:
                shown = self.signer.presented if fmt == "sha256" else self.signer.presented_md5
                return shown or e.presented
        info = self.signer.info()
        return str(info["host_key"] if fmt == "sha256" else info["host_key_md5"])

    # --- work without approvals ----------------------------------------------------------------
    def perform(self, want: d.Perform, progress: Progress) -> dict[str, Any]:
        """The work of a step the coordinator carries out itself: one method per action whose
        row in `ceremony.script.step_kinds` says `perform` (`PERFORMS`)."""
        work = PERFORMS.get(want.action)
        if work is None:
            raise Failure(f"this coordinator cannot perform {want.action}")
        return work(self, want.params, progress)

    def _fingerprint(self, p: dict[str, Any], progress: Progress) -> dict[str, Any]:
        return {"fingerprint": self.signer.fingerprint()}

    def _list(self, p: dict[str, Any], progress: Progress) -> dict[str, Any]:
        inv = self.signer.inventory()
        return {"count": len(inv.keys), "listing": inv.render()}

    def _insert(self, p: dict[str, Any], progress: Progress) -> dict[str, Any]:
        info = self.drives.wait_for(p["drive"], self.m.recorded_serial(p["drive"]))
        return {"serial": info.serial, "vendor": info.vendor, "model": info.model,
                "path": info.path}

    def _copy(self, p: dict[str, Any], progress: Progress) -> dict[str, Any]:
        copied = self.drives.copy(p["drive"], self._source_files(p), progress)
        return {"files": copied, "verified": True}

    def _verify(self, p: dict[str, Any], progress: Progress) -> dict[str, Any]:
        result = self.drives.verify(p["drive"])
        if result.get("ok") and "secrets" in p:
            result["drill"] = self._drill(p)
        return result

    def _eject(self, p: dict[str, Any], progress: Progress) -> dict[str, Any]:
        self.drives.eject(p["drive"])
        return {"ejected": True}

    def _transcript(self, p: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """The printable transcript of the journal so far, as paged text and as the same pages
        in a PDF, both written to the drive with their sums; the text's digest is the step's
        value (the seed's SA read it out), the PDF's is journaled beside it."""
        text = render(self.m.script, self.journal_records())
        name = time.strftime("transcript-%Y%m%d.txt", time.gmtime(self.now()))
        pdf = name.removesuffix(".txt") + ".pdf"
        written = self.drives.copy(
            p["drive"], [(name, text.encode()), (pdf, transcript_pdf_apart(text))])
        done = {str(f["name"]): f for f in written}
        return {"file": name, "drive": p["drive"], "sha256": colon_hex(str(done[name]["sha256"])),
                "pdf": pdf, "pdf_sha256": colon_hex(str(done[pdf]["sha256"]))}

    def _drill(self, p: dict[str, Any]) -> dict[str, Any]:
        """The restore drill. The backup on the drive was just read back and checked; it must
        also be byte for byte the backup the signer wrote, so restoring the signer's copy
        restores what will be sealed."""
        backup = p.get("backup") or {}
        if not backup.get("file"):
            raise Failure("the restore drill has no backup to restore")
        name = Path(backup["file"]).name
        on_drive = hashlib.sha256(self.drives.read(p["drive"], name)).hexdigest()
        if on_drive != from_colon_hex(str(backup.get("sha256", ""))):
            raise Failure(f"{name} on drive {p['drive']} is not the backup the signer wrote "
                          f"(sha256 {on_drive})")
        if p.get("shares"):
            ask = self.m.share_asked(self.now())
            if ask is None:
                raise Failure("the drill of a wrap backup needs the KEK this ceremony made")
            return self.signer.restore_drill(name, shares=self.take_shares(ask.step,
                                                                           ask.threshold))
        [secret] = p["secrets"]
        return self.signer.restore_drill(name, self.take_secret(secret, "the restore drill"))

    def _source_files(self, p: dict[str, Any]) -> list[tuple[str, bytes]]:
        src = p["source"]
        if src == "backup":
            backup = p.get("backup") or {}
            if not backup.get("file"):
                raise Failure("no backup has been written yet")
            names = [Path(backup["file"]).name, Path(backup["sha256sum_file"]).name]
            return [(n, self.signer.read_output(n)) for n in names]
        if src.startswith("drive:"):
            label = src.removeprefix("drive:")
            return [(n, self.drives.read(label, n)) for n in self.drives.list(label)]
        if src == "journal":
            return [("journal.jsonl", self.journal_path.read_bytes()), *self._public_keys()]
        if src == "transcript":
            t = p.get("transcript") or {}
            if not t.get("file"):
                raise Failure("no transcript has been written yet")
            files = [t["file"], *([t["pdf"]] if t.get("pdf") else [])]
            # their sums come along where the transcript's drive holds them, so the copy is
            # checked against the digests taken when it was written, not against itself
            on_drive = set(self.drives.list(t["drive"]))
            files += [s for f in files if (s := f + SUM_SUFFIX) in on_drive]
            return [(f, self.drives.read(t["drive"], f)) for f in files]
        raise Failure(f"unknown copy source {src!r}")

    def _public_keys(self) -> list[tuple[str, bytes]]:
        """The public keys this ceremony generated (public-keys.pem, and dnskey.txt and ds.txt
        where the key manager gave roles and zones), from the journaled results: they go on
        the Key Gen Log drive beside the journal that records them (docs/script-format.md)."""
        keys = publish.keys_from_results(self.m.results_of("hsm.generate"))
        return sorted(publish.files(keys).items())

    # --- HSM operations under quorum -------------------------------------------------------------
    def plan(self, want: d.Plan) -> dict[str, Any]:
        p = want.params
        if want.action == "hsm.purge":
            return self.signer.plan_purge()
        if want.action == "hsm.generate":
            keys = [PolicyKeys(k["policy"], k["role"], k["algorithm"], k["lifetime_seconds"])
                    for k in p["keys"]]
            return self.signer.plan_generate(keys, p["duration"])
        if want.action == "hsm.backup":
            return self.signer.plan_backup(p["date"])
        if want.action == "hsm.kek":
            holders = []
            for seat in p["holders"]:
                key = self.console_key(seat)
                if key is None:
                    raise Failure(f"{seat} has no enrolled console key to seal a KEK share to")
                holders.append({"seat": seat, "key": key})
            return self.signer.plan_kek(p["threshold"], holders)
        if want.action == "hsm.restore":
            name, data = self._backup_on_drive(p["drive"], p.get("file"))
            return self.signer.plan_restore(name, hand_over(self.signer, name, data))
        raise Failure(f"this coordinator cannot plan {want.action}")

    def _backup_on_drive(self, label: str, file: str | None) -> tuple[str, bytes]:
        """The backup a restore reads off drive `label`: `file`, or the only key backup there;
        checked against its `.sha256sum` beside it when there is one (a damaged copy is
        refused before the signer sees it)."""
        names = self.drives.list(label)
        if file is None:
            found = sorted(n for n in names if INPUT_NAME.fullmatch(n))
            if len(found) != 1:
                raise Failure(f"drive {label} holds {len(found)} key backups "
                              f"({', '.join(found) or 'none'}): name one with `file`")
            file = found[0]
        elif file not in names:
            raise Failure(f"drive {label} holds no {file}")
        data = self.drives.read(label, file)
        if len(data) > MAX_INPUT:
            raise Failure(f"{file} is {len(data)} bytes; a backup is at most {MAX_INPUT}")
        if f"{file}.sha256sum" in names:
            line = self.drives.read(label, f"{file}.sha256sum").decode(errors="replace")
            if line.split()[:1] != [hashlib.sha256(data).hexdigest()]:
                raise Failure(f"{file} on drive {label} does not match its .sha256sum: the "
                              "copy is damaged")
        return file, data

    def execute(self, want: d.Execute, progress: Progress) -> dict[str, Any]:
        secrets: dict[str, Any] = {}
        for name in want.secrets:
            secrets["password"] = self.take_secret(name, f"step {want.step}")
        kek = want.operation.get("kek")
        if want.operation.get("op") == "restore" and isinstance(kek, dict):
            secrets["shares"] = self.take_shares(want.step, int(kek.get("threshold", 0)))
        result = self.signer.execute(want.operation, want.approvals, progress, secrets=secrets)
        if want.operation.get("op") == "kek":  # the boxes wait beside the journal, not in it
            sealed = {str(x["seat"]): str(x["box"]) for x in result.pop("sealed", [])}
            write_atomic(self.handover_path, json.dumps(sealed, sort_keys=True).encode(), 0o600)
        return result

    def take_secret(self, name: str, purpose: str) -> str:
        """A password typed for one piece of work, handed over once and then forgotten: the
        restore drill must be given it again, by someone reading a sealed copy, so that it
        tests the copies rather than what was typed at the backup."""
        if name not in self.secrets:
            raise Failure(f"{purpose} needs the {name} password, and nobody has entered it")
        return self.secrets.pop(name)


def hand_over(signer: Signer, name: str, data: bytes) -> str:
    """Give the signer file `name` in chunks a shim line can carry; returns its SHA-256, by
    which the signer then finds it."""
    sha = hashlib.sha256(data).hexdigest()
    for offset in range(0, len(data), INPUT_CHUNK):
        signer.put_input(name, data[offset:offset + INPUT_CHUNK], offset, len(data), sha)
    return sha


#: The world's hands for each action the coordinator performs itself (the step-kinds rows whose
#: work is `perform`; tests/test_executor.py checks every such row has one here).
PERFORMS: dict[str, Callable[[CeremonyWorld, dict[str, Any], Progress], dict[str, Any]]] = {
    "hsm.fingerprint": CeremonyWorld._fingerprint,
    "hsm.list": CeremonyWorld._list,
    "drive.insert": CeremonyWorld._insert,
    "drive.copy": CeremonyWorld._copy,
    "drive.verify": CeremonyWorld._verify,
    "drive.eject": CeremonyWorld._eject,
    "transcript": CeremonyWorld._transcript,
}
