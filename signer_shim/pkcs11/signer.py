"""`Pkcs11Signer`: the signer side of the ceremony, in the caller's process, over one worker.

What it adds to the worker: the pure planning rules (signer_shim.planning), the key-state source,
the operation journal and the outputs directory. Every operation is checked against this token
before anything happens, journaled before the first device call, and its effect proved by an
inventory diff before it is recorded as finished. The shim (signer_shim.server) serves it over
SSH; tests and the fixture use it directly.

Resource handling: the worker is spawned on first use and again if it has died (so a caller can
retry after a crash without rebuilding the signer); `close()` ends it. Calls are serialised by
one lock, as the HSM is: planning and executing never interleave.

Error handling: everything that goes wrong reaches the caller as a SignerError with a message for
the officers; an execute that fails is journaled as failed, and executing the same operation
again reconciles against the token from where it stopped.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, final

from ceremony.approval import Approval
from ceremony.digests import operation_digest
from ceremony.durations import parse_duration
from keyrite import sealing
from keyrite.files import write_atomic, write_exclusive
from signer_shim import planning, wrap
from signer_shim.backup import BackupError, build_archive, restore_backup
from signer_shim.config import SignerConfig
from signer_shim.drill import compare
from signer_shim.hostkey import signer_info
from signer_shim.inputs import Inputs
from signer_shim.interface import Inventory, PolicyKeys, Progress, SignerError
from signer_shim.keystate import KeyState, load_keystate, save_keystate
from signer_shim.operation_journal import OperationJournal, OperationStatus, execute_once
from signer_shim.outputs import Outputs
from signer_shim.pkcs11 import pool, profiles
from signer_shim.pkcs11.inventory import (
    TokenContents,
    contents_from_objects,
    key_problems,
    wrap_judged,
)
from signer_shim.pkcs11.softhsm import create_token, read_tokendir
from signer_shim.pkcs11.workerclient import WorkerClient
from signer_shim.restore import (
    check_restored,
    plan_restore,
    refuse_foreign,
    restored_difference,
)


@final
class Pkcs11Signer:
    """Implements `signer_shim.interface.Signer` over a SoftHSM2 (or other PKCS#11) token."""

    def __init__(self, config: SignerConfig) -> None:
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        config.outputs_dir.mkdir(exist_ok=True)
        self._journal = OperationJournal(config.journal_path)
        self._outputs = Outputs(config.outputs_dir)
        self._inputs = Inputs(config.state_dir / "inputs")
        self._lock = threading.RLock()
        self._worker: WorkerClient | None = None
        self._profile: profiles.TokenProfile | None = None

    @classmethod
    def from_file(cls, path: Path) -> Pkcs11Signer:
        """A signer from its TOML config file (signer_shim.config)."""
        return cls(SignerConfig.load(path))

    def __repr__(self) -> str:
        return f"<Pkcs11Signer {self.config.name} token={self.config.token_label!r}>"

    def __enter__(self) -> Pkcs11Signer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Signer protocol ----------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        c = self.config
        return signer_info(c.name, c.role, c.host_key_path, "pkcs11", c.token_label)

    def fingerprint(self) -> str:
        t = self._call("token_info")
        return self._profile_of(t).fingerprint(t)

    @property
    def profile(self) -> profiles.TokenProfile:
        """What this token can do (signer_shim.pkcs11.profiles), chosen once per signer."""
        with self._lock:
            return self._profile or self._profile_of(self._call("token_info"))

    def _profile_of(self, info: Mapping[str, Any]) -> profiles.TokenProfile:
        if self._profile is None:
            self._profile = profiles.select(self.config.profile, info)
        return self._profile

    def inventory(self) -> Inventory:
        return self._contents().inventory

    def plan_purge(self) -> dict[str, Any]:
        with self._lock:
            return planning.plan_purge(self.fingerprint(), self._keystate(),
                                       self._contents().locators)

    def plan_generate(self, keys: Sequence[PolicyKeys], duration: str) -> dict[str, Any]:
        """The cap (`max_keys_per_operation`) is checked from the key state before the token
        is touched, and again on the exact count before any locator is drawn."""
        with self._lock:
            self.profile.refuse_algorithms(k.algorithm for k in keys)
            state, cap = self._keystate(), self.config.max_keys_per_operation
            planning.check_generate_size(keys, parse_duration(duration).seconds, state, cap)
            return planning.plan_generate(self.fingerprint(), keys, duration, state,
                                          self._contents().locators, cap=cap)

    def plan_backup(self, date: str) -> dict[str, Any]:
        with self._lock:
            self._refuse_backup_method("a backup")
            return self._outputs.plan_backup(self.fingerprint(), date)

    def put_input(self, name: str, data: bytes, offset: int, size: int,
                  sha256: str) -> dict[str, Any]:
        """A chunk of a backup to restore, handed over by the coordinator (signer_shim.inputs)."""
        return self._inputs.put(name, data, offset, size, sha256)

    def plan_restore(self, name: str, sha256: str) -> dict[str, Any]:
        """The restore of the handed-over backup `name` onto this token: every key it holds
        (signer_shim.restore). Refused here already if the backup is of a token another label
        names, or if this token holds a key the backup lacks."""
        with self._lock:
            if self.config.backup_method != "wrap":  # refused before the file is looked at
                self.profile.refuse_backup("a restore")
            archive = self._inputs.read(name, sha256)
            if wrap.is_wrap_archive(archive):  # method "wrap", its kek, and our share key
                self._refuse_wrap_restore()
                op = plan_restore(self.fingerprint(), name, archive, wrap_ok=True)
                op["share_key"] = self.share_key()
            else:
                self.profile.refuse_backup("a restore")
                op = plan_restore(self.fingerprint(), name, archive)
            self._refuse_restore(op, self._contents())
            return op

    def plan_kek(self, threshold: int, holders: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """The backup KEK's creation, the first ceremony's step under the wrap method:
        {"op": "kek", "token", "threshold", "holders": [{"seat", "key"}]}, share i sealed to
        holder i's Curve25519 key when executed. Refused unless this signer's method is wrap,
        its SO PIN is configured, the token can wrap, and it has no KEK yet."""
        with self._lock:
            self._refuse_kek()
            return planning.plan_kek(self.fingerprint(), threshold, holders)

    def share_key(self) -> str:
        """This signer's share key (Curve25519, Z85): the KSOs' consoles seal the shares they
        bring to a wrap restore or drill to it, for `sealing.share_context(kek_id, "signer")`.
        Made on first use, kept in `state_dir/share-key.json` (0600)."""
        with self._lock:
            return self._share_pair()[0]

    def execute(
        self,
        operation: Mapping[str, Any],
        approvals: Sequence[Approval],
        progress: Progress | None = None,
        *,
        secrets: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Carry out a planned operation once, whatever happened before.

        `secrets` holds what must never be journaled or shown: {"password": ...} for a backup,
        {"shares": [box, ...]} for the restore of a wrap backup (the KSOs' shares sealed to
        `share_key()`). A finished operation returns its recorded result; a started one is
        reconciled.
        """
        op = dict(operation)
        secrets = dict(secrets or {})
        with self._lock:
            digest = operation_digest(op) if isinstance(op.get("op"), str) else ""
            if op.get("op") == "restore" and self._journal.status(digest).started:
                # the token is the backup's now, or between the two: judged by `_restore`
                planning.check_operation(op, str(op.get("token")))
            else:
                planning.check_operation(op, self.fingerprint())
            unwrap = op["op"] == "restore" and op.get("method") == "wrap"
            if op["op"] == "backup" and self.config.backup_method == "wrap":
                self._refuse_backup_method("a backup")
            elif op["op"] == "kek":
                self._refuse_kek(exists=False)  # a KEK already made is judged by `_make_kek`
            elif unwrap:
                self._refuse_wrap_restore()
            elif op["op"] in ("backup", "restore"):
                self.profile.refuse_backup(f"a {op['op']}")
            wrapped = op["op"] == "backup" and self.config.backup_method == "wrap"
            if (op["op"] in ("backup", "restore") and not wrapped and not unwrap
                    and not secrets.get("password")):
                raise SignerError(f"a {op['op']} needs the device-backup password "
                                  "(secrets['password'])")
            digest = operation_digest(op)
            mnemonics: list[str] = []
            if unwrap and not self._journal.status(digest).finished:
                mnemonics = self._open_shares(op["kek"], secrets.get("shares"))
            listed: list[TokenContents] = []

            def start() -> frozenset[str]:
                listed.append(self._contents())
                self._precheck(op, listed[0])
                return listed[0].locators

            def run(status: OperationStatus) -> dict[str, Any]:
                if op["op"] == "kek":
                    return self._make_kek(op, digest, resumed=not listed)
                if unwrap:
                    assert status.before is not None
                    return self._wrap_restore(op, status.before, mnemonics, progress)
                if op["op"] == "restore":  # the token may be half replaced: nothing to list
                    assert status.before is not None
                    return self._restore(op, digest, status.before, secrets["password"],
                                         progress)
                contents = listed[0] if listed else self._contents()
                return self._run(op, digest, status, contents, progress, secrets)

            return execute_once(self._journal, op, digest,
                                [_approval_dict(a) for a in approvals], start=start, run=run)

    def read_output(self, name: str) -> bytes:
        return self._outputs.read(name)

    def read_output_chunk(self, name: str, offset: int, length: int) -> tuple[int, bytes]:
        return self._outputs.read_chunk(name, offset, length)

    def restore_drill(self, name: str, password: str | None = None,
                      shares: Sequence[str] | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
        """Restore backup `name` into a scratch token beside this signer's state and compare
        what it holds with the live token (see `drill.compare`). The scratch token is removed
        afterwards; the live token is only read. A token-directory backup takes its
        `password`; a wrap backup takes `shares`, the KSOs' boxes sealed to `share_key()`
        (then `wrap_restore_drill`, its scratch token's SO PIN a fresh random one)."""
        if (password is None) == (shares is None):
            raise SignerError("a restore drill takes either the backup's password or the "
                              "KSOs' shares, not both or neither")
        if shares is not None:
            try:
                kek = wrap.read_archive(self._outputs.read(name)).manifest["kek"]
            except SignerError as e:
                raise SignerError(f"restore drill with shares: {name} is not a wrap backup "
                                  f"({e})") from None
            with self._lock:
                mnemonics = self._open_shares(kek, shares)
            return self.wrap_restore_drill(name, mnemonics, os.urandom(16).hex(), progress)
        assert password is not None
        say = progress or (lambda done, total, what: None)
        self.profile.refuse_backup("a restore drill")
        archive = self._outputs.path(name)
        with tempfile.TemporaryDirectory(prefix="restore-drill-", dir=self.config.state_dir) as t:
            scratch = Path(t)
            say(0, 3, f"restore drill: restoring {name} into a scratch token")
            self._close_for_kdf()
            try:
                restored = restore_backup(archive, password, scratch / "token")
            except BackupError as e:
                raise SignerError(f"restore drill: {e}") from None
            cfg = replace(self.config, name=f"{self.config.name}-drill", role="drill",
                          softhsm2_conf=restored.softhsm2_conf, state_dir=scratch / "state",
                          workers=1)
            say(1, 3, "restore drill: listing the restored token")
            with Pkcs11Signer(cfg) as drill:
                restored_fp, restored_inv = drill.fingerprint(), drill.inventory()
            say(2, 3, "restore drill: listing the live HSM")
            live_fp, live_inv = self.fingerprint(), self.inventory()
        result = compare(live_inv, restored_inv, live_fp, restored_fp)
        say(3, 3, f"restore drill: {result['restored']} of {result['live']} keys restored")
        return {"file": name, **result}

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.close()
                self._worker = None

    def _close_for_kdf(self) -> None:
        """End the idle worker before the backup password's scrypt (128 MiB, backup.py): the
        two at once were the signer's peak memory. The next HSM call starts a new worker, once
        per backup, restore or drill: small beside the KDF's own time."""
        self.close()

    # -- beyond the protocol: for the restore drill and the tests -------------------------

    @property
    def worker_pid(self) -> int:
        """The worker's process id (spawning it if need be)."""
        return self._client().pid

    def sign(self, locator: str, data: bytes, mechanism: str) -> bytes:
        """Sign with a key on the token: `SHA256_RSA_PKCS` over data, or `ECDSA` over a digest."""
        data, mechanism = self.profile.sign_request(data, mechanism)
        r = self._call("sign", {"locator": locator, "data": base64.b64encode(data).decode(),
                                "mechanism": mechanism})
        return base64.b64decode(r["signature"])

    def key_attributes(self, locator: str) -> dict[str, Any]:
        """sensitive, extractable, always_sensitive, never_extractable, local, private, sign,
        label, token, type (and public_exponent for RSA) of one key pair."""
        return dict(self._call("key_attributes", {"locator": locator}))

    def public_key_der(self, locator: str) -> bytes:
        return base64.b64decode(self._call("public_key", {"locator": locator})["der"])

    # -- inside -----------------------------------------------------------------------------

    def _client(self) -> WorkerClient:
        with self._lock:
            if self._worker is None or not self._worker.alive:
                if self._worker is not None:
                    self._worker.close()
                self._worker = self._spawn()
            return self._worker

    def _spawn(self) -> WorkerClient:
        """A further worker on the same token, for one generate spread over processes."""
        c = self.config
        client = WorkerClient(c.module, c.softhsm2_conf, c.token_label, c.user_pin,
                              log_path=c.worker_log, launcher=c.launcher)
        if c.backup_method == "wrap":  # keys it makes: extractable, but only wrapped
            try:
                client.call("key_template", {"method": "wrap"})
            except BaseException:
                client.close()
                raise
        return client

    def _call(self, method: str, params: dict[str, Any] | None = None,
              progress: Progress | None = None) -> Any:
        with self._lock:
            return self._client().call(method, params, progress)

    def _contents(self) -> TokenContents:
        return contents_from_objects(self.config.token_label, self._call("list_objects"))

    def _keystate(self) -> KeyState:
        return load_keystate(self.config.keystate_path)

    def _precheck(self, op: dict[str, Any], contents: TokenContents) -> None:
        """Refusals that only make sense before the first attempt touches the token."""
        if op["op"] == "generate":
            known = contents.locators | contents.halves | set(self._keystate().keys)
            taken = sorted(k.locator for k in planning.planned_keys(op) if k.locator in known)
            if taken:
                raise SignerError(f"planned locators already in use: {', '.join(taken)}")
        elif op["op"] == "purge":
            dead = set(self._keystate().dead())
            alive = [k for k in op["delete"] if k not in dead]
            if alive:
                raise SignerError(f"refusing to delete keys the key state does not call dead: "
                                  f"{', '.join(alive)}")
        elif op["op"] == "restore":
            self._refuse_restore(op, contents)
        elif op["op"] == "kek":
            self._refuse_kek()
        else:
            self._outputs.refuse_existing(op["file"])

    def _refuse_restore(self, op: dict[str, Any], contents: TokenContents) -> None:
        label = self.config.token_label
        if op["repository"] != label:
            raise SignerError(f"the backup is of token {op['repository']!r}; this signer's token "
                              f"is {label!r} (its pkcs11.token_label must name the backup's "
                              "token, whose label and PINs a restore brings back)")
        refuse_foreign(contents.locators | contents.halves, op["keys"])
        mine = {k for k, r in self._keystate().keys.items() if r.state != "purged"}
        lost = sorted(mine - {k["locator"] for k in op["keys"]})
        if lost:
            raise SignerError(f"this signer's key state records {len(lost)} key(s) the backup "
                              f"does not hold ({', '.join(lost[:5])}): not restoring over them")

    def _run(self, op: dict[str, Any], digest: str, status: OperationStatus,
             contents: TokenContents, progress: Progress | None,
             secrets: dict[str, str]) -> dict[str, Any]:
        assert status.before is not None
        if op["op"] == "generate":
            return self._generate(op, status.before, contents, progress)
        if op["op"] == "purge":
            return self._purge(op, status.before, contents, progress)
        if self.config.backup_method == "wrap":
            return self._wrap_backup(op, digest, progress)
        return self._backup(op, digest, secrets["password"], progress)

    def _generate(self, op: dict[str, Any], before: Sequence[str], contents: TokenContents,
                  progress: Progress | None) -> dict[str, Any]:
        planned = planning.planned_keys(op)
        todo = planning.generation_todo(planned, contents.locators, contents.halves)
        if todo.repair:
            self._call("destroy", {"locators": list(todo.repair)})
        total, offset = len(planned), len(todo.present)

        def relay(done: int, _total: int, _what: str) -> None:
            if progress is not None:
                n = offset + done
                progress(n, total, f"generated {n} of {total} keys")

        keys = [{"locator": k.locator, "algorithm": k.algorithm} for k in todo.create]
        pooled = min(self.config.workers, len(keys)) > 1
        if pooled:
            pool.generate(self._spawn, keys, self.config.workers,
                          lambda n, t: relay(n, t, ""))
        elif keys:
            self._call("generate", {"keys": keys}, relay)
        after = self._contents().locators
        added = planning.check_generated(before, after, [k.locator for k in planned])
        if pooled:
            self._audit_generated(todo.create)
        save_keystate(self.config.keystate_path,
                      self._keystate().with_keys(k.record() for k in planned))
        return {"generated": sorted(k.locator for k in planned), "before": len(before),
                "after": len(after), "added": len(added), "removed": 0,
                "public_keys": self._public_keys(planned)}

    def _public_keys(self, planned: Sequence[planning.PlannedKey]) -> list[dict[str, Any]]:
        """Each new key's public key (SubjectPublicKeyInfo DER, base64) and type, for the
        ceremony's journal and the Key Gen Log drive (docs/signer.md). A pool key has no zone
        yet, so no role is claimed for it: it is published as PEM only."""
        spki = self._call("public_keys", {"locators": [k.locator for k in planned]})
        return [{"locator": k.locator, "algorithm": k.algorithm, "spki": spki[k.locator]}
                for k in sorted(planned, key=lambda k: k.locator)]

    def _audit_generated(self, made: Sequence[planning.PlannedKey]) -> None:
        """The per-key check the pool's helpers could not make (they write blind), made now
        that all writing is over, from the main worker: it did not write meanwhile, so its
        session re-reads the token (tests/test_signer_pool.py). Keys that fail are deleted,
        so executing again remakes them."""
        audit = self._call("audit", {"locators": [k.locator for k in made]})
        audit = self._wrap_audited(audit)
        bad = {k.locator: key_problems(audit.get(k.locator, {}), k.locator, k.algorithm)
               for k in made}
        bad = {loc: wrong for loc, wrong in bad.items() if wrong}
        if bad:
            self._call("destroy", {"locators": sorted(bad)})
            loc, wrong = sorted(bad.items())[0]
            raise SignerError(f"{len(bad)} generated keys were not as asked and were deleted, "
                              f"e.g. {loc}: {', '.join(wrong)}")

    def _purge(self, op: dict[str, Any], before: Sequence[str], contents: TokenContents,
               progress: Progress | None) -> dict[str, Any]:
        delete = list(op["delete"])
        there = [k for k in delete if k in contents.locators or k in contents.halves]
        if there:
            self._call("destroy", {"locators": there})
        if progress is not None:
            progress(len(delete), len(delete), f"deleted {len(delete)} keys")
        after = self._contents().locators
        planning.check_purged(before, after, delete)
        save_keystate(self.config.keystate_path, self._keystate().with_state(delete, "purged"))
        return {"deleted": delete, "before": len(before), "after": len(after)}

    def _key_listing(self) -> list[dict[str, Any]]:
        """Each key's locator, label, type and public key's SHA-256 (DER): `keys.json` of a
        backup, what a restore's plan lists and checks the restored keys against."""
        audit = self._call("audit")
        return [{"locator": loc, "label": a.get("label"), "type": a.get("type"),
                 "public_key_sha256": hashlib.sha256(self.public_key_der(loc)).hexdigest()}
                for loc, a in sorted(audit.items())]

    def _restore(self, op: dict[str, Any], digest: str, before: Sequence[str], password: str,
                 progress: Progress | None) -> dict[str, Any]:
        """Restore the backup onto this token: decrypt it into a scratch token under the state
        directory and check it holds exactly the planned keys (a wrong password stops here,
        the live token untouched); then, with the worker closed, move the live token aside
        and put the backup's in its place; then prove by inventory diff against `before` that
        only the planned keys came. Every stage is redone or skipped from what is on disk, so
        a crash is finished by executing again; a finished restore is recognised by the token
        being the backup's."""
        say = progress or (lambda done, total, what: None)
        planned, name = op["keys"], op["file"]
        work = self.config.state_dir / f"restore-{digest[:16]}"
        if not (work / "verified").exists() and not self._is_restored(op):
            say(0, 4, f"restore: decrypting {name} into a scratch token")
            archive = self._inputs.read(name, op["sha256"])
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            archive_path = work / name
            archive_path.write_bytes(archive)
            self._close_for_kdf()
            try:
                restored = restore_backup(archive_path, password, work / "scratch")
            except BackupError as e:
                shutil.rmtree(work, ignore_errors=True)
                raise SignerError(f"restore: {e}; nothing was restored") from None
            say(1, 4, "restore: checking the restored keys against the plan")
            self._check_scratch(op, restored.softhsm2_conf, work)
            save_keystate(work / "keystate.json", KeyState.from_json(restored.keystate))
            (work / "verified").touch()
        if (work / "verified").exists():
            say(2, 4, "restore: putting the backup's token in place")
            self.close()  # no SoftHSM session may hold the token directory while it changes
            _swap_tokens(read_tokendir(self.config.softhsm2_conf), work / "scratch" / "tokens",
                         work / "replaced")
        say(3, 4, "restore: listing the token")
        after = self._contents().locators
        added = check_restored(before, after, planned)
        fingerprint = self.fingerprint()
        if fingerprint != op["backup_token"]:
            raise SignerError(f"restore: the token is {fingerprint}, not the backup's "
                              f"{op['backup_token']}")
        if (work / "keystate.json").exists():
            save_keystate(self.config.keystate_path,
                          KeyState.from_json((work / "keystate.json").read_bytes()))
        shutil.rmtree(work, ignore_errors=True)
        say(4, 4, f"restore: {len(planned)} keys restored")
        return {"file": name, "restored": len(planned), "before": len(before),
                "after": len(after), "added": len(added), "removed": 0,
                "fingerprint": fingerprint}

    def _is_restored(self, op: dict[str, Any]) -> bool:
        """The token is already the backup's: a restore that finished but was not journaled."""
        try:
            return (self.fingerprint() == op["backup_token"] and
                    self._contents().locators == {k["locator"] for k in op["keys"]})
        except SignerError:
            return False

    def _check_scratch(self, op: dict[str, Any], conf: Path, work: Path) -> None:
        """The decrypted token holds exactly the planned keys (type and public key) and is the
        backup's token, opened with this signer's label and PIN as it will be once in place."""
        cfg = replace(self.config, name=f"{self.config.name}-restore", role="restore",
                      softhsm2_conf=conf, state_dir=work / "state", workers=1)
        try:
            with Pkcs11Signer(cfg) as scratch:
                fingerprint = scratch.fingerprint()
                got = {k["locator"]: (k["type"], k["public_key_sha256"])
                       for k in scratch._key_listing()}
        except SignerError as e:
            raise SignerError(f"restore: the backup's token does not open with this signer's "
                              f"label and user PIN ({e}); nothing was restored") from None
        if fingerprint != op["backup_token"]:
            raise SignerError(f"restore: the backup holds token {fingerprint}, the plan says "
                              f"{op['backup_token']}; nothing was restored")
        wrong = restored_difference(op["keys"], got)
        if wrong:
            raise SignerError(f"restore: the decrypted backup {wrong}; nothing was restored")

    def _backup(self, op: dict[str, Any], digest: str, password: str,
                progress: Progress | None = None) -> dict[str, Any]:
        say = progress or (lambda done, total, what: None)

        def build() -> bytes:
            ks = self.config.keystate_path
            inventory = self.inventory().render()
            keys = json.dumps(self._key_listing(), indent=1).encode()
            self._close_for_kdf()
            say(1, 3, f"backup: packing and encrypting the token into {op['file']}")
            return build_archive(
                name=op["file"], operation=digest, token=op["token"],
                repository=self.config.token_label,
                tokendir=read_tokendir(self.config.softhsm2_conf),
                keystate=ks.read_bytes() if ks.exists() else KeyState().to_json(),
                inventory=inventory, password=password, extra={"keys.json": keys},
            )

        say(0, 3, "backup: reading the token")
        result = self._outputs.write_backup(op["file"], digest, build)
        say(3, 3, f"backup: {op['file']} written")
        return result


    # -- the wrap backup (signer_shim.wrap) -----------------------------------------------

    def create_backup_kek(self, so_pin: str, threshold: int, shares: int,
                          before_import: Callable[[wrap.KekShares], None] | None = None
                          ) -> wrap.KekShares:
        """The first ceremony's step under the wrap method: draw the backup KEK, split it
        into `shares` SLIP-39 shares of which `threshold` rebuild it, import it into this
        token as the SO (CKA_TRUSTED), wipe it. The shares are returned once, for the KSOs
        (and handed to `before_import` before the token is touched)."""
        with self._lock:
            self._refuse_wrap("a backup KEK", keys=False)
            if self._kek_id() is not None:
                raise SignerError("this token already holds a keyrite backup KEK")
            made = wrap.create_kek(self._wrap_call, so_pin, self.config.user_pin, threshold,
                                   shares, before_import)
            self._record_kek(made.kek_id, threshold, shares)
            return made

    def restore_wrapped(self, archive: bytes, shares: Sequence[str], so_pin: str,
                        progress: Progress | None = None) -> dict[str, Any]:
        """Restore a wrap backup onto this token with `threshold` KSO shares (signer_shim.wrap
        `restore`): refused, with nothing left behind, for too few shares, a wrong share, or
        keys that are not the backup's. The key state is not touched here (the journaled
        `hsm.restore` of a wrap backup, `execute`, restores it from the archive)."""
        say = progress or (lambda done, total, what: None)
        with self._lock:
            self._refuse_wrap("a restore", keys=False)
            say(0, 1, "restore: unwrapping the backup's keys")
            result = wrap.restore(self._wrap_call, self.sign, archive, shares, so_pin,
                                  self.config.user_pin, self._public_sha256)
            kek = wrap.read_archive(archive).manifest["kek"]
            self._record_kek(kek["id"], kek["threshold"], kek["shares"])
            say(1, 1, f"restore: {len(result['restored'])} keys unwrapped")
            return result

    def wrap_restore_drill(self, name: str, shares: Sequence[str], so_pin: str,
                           progress: Progress | None = None) -> dict[str, Any]:
        """The restore drill of a wrap backup: a scratch SoftHSM2 token beside the state
        directory imports the KEK from the shares and unwraps every key; its keys, types and
        public-key digests are compared with the live token's. The scratch token is removed
        afterwards, whatever happened; the live token is only read. `so_pin` is the scratch
        token's SO PIN to be (it is made here)."""
        say = progress or (lambda done, total, what: None)
        archive = self._outputs.read(name)
        with tempfile.TemporaryDirectory(prefix="wrap-drill-", dir=self.config.state_dir) as t:
            scratch = Path(t)
            say(0, 3, f"restore drill: unwrapping {name} into a scratch token")
            token = create_token(scratch / "token", self.config.token_label, so_pin=so_pin)
            (scratch / "state").mkdir()
            cfg = replace(self.config, name=f"{self.config.name}-drill", role="drill",
                          softhsm2_conf=token.softhsm2_conf, state_dir=scratch / "state",
                          user_pin=token.user_pin, workers=1, profile="softhsm2")
            with Pkcs11Signer(cfg) as drill:
                drill.restore_wrapped(archive, shares, so_pin)
                say(1, 3, "restore drill: listing the restored token")
                restored_inv = drill.inventory()
                restored_keys = {k["locator"]: k for k in drill._key_listing()}
            say(2, 3, "restore drill: listing the live HSM")
            live_inv, live_fp = self.inventory(), self.fingerprint()
            with self._lock:
                live_keys = {k["locator"]: k for k in self._key_listing()}
        result = compare(live_inv, restored_inv, live_fp, live_fp)
        differ = sorted(loc for loc in set(live_keys) & set(restored_keys)
                        if live_keys[loc] != restored_keys[loc])
        result.update(match=result["match"] and not differ, public_keys_differ=differ,
                      method="wrap")
        del result["fingerprint_match"]  # a scratch token is another token by design
        say(3, 3, f"restore drill: {result['restored']} of {result['live']} keys restored")
        return {"file": name, **result}

    # -- the wrap method over the shim: KEK creation, wrap restore (shares as sealed boxes) --

    def _need_so_pin(self, what: str) -> str:
        if not self.config.so_pin:
            raise SignerError(f"{what} imports the backup KEK as the token's SO, and this "
                              "signer's config has no SO PIN (pkcs11.so_pin)")
        return self.config.so_pin

    def _refuse_kek(self, exists: bool = True) -> None:
        """Why no backup KEK may be made here: not the wrap method, no SO PIN, a token that
        cannot wrap, or (`exists`) a KEK this signer already records."""
        if self.config.backup_method != "wrap":
            raise SignerError("a backup KEK is made only under the wrap method; this signer's "
                              f"backup.method is {self.config.backup_method!r}")
        self._need_so_pin("creating the backup KEK")
        self._refuse_wrap("a backup KEK", keys=False)
        if exists and self._kek_record.exists():
            kid = json.loads(self._kek_record.read_text()).get("kek_id")
            raise SignerError(f"this token already has a backup KEK ({kid}, "
                              f"{self._kek_record.name}); a second one is refused")

    def _refuse_wrap_restore(self) -> None:
        if self.config.backup_method != "wrap":
            raise SignerError("a wrap backup is restored only onto a signer whose "
                              "backup.method is \"wrap\" (its keys stay wrappable); this "
                              f"signer's is {self.config.backup_method!r}")
        self._need_so_pin("a wrap restore")
        self._refuse_wrap("a restore", keys=False)

    def _share_pair(self) -> tuple[str, str]:
        """(public, secret) of this signer's share key, made on first use."""
        path = self.config.state_dir / "share-key.json"
        if not path.exists():
            public, secret = sealing.new_pair()
            with contextlib.suppress(FileExistsError):  # made meanwhile: that one holds
                write_exclusive(path, json.dumps({"public": public, "secret": secret}).encode(),
                                mode=0o600)
        doc = json.loads(path.read_text())
        return str(doc["public"]), str(doc["secret"])

    def _open_shares(self, kek: Mapping[str, Any], boxes: Any) -> list[str]:
        """The KSOs' shares from their boxes (sealed to the share key for this KEK), before
        anything touches the token; refused for too few, or for a box that does not open."""
        if not isinstance(boxes, list | tuple) or not boxes:
            raise SignerError("a wrap backup needs the KSOs' KEK shares (secrets['shares']: "
                              "boxes sealed to this signer's share key); nothing was touched")
        need = int(kek["threshold"])
        if len(boxes) > planning.MAX_KEK_SHARES:
            raise SignerError(f"at most {planning.MAX_KEK_SHARES} shares; {len(boxes)} were "
                              "given")
        if len(boxes) < need:
            raise SignerError(f"the backup KEK needs {need} shares; {len(boxes)} were given; "
                              "nothing was touched")
        secret, context = self._share_pair()[1], sealing.share_context(str(kek["id"]), "signer")
        out = []
        for i, box in enumerate(boxes, 1):
            try:
                out.append(sealing.open_sealed(secret, box, context).decode("utf-8"))
            except (sealing.SealError, UnicodeDecodeError):
                raise SignerError(f"share {i} does not open with this signer's share key (or "
                                  f"was sealed for another KEK); nothing was touched") from None
        return out

    def _make_kek(self, op: dict[str, Any], digest: str, resumed: bool) -> dict[str, Any]:
        """Execute a kek operation: create the KEK with the shares sealed to their holders
        (share i to holders[i], context `share_context(kek_id, seat)`) and recorded in
        `state_dir/kek-<digest>.json` *before* the token is touched. Resumed after a crash:
        a KEK on the token with its boxes on record is that result; a KEK this signer records
        without them is refused (its shares are lost); none at all is made afresh."""
        holders, threshold = op["holders"], op["threshold"]
        pending = self.config.state_dir / f"kek-{digest[:16]}.json"
        if resumed:
            rec = json.loads(pending.read_text()) if pending.exists() else None
            if rec is not None and self._call("find_kek", {"kek_id": rec["kek_id"]})["present"]:
                self._record_kek(rec["kek_id"], threshold, len(holders))
                return dict(rec["result"])
            if self._kek_record.exists():
                raise SignerError(
                    "a KEK was made but its shares were not recorded: this token already has "
                    f"a backup KEK ({self._kek_record.name}) and no sealed shares of this "
                    "operation are on record; it is not replaced silently (remove it as the "
                    "SO and make a new one, or back up with the one there)")
        out: dict[str, Any] = {}

        def seal(made: wrap.KekShares) -> None:
            if len(made.shares) != len(holders):
                raise SignerError("kek: one share per holder was not made")
            sealed = [{"seat": h["seat"],
                       "box": sealing.seal(h["key"], m.encode(),
                                           sealing.share_context(made.kek_id, h["seat"]))}
                      for h, m in zip(holders, made.shares, strict=True)]
            out.update(kek_id=made.kek_id, scheme="SLIP-39", threshold=threshold,
                       shares=len(holders), holders=[h["seat"] for h in holders],
                       sealed=sealed)
            write_atomic(pending, json.dumps({"kek_id": made.kek_id, "result": out},
                                             sort_keys=True).encode())

        made = self.create_backup_kek(self._need_so_pin("creating the backup KEK"), threshold,
                                      len(holders), before_import=seal)
        del made  # the mnemonics: only the boxes leave
        return out

    def _wrap_restore(self, op: dict[str, Any], before: Sequence[str], mnemonics: Sequence[str],
                      progress: Progress | None) -> dict[str, Any]:
        """Execute the restore of a wrap backup: `restore_wrapped` (all or nothing), then the
        inventory diff against `before` and the key state from the archive. Resumed after a
        crash: keys of the plan that an earlier attempt left behind are removed first, unless
        the token already holds exactly the planned keys and the KEK (then only the
        bookkeeping is left)."""
        planned, name = op["keys"], op["file"]
        archive = self._inputs.read(name, op["sha256"])
        got = wrap.read_archive(archive)
        kek = got.manifest["kek"]
        if kek["id"] != op["kek"]["id"]:
            raise SignerError(f"restore: {name} is wrapped under KEK {kek['id']}, the plan "
                              f"says {op['kek']['id']}")
        now = self._contents()
        plan_locs = {str(k["locator"]) for k in planned}
        listing = {k["locator"]: (k["type"], k["public_key_sha256"]) for k in self._key_listing()}
        done = (bool(plan_locs) and restored_difference(planned, listing) is None
                and self._call("find_kek", {"kek_id": kek["id"]})["present"])
        imported = False
        if not done:
            leftovers = sorted(((now.locators | now.halves) & plan_locs) - set(before))
            if leftovers:  # an attempt that died half-way: its keys go, then all again
                self._call("destroy", {"locators": leftovers})
            imported = bool(self.restore_wrapped(archive, mnemonics, self.config.so_pin,
                                                 progress)["kek_imported"])
        else:
            self._record_kek(kek["id"], kek["threshold"], kek["shares"])
        after = self._contents().locators
        added = check_restored(before, after, planned)
        save_keystate(self.config.keystate_path, KeyState.from_json(got.keystate))
        return {"file": name, "restored": len(planned), "before": len(before),
                "after": len(after), "added": len(added), "removed": 0,
                "fingerprint": self.fingerprint(), "method": "wrap", "kek_id": kek["id"],
                "kek_imported": imported}

    def _wrap_call(self, method: str, params: dict[str, Any]) -> Any:
        return self._call(method, params)

    def _public_sha256(self, locator: str) -> str:
        return hashlib.sha256(self.public_key_der(locator)).hexdigest()

    @property
    def _kek_record(self) -> Path:
        """`state_dir/backup-kek.json`: the backup KEK's ID and share scheme (no secret)."""
        return self.config.state_dir / "backup-kek.json"

    def _record_kek(self, kek_id: str, threshold: int, shares: int) -> None:
        write_atomic(self._kek_record, json.dumps(
            {"kek_id": kek_id, "scheme": "SLIP-39", "threshold": threshold,
             "shares": shares}, indent=1, sort_keys=True).encode())

    def _kek_id(self) -> str | None:
        """The backup KEK on this token, as `state_dir/backup-kek.json` records it."""
        path = self._kek_record
        if path.exists():
            kid = str(json.loads(path.read_text())["kek_id"])
            return kid if self._call("find_kek", {"kek_id": kid})["present"] else None
        return None

    def _refuse_wrap(self, what: str, keys: bool = True) -> None:
        """Refuse, before anything is approved, a wrap backup the token cannot make: no
        CKM_AES_KEY_WRAP_PAD, trust attributes it rejects, keys that are not extractable."""
        mechanisms = self._call("mechanisms", {})
        listed = self._call("wrappable", {}) if keys else {}
        wrap.refuse_wrap(what, wrap.wrap_problems(
            self.profile.description, mechanisms, self.profile.rejected_attributes, listed))

    def _refuse_backup_method(self, what: str) -> None:
        if self.config.backup_method == "wrap":
            self._refuse_wrap(what)
            if self._kek_id() is None:
                raise SignerError(f"{what} by key wrapping is refused: this token holds no "
                                  "backup KEK yet (create_backup_kek, at the first ceremony)")
        else:
            self.profile.refuse_backup(what)

    def _wrap_audited(self, audit: dict[str, Any]) -> dict[str, Any]:
        """Under the wrap method, the pool's audit judged as the worker judges its own keys:
        extractable is right for a key that is also wrap-with-trusted."""
        if self.config.backup_method != "wrap":
            return audit
        return wrap_judged(audit, self._call("wrappable", {}))

    def _wrap_backup(self, op: dict[str, Any], digest: str,
                     progress: Progress | None) -> dict[str, Any]:
        say = progress or (lambda done, total, what: None)
        kid = self._kek_id()
        if kid is None:
            raise SignerError("a backup by key wrapping needs the backup KEK on the token")
        scheme = json.loads(self._kek_record.read_text())

        def build() -> bytes:
            say(1, 3, f"backup: wrapping every key into {op['file']}")
            wrapped = self._call("wrap_keys", {"kek_id": kid})
            contents, ks = self._contents(), self.config.keystate_path
            return wrap.build_archive(
                name=op["file"], operation=digest, token=self.fingerprint(),
                repository=self.config.token_label, kek_id=kid,
                kek_scheme={k: scheme[k] for k in ("scheme", "threshold", "shares")},
                wrapped=wrapped, keys=self._key_listing(),
                keystate=ks.read_bytes() if ks.exists() else KeyState().to_json(),
                inventory=contents.inventory.render())

        say(0, 3, "backup: reading the token")
        result = self._outputs.write_backup(op["file"], digest, build)
        say(3, 3, f"backup: {op['file']} written")
        return result


def _swap_tokens(tokendir: Path, new_tokens: Path, aside: Path) -> None:
    """Replace what `tokendir` holds with `new_tokens`' token directories, so that a crash
    anywhere is finished by calling again: first everything there is moved `aside` (then the
    marker `aside/.done`), then each new token is copied under a `.restore-` name and renamed
    into place. No SoftHSM process may have the directory open meanwhile."""
    for p in tokendir.iterdir():
        if p.name.startswith(".restore-"):
            shutil.rmtree(p)
    if not (aside / ".done").exists():
        aside.mkdir(parents=True, exist_ok=True)
        for p in sorted(tokendir.iterdir()):
            if (aside / p.name).exists():  # a copy a crash interrupted; the original is here
                shutil.rmtree(aside / p.name)
            shutil.move(str(p), str(aside / p.name))
        (aside / ".done").touch()
    for p in sorted(new_tokens.iterdir()):
        if not (tokendir / p.name).exists():
            staged = tokendir / f".restore-{p.name}"
            shutil.copytree(p, staged)
            staged.rename(tokendir / p.name)


def _approval_dict(a: Approval | Mapping[str, Any]) -> dict[str, Any]:
    """Approvals are recorded as given (checking them is a later issue); a dict must at least
    have an approval's shape."""
    if isinstance(a, Approval):
        return a.to_dict()
    try:
        return Approval.from_dict(dict(a)).to_dict()
    except (KeyError, TypeError, ValueError) as e:
        raise SignerError(f"an approval is malformed: {e!r}") from None
