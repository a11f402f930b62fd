"""Backups on a real token: round trip, `sha256sum -c`, never overwriting, crash recovery,
restore into a separate token directory whose keys still sign, wrong password refused."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ceremony.durations import MONTH, YEAR
from keyrite.files import partial_name
from signer_shim.backup import BackupError, restore_backup
from signer_shim.config import SignerConfig
from signer_shim.interface import PolicyKeys, SignerError
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.workerclient import WorkerClient
from staging.fixture import RehearsalToken, seed_rehearsal_token

PASSWORD = "correct horse battery staple"
#: one RSA and one ECDSA policy key, so the restore drill signs with both mechanisms
MIXED = (
    PolicyKeys(policy="default", role="KSK", algorithm="RSA/2048", lifetime_seconds=YEAR),
    PolicyKeys(policy="default", role="ZSK", algorithm="ECDSA/P-256", lifetime_seconds=3 * MONTH),
)


@pytest.fixture
def mixed(tmp_path: Path) -> RehearsalToken:
    return seed_rehearsal_token(tmp_path / "rehearsal", MIXED, shape="small")


def backup(rt: RehearsalToken, date: str = "2012-05-01") -> tuple[dict, dict]:
    with Pkcs11Signer(rt.config) as s:
        op = s.plan_backup(date)
        return op, s.execute(op, [], secrets={"password": PASSWORD})


def test_backup_writes_archive_and_a_checksum_sha256sum_accepts(mixed: RehearsalToken) -> None:
    op, result = backup(mixed)
    out = mixed.config.outputs_dir
    assert op["file"] == result["file"] == "key-backup-2012-05-01.tar.gz"
    data = (out / result["file"]).read_bytes()
    assert result["sha256"] == hashlib.sha256(data).hexdigest() and result["size"] == len(data)
    assert result["sha256sum_file"] == "key-backup-2012-05-01.tar.gz.sha256sum"
    check = subprocess.run(["sha256sum", "-c", result["sha256sum_file"]], cwd=out,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout == "key-backup-2012-05-01.tar.gz: OK\n"
    with Pkcs11Signer(mixed.config) as s:
        assert s.read_output(result["file"]) == data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(tar.getnames())
        manifest = json.loads(tar.extractfile("key-backup-2012-05-01/manifest.json").read())
        listed = json.loads(tar.extractfile("key-backup-2012-05-01/keys.json").read())
    assert names == sorted(f"key-backup-2012-05-01/{m}" for m in
                           ("manifest.json", "token.tar.enc", "keystate.json", "inventory.txt",
                            "keys.json"))
    with Pkcs11Signer(mixed.config) as s:  # keys.json: what a restore's plan lists, in clear
        assert [(k["locator"], k["type"]) for k in listed] == \
            [(k.locator, k.type) for k in s.inventory().keys]
        assert all(k["public_key_sha256"] == hashlib.sha256(s.public_key_der(k["locator"]))
                   .hexdigest() and k["label"] == k["locator"] for k in listed)
    assert manifest["kdf"]["name"] == "scrypt" and manifest["kdf"]["n"] >= 2**14
    assert manifest["cipher"]["name"] == "AES-256-GCM"
    assert manifest["token"] == op["token"]
    for secret in (PASSWORD, mixed.config.user_pin):
        assert secret.encode() not in data
        assert secret not in mixed.config.journal_path.read_text()


def test_backup_never_overwrites(mixed: RehearsalToken) -> None:
    op, result = backup(mixed)
    with Pkcs11Signer(mixed.config) as s:
        with pytest.raises(SignerError, match="already exists"):
            s.plan_backup("2012-05-01")
        assert s.execute(op, [], secrets={"password": PASSWORD}) == result  # finished: same
        # a file of the same name that is not this operation's is never replaced
        op2 = s.plan_backup("2012-05-02")
        stranger = mixed.config.outputs_dir / op2["file"]
        stranger.write_bytes(b"someone else's file")
        with pytest.raises(SignerError, match="already exists"):
            s.execute(op2, [], secrets={"password": PASSWORD})
        assert stranger.read_bytes() == b"someone else's file"


def test_backup_needs_the_password_and_journals_nothing_without_it(mixed: RehearsalToken) -> None:
    with Pkcs11Signer(mixed.config) as s:
        op = s.plan_backup("2012-05-01")
        with pytest.raises(SignerError, match="password"):
            s.execute(op, [])
    assert not mixed.config.journal_path.exists()
    assert list(mixed.config.outputs_dir.iterdir()) == []


def drop_finished(rt: RehearsalToken) -> None:
    """As if the signer died just before journaling the operation as finished."""
    path = rt.config.journal_path
    lines = path.read_text().splitlines(keepends=True)
    assert '"finished"' in lines[-1]
    path.write_text("".join(lines[:-1]))


def test_retry_after_a_crash_returns_the_complete_backup(mixed: RehearsalToken) -> None:
    op, first = backup(mixed)
    out = mixed.config.outputs_dir
    drop_finished(mixed)
    (out / first["sha256sum_file"]).unlink()  # died between the archive and its checksum
    with Pkcs11Signer(mixed.config) as s:
        again = s.execute(op, [], secrets={"password": PASSWORD})
    assert again == first
    assert subprocess.run(["sha256sum", "-c", first["sha256sum_file"]], cwd=out).returncode == 0


def test_retry_after_a_crash_redoes_a_partial_backup(mixed: RehearsalToken) -> None:
    op, first = backup(mixed)
    out = mixed.config.outputs_dir
    drop_finished(mixed)
    archive = out / first["file"]
    archive.rename(partial_name(archive))  # died while writing: only the temporary exists
    (out / first["sha256sum_file"]).unlink()
    with Pkcs11Signer(mixed.config) as s:
        again = s.execute(op, [], secrets={"password": PASSWORD})
    assert again["file"] == first["file"] and again["sha256"] != first["sha256"]  # new salt
    assert not Path(partial_name(archive)).exists()
    assert sorted(p.name for p in out.iterdir()) == [first["file"], first["sha256sum_file"]]
    assert subprocess.run(["sha256sum", "-c", first["sha256sum_file"]], cwd=out).returncode == 0


def test_restore_gives_the_same_token_and_keys_that_sign(mixed: RehearsalToken,
                                                          tmp_path: Path) -> None:
    with Pkcs11Signer(mixed.config) as s:
        fingerprint, inventory = s.fingerprint(), s.inventory()
        public = {k.locator: s.public_key_der(k.locator) for k in inventory.keys}
    _, result = backup(mixed)
    restored = restore_backup(mixed.config.outputs_dir / result["file"], PASSWORD,
                              tmp_path / "drill")
    assert restored.tokendir != mixed.token.tokendir
    assert restored.inventory == inventory.render()
    cfg = SignerConfig(name="drill", role="drill", module=mixed.config.module,
                       softhsm2_conf=restored.softhsm2_conf, token_label=mixed.config.token_label,
                       user_pin=mixed.config.user_pin, state_dir=tmp_path / "drill-state",
                       host_key_path=tmp_path / "none")
    message = b"keyrite restore drill"
    with Pkcs11Signer(cfg) as drill:
        assert drill.fingerprint() == fingerprint
        assert drill.inventory() == inventory
        types = {k.type for k in inventory.keys}
        assert types == {"RSA/2048", "ECDSA/P-256"}
        for k in inventory.keys:
            pub = load_der_public_key(public[k.locator])
            if k.type == "RSA/2048":
                sig = drill.sign(k.locator, message, "SHA256_RSA_PKCS")
                assert isinstance(pub, rsa.RSAPublicKey)
                pub.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                digest = hashlib.sha256(message).digest()
                raw = drill.sign(k.locator, digest, "ECDSA")
                assert isinstance(pub, ec.EllipticCurvePublicKey)
                der = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                           int.from_bytes(raw[32:], "big"))
                pub.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    # the restored token still enforces its PIN
    with pytest.raises(SignerError, match="PinIncorrect"):
        WorkerClient(cfg.module, cfg.softhsm2_conf, cfg.token_label, "wrong-pin")
    with pytest.raises(BackupError, match="already exists"):
        restore_backup(mixed.config.outputs_dir / result["file"], PASSWORD, tmp_path / "drill")


def test_restore_refuses_a_wrong_password_or_a_weakened_manifest(mixed: RehearsalToken,
                                                                  tmp_path: Path) -> None:
    _, result = backup(mixed)
    archive = mixed.config.outputs_dir / result["file"]
    with pytest.raises(BackupError, match="wrong backup password"):
        restore_backup(archive, "not the password", tmp_path / "a")
    assert not (tmp_path / "a" / "tokens").exists()

    # edit the manifest to a cheaper KDF (and fix its own digests): decryption must fail
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    name = next(n for n in members if n.endswith("manifest.json"))

    def forge(edit, target: str) -> None:
        manifest = json.loads(members[name])
        edit(manifest)
        forged_members = {**members, name: json.dumps(manifest).encode()}
        forged = tmp_path / f"{target}.tar.gz"
        with tarfile.open(forged, "w:gz") as tar:
            for n, data in forged_members.items():
                info = tarfile.TarInfo(n)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        with pytest.raises(BackupError, match="wrong backup password"):
            restore_backup(forged, PASSWORD, tmp_path / target)

    forge(lambda m: m["kdf"].update(n=2**10), "cheaper-kdf")
    # the same key, another token claimed: only the GCM associated data catches it
    forge(lambda m: m.update(token="0000-0000-0000-0000-0000-0000-0000-0000-0000-0000"),
          "other-token")
    forge(lambda m: m["kdf"].update(note="x"), "extra-kdf-field")


def test_no_worker_runs_beside_the_password_kdf(mixed: RehearsalToken,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The backup password's scrypt (128 MiB) runs with the signer's idle worker ended, in a
    backup and in a restore drill: the two at once were the signer's peak memory
    (docs/performance.md). The next HSM call starts a worker again."""
    import os

    import signer_shim.backup as backup_module

    real, workers = backup_module._derive, []

    def derive(password: str, kdf: dict) -> bytes:
        try:
            os.kill(workers[-1], 0)
            alive = True
        except ProcessLookupError:
            alive = False
        workers.append(alive)
        return real(password, kdf)

    monkeypatch.setattr(backup_module, "_derive", derive)
    with Pkcs11Signer(mixed.config) as s:
        workers.append(s.worker_pid)
        op = s.plan_backup("2012-05-01")
        s.execute(op, [], secrets={"password": PASSWORD})
        assert workers[1:] == [False]
        workers.append(s.worker_pid)
        assert workers[2] != workers[0] and s.inventory().keys  # a worker again
        s.restore_drill(op["file"], PASSWORD)
        assert workers[3:] == [False]
