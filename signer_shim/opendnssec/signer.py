"""`OdsSigner`: the `Signer` protocol over Debian's OpenDNSSEC 2.1 tools (the backend is picked
from the signer config by `signer_shim.backends`).

Unlike `Pkcs11Signer`, this backend decides nothing about keys itself: the enforcer chooses how
many keys to make and their locators, and what is dead. So the plan records what the enforcer
will do as *counts* computed from its own KASP database (policy keys, unused pool keys), and
execute proves afterwards, by inventory diff, that exactly that happened:

- inventory: `ods-hsmutil -c CONF list REPOSITORY`, parsed; fingerprint: `ods-hsmutil info`
  (the token's manufacturer, model, serial and label, as Pkcs11Signer hashes them);
- generate: `ods-enforcer key generate --duration D --all` only schedules the work, so execute
  polls the inventory until it stops changing and has the predicted count of new keys (bounded
  by the configured timeout), then requires: nothing removed, exactly the predicted number
  added, every new key known to the enforcer. The scheduling is journaled (`scheduled`), so a
  retry after a crash polls again instead of scheduling a second generation;
- purge: dead keys come from the KASP DB (all record states HIDDEN or NA); `ods-enforcer key
  purge -z ZONE --delete` deletes every dead key of a zone; execute
  first requires that the enforcer's dead keys in those zones are all planned ones (a purge cannot
  delete a subset), then that exactly the planned keys vanished;
- backup: the same archive as Pkcs11Signer (with `keys.json`, read over PKCS#11 with conf.xml's
  label and PIN) plus `kasp.db`, an sqlite3 online-backup copy;
- restore drill: the backup's token is restored into a scratch directory and listed by
  `ods-hsmutil` (this conf.xml, SOFTHSM2_CONF pointed at the scratch token), then compared with
  the live listing (`drill.compare`); the backup's `kasp.db` must name no key the token lacks;
- restore: Pkcs11Signer's plan (every key of the backup, from its clear `keys.json`) plus
  `kasp_db` (the backup's KASP database: digest, keys, zones, policies). Execute decrypts into a
  scratch token and checks it (ods-hsmutil and PKCS#11, this conf.xml's label and PIN), then
  stops the enforcer, puts the backup's token directory and `kasp.db` in place, starts the
  enforcer again, and proves by inventory diff that exactly the backup's keys came and that the
  enforcer (its key list and database) names only keys the token holds. The journal's
  `restored` line, written once both are in place and the enforcer runs, tells a rerun to check
  only; before it, a rerun puts both in place again from the verified scratch copy.

Measured on OpenDNSSEC 2.1.12 (Debian bookworm): `key generate` makes ceil(duration / lifetime)
keys per policy key *minus* the unused ones, and does NOT multiply by the number of zones (log:
"2 keys needed for 13 zones covering 63072000 seconds, generating 2 keys"). The plan predicts what
the enforcer does, and shows the zone count beside it so the difference is visible.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, final

from ceremony.approval import Approval
from ceremony.digests import operation_digest
from ceremony.durations import parse_duration
from keyrite import crashpoints
from signer_shim import planning
from signer_shim.backup import BackupError, build_archive, read_members, restore_backup
from signer_shim.drill import compare
from signer_shim.hostkey import signer_info
from signer_shim.inputs import Inputs
from signer_shim.interface import Inventory, KeyInfo, PolicyKeys, Progress, SignerError
from signer_shim.keystate import STATES, KeyRecord, KeyState
from signer_shim.opendnssec.ods_config import OdsConf, OdsConfig, load_ods_config, read_ods_conf
from signer_shim.opendnssec.ods_daemon import start_enforcer, stop_enforcer
from signer_shim.opendnssec.ods_kasp import (
    ROLES,
    EnforcerKey,
    copy_database,
    database_summary,
    dead_keys,
    hsmutil_type,
    known_locators,
    parse_key_list,
    policy_keys,
)
from signer_shim.operation_journal import OperationJournal, OperationStatus, execute_once
from signer_shim.outputs import Outputs
from signer_shim.pkcs11.signer import _swap_tokens
from signer_shim.pkcs11.softhsm import child_env, read_tokendir
from signer_shim.pkcs11.workerclient import WorkerClient
from signer_shim.restore import (
    check_restored,
    plan_restore,
    refuse_foreign,
    restored_difference,
    sha256_hex,
)
from signer_shim.tokenid import token_fingerprint

_GEN_BATCH = frozenset({"policy", "role", "algorithm", "lifetime_seconds", "zones", "unused",
                        "count"})
_LOCATOR = re.compile(r"^[0-9a-f]{32}$")
#: Why this backend has no wrap backup (plan_kek, share_key, a wrap restore or drill).
_NO_WRAP = ("the OpenDNSSEC backend makes no backup KEK and restores no wrap backup: "
            "OpenDNSSEC makes its keys CKA_EXTRACTABLE=false, so they cannot leave the token "
            "wrapped (its backups are token-directory backups)")
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: What a restore plan says of the KASP database it brings back (`OdsSigner.plan_restore`).
_KASP_DB = frozenset({"sha256", "keys", "zones", "policies"})
POLL_SECONDS = 0.25
LIST_ATTEMPTS = 20  # listings tried after generation (each a fresh ods-hsmutil)
#: how long a retry waits for the work of a `key generate` a crash left unconfirmed
ACCEPT_GRACE_SECONDS = 30.0


def enforcer_count(duration_seconds: int, lifetime_seconds: int, unused: int) -> int:
    """What OpenDNSSEC 2.1.12's `key generate` makes for one policy key (measured, see the
    module docstring): ceil(duration / lifetime) less the unused pool keys, never below 0."""
    return max(0, planning.periods(duration_seconds, lifetime_seconds) - unused)


def parse_hsmutil_list(text: str, repository: str) -> Inventory:
    """`ods-hsmutil list REPOSITORY`: rows after the dashed header; the "N keys found." line must
    agree with the rows, and a key listed twice is an error (ambiguity stops everything)."""
    found = re.search(r"^(\d+) keys found\.", text, re.M)
    if found is None:
        raise SignerError(f"unexpected ods-hsmutil list output: {text[:200]!r}")
    keys: dict[str, KeyInfo] = {}
    rows = False
    for line in text.splitlines():
        if line.startswith("----------"):
            rows = True
            continue
        parts = line.split()
        if not rows or not parts:
            continue
        if len(parts) != 3 or parts[0] != repository or not _LOCATOR.match(parts[1]):
            raise SignerError(f"unexpected ods-hsmutil list row: {line!r}")
        if parts[1] in keys:
            raise SignerError(f"ods-hsmutil lists key {parts[1]} twice")
        keys[parts[1]] = KeyInfo(locator=parts[1], type=hsmutil_type(parts[2]))
    if len(keys) != int(found.group(1)):
        raise SignerError(f"ods-hsmutil says {found.group(1)} keys but lists {len(keys)}")
    return Inventory(repository=repository, keys=tuple(keys[k] for k in sorted(keys)))


def parse_hsmutil_info(text: str, repository: str) -> dict[str, str]:
    """The token fields of one repository's block in `ods-hsmutil info`."""
    blocks = re.split(r"^Repository: ", text, flags=re.M)
    for block in blocks[1:]:
        name, _, rest = block.partition("\n")
        if name.strip() != repository:
            continue
        fields = dict(re.findall(r"^\s+([A-Za-z ]+):\s*(.*?)\s*$", rest, re.M))
        try:
            return {"label": fields["Token Label"], "manufacturer_id": fields["Manufacturer"],
                    "model": fields["Model"], "serial": fields["Serial"]}
        except KeyError as e:
            raise SignerError(f"ods-hsmutil info lacks {e} for {repository}") from None
    raise SignerError(f"ods-hsmutil info does not show repository {repository}")


@final
class OdsSigner:
    """Implements `signer_shim.interface.Signer` by driving ods-enforcer and ods-hsmutil."""

    def __init__(self, config: OdsConfig) -> None:
        self.config = config
        self.ods: OdsConf = read_ods_conf(config.conf)
        self.socket = config.socket or self.ods.socket
        config.state_dir.mkdir(parents=True, exist_ok=True)
        config.outputs_dir.mkdir(exist_ok=True)
        self._journal = OperationJournal(config.journal_path)
        self._outputs = Outputs(config.outputs_dir)
        self._inputs = Inputs(config.state_dir / "inputs")
        self._lock = threading.RLock()

    @classmethod
    def from_file(cls, path: Path) -> OdsSigner:
        return cls(load_ods_config(path))

    def __repr__(self) -> str:
        return f"<OdsSigner {self.config.name} repository={self.ods.repository!r}>"

    def __enter__(self) -> OdsSigner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Signer protocol ----------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        c = self.config
        return signer_info(c.name, c.role, c.host_key_path, "opendnssec", self.ods.repository)

    def fingerprint(self) -> str:
        return self._fingerprint()

    def _fingerprint(self, softhsm2_conf: Path | None = None) -> str:
        t = parse_hsmutil_info(self._hsmutil("info", softhsm2_conf=softhsm2_conf),
                               self.ods.repository)
        return token_fingerprint(t["manufacturer_id"], t["model"], t["serial"], t["label"])

    def inventory(self) -> Inventory:
        return parse_hsmutil_list(self._hsmutil("list", self.ods.repository), self.ods.repository)

    def enforcer_keys(self) -> list[EnforcerKey]:
        """The enforcer's own key list, with its state names (`dead` is what purge removes)."""
        return parse_key_list(self._enforcer("key", "list", "--all", "--verbose", "--parsable"))

    def dead_keys(self) -> list[tuple[str, str]]:
        """(zone, locator) of the keys `key purge` would remove, from the KASP database."""
        return dead_keys(self.ods.datastore)

    def plan_purge(self) -> dict[str, Any]:
        """The keys the enforcer's database calls dead and that are on the token."""
        with self._lock:
            present = self._locators()
            dead = sorted({loc for _z, loc in self.dead_keys() if loc in present})
            return {"op": "purge", "token": self.fingerprint(), "delete": dead}

    def plan_generate(self, keys: Sequence[PolicyKeys], duration: str) -> dict[str, Any]:
        """Counts from the enforcer's database; the script's policy keys must be exactly the
        enforcer's (`--all` generates for every policy key it knows)."""
        with self._lock:
            seconds = parse_duration(duration).seconds
            kasp = {(p.policy, p.role): p for p in policy_keys(self.ods.datastore)}
            declared: dict[tuple[str, str], PolicyKeys] = {}
            for pk in keys:
                if (pk.policy, pk.role) in declared:
                    raise SignerError(f"policy {pk.policy} declares its {pk.role} twice")
                declared[(pk.policy, pk.role)] = pk
            missing = sorted(set(kasp) - set(declared))
            if missing:
                raise SignerError("the enforcer would also generate for policy keys the script "
                                  f"does not declare: {missing}")
            batches = []
            for (policy, role), pk in declared.items():
                k = kasp.get((policy, role))
                if k is None:
                    raise SignerError(f"the enforcer has no {role} in a policy {policy!r}")
                if (k.algorithm, k.lifetime_seconds) != (pk.algorithm, pk.lifetime_seconds):
                    raise SignerError(
                        f"policy {policy} {role}: the script says {pk.algorithm} for "
                        f"{pk.lifetime_seconds} s, the enforcer {k.algorithm} for "
                        f"{k.lifetime_seconds} s")
                batches.append({
                    "policy": policy, "role": role, "algorithm": k.algorithm,
                    "lifetime_seconds": k.lifetime_seconds, "zones": k.zones, "unused": k.unused,
                    "count": enforcer_count(seconds, k.lifetime_seconds, k.unused)})
            # the enforcer makes what it is asked for: an approved plan of millions would
            # hold the HSM for good, so the same cap as the PKCS#11 backend's default
            planning.check_count(sum(b["count"] for b in batches), planning.DEFAULT_MAX_KEYS)
            return {"op": "generate", "token": self.fingerprint(), "duration": duration,
                    "batches": batches}

    def plan_backup(self, date: str) -> dict[str, Any]:
        with self._lock:
            return self._outputs.plan_backup(self.fingerprint(), date)

    def execute(
        self,
        operation: Mapping[str, Any],
        approvals: Sequence[Approval],
        progress: Progress | None = None,
        *,
        secrets: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Carry out a planned operation once, whatever happened before (journaled as
        Pkcs11Signer does; a generation also journals `scheduled`, a restore `restored`)."""
        op = dict(operation)
        secrets = dict(secrets or {})
        with self._lock:
            digest = operation_digest(op) if isinstance(op.get("op"), str) else ""
            if op.get("op") == "restore" and self._journal.status(digest).started:
                # the token is the backup's now, or between the two: judged by `_restore`
                check_operation(op, str(op.get("token")))
            else:
                check_operation(op, self.fingerprint())
            if op["op"] == "kek" or op.get("method") == "wrap":
                raise SignerError(_NO_WRAP)
            if op["op"] in ("backup", "restore") and not secrets.get("password"):
                raise SignerError(f"a {op['op']} needs the device-backup password "
                                  "(secrets['password'])")
            digest = operation_digest(op)

            def start() -> frozenset[str]:
                locators = self._locators()
                self._precheck(op)
                return locators

            return execute_once(
                self._journal, op, digest, [_approval_dict(a) for a in approvals], start=start,
                run=lambda status: self._run(op, digest, status, progress, secrets))

    def put_input(self, name: str, data: bytes, offset: int, size: int,
                  sha256: str) -> dict[str, Any]:
        """A chunk of a backup to restore, handed over by the coordinator (signer_shim.inputs)."""
        return self._inputs.put(name, data, offset, size, sha256)

    def plan_restore(self, name: str, sha256: str) -> dict[str, Any]:
        """The restore of the handed-over backup `name`: Pkcs11Signer's plan (every key, from
        the backup's clear members, so no password before approval) plus `kasp_db`, what the
        enforcer's database will be: the backup's `kasp.db` digest, its keys, zones and policies.
        Refused: a backup without `kasp.db` (not this backend's), one whose database names a
        key its token lacks, and everything `_refuse_restore` refuses."""
        with self._lock:
            archive = self._inputs.read(name, sha256)
            op = plan_restore(self.fingerprint(), name, archive)
            try:
                kasp = read_members(archive).get("kasp.db")
            except BackupError as e:
                raise SignerError(f"{name}: {e}") from None
            if kasp is None:
                raise SignerError(f"{name} holds no KASP database (kasp.db): not a backup of an "
                                  "OpenDNSSEC signer, so the enforcer could not be restored")
            with tempfile.TemporaryDirectory(dir=self.config.state_dir) as t:
                db = Path(t) / "kasp.db"
                db.write_bytes(kasp)
                summary, known = database_summary(db), known_locators(db)
            lacking = sorted(set(known) - {k["locator"] for k in op["keys"]})
            if lacking:
                raise SignerError(f"{name}: its KASP database names {len(lacking)} key(s) its "
                                  f"token lacks ({', '.join(lacking[:5])})")
            op["kasp_db"] = {"sha256": sha256_hex(kasp), **summary}
            self._refuse_restore(op)
            return op

    def read_output(self, name: str) -> bytes:
        return self._outputs.read(name)

    def read_output_chunk(self, name: str, offset: int, length: int) -> tuple[int, bytes]:
        return self._outputs.read_chunk(name, offset, length)

    def plan_kek(self, threshold: int, holders: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """Refused: OpenDNSSEC makes its keys CKA_EXTRACTABLE=false, so no key of this signer
        can leave wrapped and a backup KEK would back nothing up."""
        raise SignerError(_NO_WRAP)

    def share_key(self) -> str:
        """Refused, as plan_kek: this backend has no wrap backup to bring shares to."""
        raise SignerError(_NO_WRAP)

    def restore_drill(self, name: str, password: str | None = None,
                      shares: Sequence[str] | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
        """Restore backup `name` into a scratch token and compare it with the live one, as
        Pkcs11Signer does, but through OpenDNSSEC's own eyes: `ods-hsmutil` lists the restored
        token with this installation's conf.xml (same repository, label and PIN) pointed at the
        scratch token. The backup's KASP database must also name only keys the restored token
        holds: restored together, the enforcer would otherwise manage keys that are not there."""
        if shares is not None or password is None:
            raise SignerError(f"{_NO_WRAP}; its restore drill takes the backup's password")
        say = progress or (lambda done, total, what: None)
        archive = self._outputs.path(name)
        with self._lock, tempfile.TemporaryDirectory(prefix="restore-drill-",
                                                     dir=self.config.state_dir) as t:
            say(0, 3, f"restore drill: restoring {name} into a scratch token")
            try:
                restored = restore_backup(archive, password, Path(t) / "token")
            except BackupError as e:
                raise SignerError(f"restore drill: {e}") from None
            say(1, 3, "restore drill: listing the restored token with ods-hsmutil")
            conf = restored.softhsm2_conf
            restored_inv = parse_hsmutil_list(self._hsmutil("list", self.ods.repository,
                                                            softhsm2_conf=conf),
                                              self.ods.repository)
            restored_fp = self._fingerprint(conf)
            kasp = Path(t) / "kasp.db"
            if "kasp.db" not in restored.extra:
                raise SignerError(f"restore drill: {name} holds no KASP database (kasp.db)")
            kasp.write_bytes(restored.extra["kasp.db"])
            enforcer_keys = known_locators(kasp)
            say(2, 3, "restore drill: listing the live HSM")
            live_fp, live_inv = self.fingerprint(), self.inventory()
        result = compare(live_inv, restored_inv, live_fp, restored_fp)
        on_token = {k.locator for k in restored_inv.keys}
        result["kasp_keys"] = len(enforcer_keys)
        result["kasp_missing"] = sorted(set(enforcer_keys) - on_token)
        result["match"] = result["match"] and not result["kasp_missing"]
        say(3, 3, f"restore drill: {result['restored']} of {result['live']} keys restored")
        return {"file": name, **result}

    def close(self) -> None:
        """Nothing stays open between calls (every tool is a short-lived process)."""

    # -- inside -----------------------------------------------------------------------------

    def _run_tool(self, args: list[str], timeout: float = 120,
                  softhsm2_conf: Path | None = None) -> str:
        """Run one of OpenDNSSEC's tools on this signer's token (or the one `softhsm2_conf`
        names: the restore drill's scratch token)."""
        conf = softhsm2_conf or self.config.softhsm2_conf
        try:
            p = subprocess.run(args, env=child_env(conf), text=True,
                               capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SignerError(f"{args[0]} {' '.join(args[3:])}: {e}") from None
        if p.returncode != 0:
            said = " / ".join(line for line in (p.stderr + p.stdout).splitlines()[-4:] if line)
            raise SignerError(f"{args[0]} {' '.join(args[3:])} failed ({p.returncode}): {said}")
        return p.stdout

    def _hsmutil(self, *args: str, softhsm2_conf: Path | None = None) -> str:
        """ods-hsmutil only reads here; while the enforcer writes to the token it was seen to
        fail now and then (exit 255 after printing "0 keys found."), so it is tried 10 times
        over about 3 s."""
        for attempt in range(10):
            try:
                return self._run_tool([self.config.hsmutil, "-c", str(self.config.conf), *args],
                                      softhsm2_conf=softhsm2_conf)
            except SignerError:
                if attempt == 9:
                    raise
                time.sleep(0.3)
        raise AssertionError("unreachable")

    def _enforcer(self, *args: str) -> str:
        return self._run_tool([self.config.enforcer, "-s", str(self.socket), *args])

    def _locators(self) -> frozenset[str]:
        return frozenset(k.locator for k in self.inventory().keys)

    def _precheck(self, op: dict[str, Any]) -> None:
        if op["op"] == "generate":
            fresh = self.plan_generate(_declared(op), op["duration"])
            if fresh["batches"] != op["batches"]:
                raise SignerError("the enforcer's figures changed since planning (zones, pool "
                                  "or policies): plan the generation again")
        elif op["op"] == "purge":
            dead = {loc for _z, loc in self.dead_keys()}
            alive = [k for k in op["delete"] if k not in dead]
            if alive:
                raise SignerError(f"refusing to delete keys the enforcer does not call dead: "
                                  f"{', '.join(alive)}")
        elif op["op"] == "restore":
            self._refuse_restore(op)
        else:
            self._outputs.refuse_existing(op["file"])

    def _refuse_restore(self, op: dict[str, Any]) -> None:
        """A restore replaces the token and the enforcer's database: refused if either holds a
        key the backup lacks (it would be lost), or if the backup is of another repository."""
        if op["repository"] != self.ods.repository:
            raise SignerError(f"the backup is of repository {op['repository']!r}; this signer's "
                              f"conf.xml names {self.ods.repository!r} (a standby is configured "
                              "as its primary's twin: repository, token label and PINs)")
        refuse_foreign(self._locators(), op["keys"])
        lost = sorted(set(known_locators(self.ods.datastore)) - {k["locator"] for k in op["keys"]})
        if lost:
            raise SignerError(f"the enforcer's KASP database records {len(lost)} key(s) the "
                              f"backup does not hold ({', '.join(lost[:5])}): not restoring "
                              "over them")

    def _run(self, op: dict[str, Any], digest: str, status: OperationStatus,
             progress: Progress | None, secrets: dict[str, str]) -> dict[str, Any]:
        assert status.before is not None
        if op["op"] == "generate":
            return self._generate(op, digest, status.before, progress)
        if op["op"] == "purge":
            return self._purge(op, status.before, progress)
        if op["op"] == "restore":
            return self._restore(op, digest, status.before, secrets["password"], progress)
        return self._backup(op, digest, secrets["password"])

    def _journaled(self, digest: str, event: str) -> bool:
        return any(e.get("digest") == digest and e.get("event") == event
                   for e in self._journal.entries())

    def _scheduled(self, digest: str) -> bool:
        return self._journaled(digest, "scheduled")

    def _generate(self, op: dict[str, Any], digest: str, before: Sequence[str],
                  progress: Progress | None) -> dict[str, Any]:
        total = sum(b["count"] for b in op["batches"])
        start = set(before)
        # Schedule once: `scheduling` is journaled before the enforcer is asked, `scheduled`
        # after it accepted. A crash in between leaves `scheduling` alone: the retry looks in
        # the enforcer's database for its work first (asked again at once, the enforcer, whose
        # task has made nothing yet, would generate a second time; and listing the token while
        # it writes fails). Keys already on the token since `before` also prove an earlier
        # attempt scheduled it (a journal of an older shim, with no `scheduling` line).
        if total and not self._scheduled(digest):
            if self._journaled(digest, "scheduling") and self._enforcer_took(start):
                pass  # accepted before the crash: its keys are waited for below
            elif not set(self._locators()) - start:
                self._journal.append(digest, "scheduling")
                self._enforcer("key", "generate", "--duration", op["duration"], "--all")
                crashpoints.hit("shim:generate:enforcer_accepted")  # test-only
            self._journal.append(digest, "scheduled")
        after = self._wait_for(start, total, progress)
        added_l, removed = sorted(after - start), sorted(start - after)
        if removed:
            raise SignerError(f"{len(removed)} keys vanished during generation: "
                              f"{', '.join(removed)}")
        if len(added_l) != total:
            raise SignerError(f"the enforcer made {len(added_l)} keys, the plan said {total}")
        known = known_locators(self.ods.datastore)
        policies = {b["policy"] for b in op["batches"]}
        strangers = [k for k in added_l if known.get(k) not in policies]
        if strangers:
            raise SignerError(f"keys appeared that the enforcer does not hold for the planned "
                              f"policies: {', '.join(strangers)}")
        return {"generated": added_l, "before": len(start), "after": len(after),
                "added": len(added_l), "removed": 0,
                "public_keys": self._public_keys(added_l)}

    def _enforcer_took(self, start: set[str]) -> bool:
        """Whether a `key generate` asked before a crash was accepted: its keys appear in the
        enforcer's database within `ACCEPT_GRACE_SECONDS` (its task runs at once on an idle
        enforcer). False: nothing came, so the request never reached it (the crash was between
        `scheduling` and the command) and it is asked now."""
        deadline = time.monotonic() + ACCEPT_GRACE_SECONDS
        while True:
            try:
                if set(known_locators(self.ods.datastore)) - start:
                    return True
            except sqlite3.Error:  # the enforcer holds the database for a write: it works
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)

    def _public_keys(self, locators: Sequence[str]) -> list[dict[str, Any]]:
        """Each new key's public key (SubjectPublicKeyInfo DER, base64, read over PKCS#11 as
        `_key_listing` reads it) with what the enforcer knows of it: role, DNSSEC algorithm
        and, where one is certain, the zone whose DNSKEY it will be (docs/signer.md)."""
        if not locators:
            return []
        known = _enforcer_roles(self.ods.datastore)
        worker = WorkerClient(self.ods.module, self.config.softhsm2_conf, self.ods.token_label,
                              self.ods.pin, log_path=self.config.state_dir / "worker.log")
        try:
            spki = worker.call("public_keys", {"locators": list(locators)})
        finally:
            worker.close()
        out = []
        for loc in sorted(locators):
            entry: dict[str, Any] = {"locator": loc, "spki": spki[loc]}
            entry.update(known.get(loc, {}))
            out.append(entry)
        return out

    def _wait_for(self, start: set[str], total: int, progress: Progress | None) -> set[str]:
        """Wait until the enforcer has recorded `total` new keys in its database (and the count
        held for one more poll), then list the token once.

        Progress is read from the KASP database, not from the token: `ods-hsmutil` logs in to
        SoftHSM, and a login writes the token object, which collides with the enforcer's own
        writes (seen: every listing failing for minutes once it happened under load)."""
        deadline = time.monotonic() + self.config.timeout_seconds
        last: set[str] | None = None
        while True:
            try:
                made = set(known_locators(self.ods.datastore)) - start
            except sqlite3.Error:  # the enforcer holds the database for a write
                made = None
            if made is not None:
                n = len(made)
                if progress is not None:
                    progress(min(n, total), total, f"generated {min(n, total)} of {total} keys")
                if n > total:
                    raise SignerError(f"the enforcer made {n} keys, the plan said {total}")
                if n == total and made == last:
                    break
                last = made
            if time.monotonic() > deadline:
                raise SignerError(f"the enforcer made {len(last or ())} of {total} keys in "
                                  f"{self.config.timeout}; execute again to keep waiting")
            time.sleep(POLL_SECONDS)
        now: set[str] = set()
        for attempt in range(LIST_ATTEMPTS):  # the enforcer may still be closing its session
            try:
                now = set(self._locators())
            except SignerError:
                if attempt == LIST_ATTEMPTS - 1:
                    raise
            else:
                if len(now - start) >= total:
                    break
            time.sleep(POLL_SECONDS)
        return now

    def _purge(self, op: dict[str, Any], before: Sequence[str],
               progress: Progress | None) -> dict[str, Any]:
        delete = list(op["delete"])
        planned = set(delete)
        present = self._locators()
        dead = self.dead_keys()
        zones = sorted({z for z, loc in dead if loc in planned and loc in present})
        for zone in zones:
            # `key purge` deletes every dead key of the zone: refuse if any is not planned.
            extra = sorted(loc for z, loc in dead if z == zone and loc not in planned
                           and loc in present)
            if extra:
                raise SignerError(f"zone {zone} has dead keys the plan does not name: "
                                  f"{', '.join(extra)}; plan the purge again")
        for zone in zones:
            self._enforcer("key", "purge", "--zone", zone, "--delete")
        if progress is not None:
            progress(len(delete), len(delete), f"deleted {len(delete)} keys")
        after = self._locators()
        planning.check_purged(before, after, delete)
        return {"deleted": delete, "before": len(before), "after": len(after)}

    def _keystate(self) -> bytes:
        """The enforcer's view in our key-state format, for readers of the backup: zones per
        policy from its database, keys with the enforcer's state names (keys in states we do
        not name are left out: kasp.db beside it is the complete record)."""
        kasp = policy_keys(self.ods.datastore)
        policy_of = known_locators(self.ods.datastore)
        types = {k.locator: k.type for k in self.inventory().keys}
        roles = {(p.policy, p.role): p for p in kasp}
        zones: dict[str, set[str]] = {}
        records: dict[str, KeyRecord] = {}
        for k in self.enforcer_keys():
            policy = policy_of.get(k.locator)
            if policy is None:
                continue
            zones.setdefault(policy, set()).add(k.zone)
            alg = types.get(k.locator) or (roles.get((policy, k.role)) or kasp[0]).algorithm
            if k.state in STATES:
                records[k.locator] = KeyRecord(locator=k.locator, policy=policy, role=k.role,
                                               algorithm=alg, state=k.state, zone=k.zone)
        state = KeyState({p: tuple(sorted(z)) for p, z in zones.items()}, records)
        return state.to_json()

    def _backup(self, op: dict[str, Any], digest: str, password: str) -> dict[str, Any]:
        def build() -> bytes:
            with tempfile.TemporaryDirectory(dir=self.config.state_dir) as tmp:
                kasp_db = copy_database(self.ods.datastore, Path(tmp) / "kasp.db")
            return build_archive(
                name=op["file"], operation=digest, token=op["token"],
                repository=self.ods.repository,
                tokendir=read_tokendir(self.config.softhsm2_conf), keystate=self._keystate(),
                inventory=self.inventory().render(), password=password,
                extra={"kasp.db": kasp_db,
                       "keys.json": json.dumps(self._key_listing(), indent=1).encode()},
            )

        return self._outputs.write_backup(op["file"], digest, build)

    def _key_listing(self, softhsm2_conf: Path | None = None) -> list[dict[str, Any]]:
        """Each key's locator, label, type and public key's SHA-256 (DER), read over PKCS#11
        with conf.xml's module, label and PIN exactly as Pkcs11Signer reads them, so that
        `keys.json` (and a restore plan's digests) mean the same for both backends."""
        conf = softhsm2_conf or self.config.softhsm2_conf
        worker = WorkerClient(self.ods.module, conf, self.ods.token_label, self.ods.pin,
                              log_path=self.config.state_dir / "worker.log")
        try:
            audit = worker.call("audit")
            return [{"locator": loc, "label": a.get("label"), "type": a.get("type"),
                     "public_key_sha256": hashlib.sha256(base64.b64decode(
                         worker.call("public_key", {"locator": loc})["der"])).hexdigest()}
                    for loc, a in sorted(audit.items())]
        finally:
            worker.close()

    def _restore(self, op: dict[str, Any], digest: str, before: Sequence[str], password: str,
                 progress: Progress | None) -> dict[str, Any]:
        """Restore the backup's token and KASP database. Decrypted and checked in a scratch
        directory first (`_unpack_checked`: a wrong password stops there, nothing live touched);
        then, with the enforcer stopped, the token directory and the database are put in place
        (each stage redone or skipped from what is on disk) and the enforcer started again;
        `restored` is journaled; then the inventory diff against `before` and the enforcer's
        view are checked. A rerun before `restored` puts both in place again; after it, only
        starts the enforcer if it is down and checks."""
        say = progress or (lambda done, total, what: None)
        planned, name = op["keys"], op["file"]
        work = self.config.state_dir / f"restore-{digest[:16]}"
        if not self._journaled(digest, "restored"):
            if not (work / "verified").exists():
                say(0, 5, f"restore: decrypting {name} into a scratch token")
                self._unpack_checked(op, password, work)
            say(2, 5, "restore: stopping the enforcer; putting the backup's token and KASP "
                      "database in place")
            stop_enforcer(self.ods.pidfile, self.socket)
            _swap_tokens(read_tokendir(self.config.softhsm2_conf), work / "scratch" / "tokens",
                         work / "replaced")
            _put_database(work / "kasp.db", self.ods.datastore, work / "replaced-kasp")
            say(3, 5, "restore: starting the enforcer")
            self._start_enforcer()
            self._journal.append(digest, "restored")
        else:
            self._start_enforcer()
        say(4, 5, "restore: listing the token and the enforcer's keys")
        after = self._locators()
        added = check_restored(before, after, planned)
        fingerprint = self.fingerprint()
        if fingerprint != op["backup_token"]:
            raise SignerError(f"restore: the token is {fingerprint}, not the backup's "
                              f"{op['backup_token']}")
        kasp = set(known_locators(self.ods.datastore))
        listed = {k.locator for k in self.enforcer_keys()}
        strangers = sorted((kasp | listed) - set(after))
        if strangers:
            raise SignerError(f"restore: the enforcer names {len(strangers)} key(s) the token "
                              f"lacks: {', '.join(strangers[:5])}")
        if len(kasp) != op["kasp_db"]["keys"]:
            raise SignerError(f"restore: the enforcer's database holds {len(kasp)} keys, the "
                              f"backup's {op['kasp_db']['keys']}")
        shutil.rmtree(work, ignore_errors=True)
        say(5, 5, f"restore: {len(planned)} keys restored")
        return {"file": name, "restored": len(planned), "before": len(before),
                "after": len(after), "added": len(added), "removed": 0,
                "fingerprint": fingerprint, "kasp_keys": len(kasp), "enforcer_keys": len(listed)}

    def _start_enforcer(self) -> None:
        start_enforcer(self.config.enforcerd or "ods-enforcerd", self.config.conf,
                       self.config.softhsm2_conf, self.socket, pidfile=self.ods.pidfile)

    def _unpack_checked(self, op: dict[str, Any], password: str, work: Path) -> None:
        """Decrypt the backup into `work/scratch` and its database into `work/kasp.db`, then
        mark `work/verified` only if the scratch token opens with this conf.xml (repository,
        label, PIN), is the backup's token and holds exactly the planned keys (ods-hsmutil's
        listing, and type and public key over PKCS#11), and the database is the planned one.
        Anything wrong removes `work`: nothing live was touched."""
        archive = self._inputs.read(op["file"], op["sha256"])
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            (work / op["file"]).write_bytes(archive)
            try:
                restored = restore_backup(work / op["file"], password, work / "scratch")
            except BackupError as e:
                raise SignerError(f"restore: {e}; nothing was restored") from None
            kasp = restored.extra.get("kasp.db")
            if kasp is None or sha256_hex(kasp) != op["kasp_db"]["sha256"]:
                raise SignerError("restore: the backup's KASP database is not the planned one; "
                                  "nothing was restored")
            conf = restored.softhsm2_conf
            try:
                fingerprint = self._fingerprint(conf)
                listed = parse_hsmutil_list(self._hsmutil("list", self.ods.repository,
                                                          softhsm2_conf=conf),
                                            self.ods.repository)
                got = {k["locator"]: (k["type"], k["public_key_sha256"])
                       for k in self._key_listing(conf)}
            except SignerError as e:
                raise SignerError(f"restore: the backup's token does not open with this "
                                  f"signer's conf.xml ({e}); nothing was restored") from None
            if fingerprint != op["backup_token"]:
                raise SignerError(f"restore: the backup holds token {fingerprint}, the plan "
                                  f"says {op['backup_token']}; nothing was restored")
            wrong = restored_difference(op["keys"], got)
            if wrong is None and {k.locator for k in listed.keys} != set(got):
                wrong = "lists other keys with ods-hsmutil than over PKCS#11"
            if wrong:
                raise SignerError(f"restore: the decrypted backup {wrong}; nothing was restored")
            staged = work / "kasp.db.part"
            staged.write_bytes(kasp)
            staged.rename(work / "kasp.db")
            (work / "verified").touch()
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise


def check_operation(op: Mapping[str, Any], token: str) -> None:
    """Purge and backup have Pkcs11Signer's shapes; a generation holds counts, not locators;
    a restore is Pkcs11Signer's plus `kasp_db`."""
    if op.get("op") == "restore":
        _check_kasp_db(op.get("kasp_db"))
        planning.check_operation({k: v for k, v in op.items() if k != "kasp_db"}, token)
        return
    if op.get("op") != "generate":
        planning.check_operation(op, token)
        return
    shape = {"op", "token", "duration", "batches"}
    if set(op) != shape:
        raise SignerError(f"generate operation must have exactly the keys {sorted(shape)}")
    if op["token"] != token:
        raise SignerError(f"generate operation is for token {op['token']}, this token is {token}")
    parse_duration(op["duration"])
    if not isinstance(op["batches"], list):
        raise SignerError("generate operation: batches must be a list")
    for i, b in enumerate(op["batches"]):
        if not isinstance(b, Mapping) or set(b) != _GEN_BATCH:
            raise SignerError(f"generate operation: batches[{i}] must have keys "
                              f"{sorted(_GEN_BATCH)}")
        if type(b["count"]) is not int or b["count"] < 0:
            raise SignerError(f"generate operation: batches[{i}].count must be a count")


def _check_kasp_db(value: Any) -> None:
    """A restore operation's `kasp_db`: the database's SHA-256, its key and zone counts, its
    policies' names."""
    if not isinstance(value, Mapping) or set(value) != _KASP_DB:
        raise SignerError(f"restore operation: kasp_db must have keys {sorted(_KASP_DB)} (the "
                          "OpenDNSSEC backend restores the KASP database too)")
    if not isinstance(value["sha256"], str) or not _HEX64.fullmatch(value["sha256"]):
        raise SignerError("restore operation: kasp_db.sha256 must be 64 lower-case hex digits")
    for f in ("keys", "zones"):
        if type(value[f]) is not int or value[f] < 0:
            raise SignerError(f"restore operation: kasp_db.{f} must be a count")
    if not isinstance(value["policies"], list) or not all(isinstance(p, str)
                                                          for p in value["policies"]):
        raise SignerError("restore operation: kasp_db.policies must be a list of names")


def _put_database(source: Path, datastore: Path, aside: Path) -> None:
    """Put the KASP database `source` in place of `datastore`, the enforcer stopped, so that a
    crash anywhere is finished by calling again: the old database and its SQLite side files
    (a stale `-journal` or `-wal` would be applied to the new one) are moved `aside` once (then
    the marker `aside/.done`); the copy is written beside the target, synced, given the old
    file's mode (and owner, as root), and renamed over it."""
    sides = [datastore.with_name(datastore.name + s) for s in ("-journal", "-wal", "-shm")]
    if not (aside / ".done").exists():
        aside.mkdir(parents=True, exist_ok=True)
        for p in (datastore, *sides):
            if p.exists():
                shutil.move(str(p), str(aside / p.name))
        (aside / ".done").touch()
    for p in sides:  # of a database an earlier attempt put in place and the enforcer then wrote
        p.unlink(missing_ok=True)
    staged = datastore.with_name(f".restore-{datastore.name}")
    shutil.copyfile(source, staged)
    old = aside / datastore.name
    if old.exists():
        shutil.copymode(old, staged)
        if os.geteuid() == 0:
            st = old.stat()
            os.chown(staged, st.st_uid, st.st_gid)
    with open(staged, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(staged, datastore)


def _declared(op: Mapping[str, Any]) -> list[PolicyKeys]:
    return [PolicyKeys(b["policy"], b["role"], b["algorithm"], b["lifetime_seconds"])
            for b in op["batches"]]


def _approval_dict(a: Approval | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(a, Approval):
        return a.to_dict()
    try:
        return Approval.from_dict(dict(a)).to_dict()
    except (KeyError, TypeError, ValueError) as e:
        raise SignerError(f"an approval is malformed: {e!r}") from None


__all__ = ["OdsSigner", "check_operation", "enforcer_count", "parse_hsmutil_list"]


def _enforcer_roles(db: Path) -> dict[str, dict[str, Any]]:
    """locator -> role (KSK, ZSK, CSK), dnssec_algorithm and zone, from the KASP database
    (read-only). The zone is the one the enforcer assigned the key to; a pool key not yet
    assigned gets its policy's zone when the policy has exactly one (the enforcer gives a
    policy's keys only to its zones), and none otherwise: no owner name is guessed."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as c:
        rows = c.execute(
            "SELECT h.locator, h.role, h.algorithm,"
            " (SELECT GROUP_CONCAT(DISTINCT z.name) FROM keyData k JOIN zone z"
            "   ON z.id = k.zoneId WHERE k.hsmKeyId = h.id),"
            " (SELECT GROUP_CONCAT(z.name) FROM zone z WHERE z.policyId = h.policyId)"
            " FROM hsmKey h").fetchall()
    out: dict[str, dict[str, Any]] = {}
    for loc, role, alg, assigned, zones in rows:
        entry: dict[str, Any] = {"role": ROLES.get(role, str(role)), "dnssec_algorithm": int(alg)}
        names = (assigned or zones or "").split(",")
        if len(names) == 1 and names[0]:
            entry["zone"] = names[0]
        out[str(loc)] = entry
    return out
