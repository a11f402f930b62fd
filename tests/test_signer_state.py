"""The signer's files: key state, operation journal, config, host key, exclusive outputs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from keyrite.files import partial_name, write_atomic, write_exclusive
from signer_shim.config import ConfigError, SignerConfig
from signer_shim.hostkey import ensure_host_key, host_key_fingerprint, host_key_md5
from signer_shim.keystate import KeyRecord, KeyState, KeyStateError, load_keystate, save_keystate
from signer_shim.operation_journal import OperationJournal, operation_status


def rec(i: int, state: str = "generate", zone: str | None = None) -> KeyRecord:
    return KeyRecord(locator=f"{i:032x}", policy="p", role="KSK", algorithm="RSA/2048",
                     state=state, zone=zone)


def test_keystate_round_trip_and_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "keystate.json"
    assert load_keystate(path) == KeyState()
    state = KeyState({"p": ("a.example", "b.example")}, {r.locator: r for r in
                                                         (rec(1), rec(2, "dead", "a.example"))})
    save_keystate(path, state)
    assert load_keystate(path) == state
    assert [p.name for p in tmp_path.iterdir()] == ["keystate.json"]  # no temp left behind
    assert state.dead() == [f"{2:032x}"] and state.zone_count("p") == 2


def test_keystate_is_read_strictly(tmp_path: Path) -> None:
    doc = json.loads(KeyState({"p": ()}, {rec(1).locator: rec(1)}).to_json())
    doc["keys"][0]["colour"] = "blue"
    with pytest.raises(KeyStateError, match=r"keys\[0\]: unknown keys \['colour'\]"):
        KeyState.from_json(json.dumps(doc).encode())
    doc["keys"][0].pop("colour")
    doc["keys"][0]["state"] = "zombie"
    with pytest.raises(KeyStateError, match="zombie"):
        KeyState.from_json(json.dumps(doc).encode())
    with pytest.raises(KeyStateError, match="locator"):
        rec(1).__class__(locator="XYZ", policy="p", role="KSK", algorithm="RSA/2048",
                         state="dead")


def test_keystate_updates() -> None:
    state = KeyState({}, {rec(1).locator: rec(1)})
    assert state.with_keys([rec(1)]) == state  # re-adding the same record changes nothing
    with pytest.raises(KeyStateError, match="already recorded"):
        state.with_keys([rec(1, "active", "a.example")])
    assert state.with_state([rec(1).locator], "purged").keys[rec(1).locator].state == "purged"
    with pytest.raises(KeyStateError, match="not in the key state"):
        state.with_state([rec(9).locator], "dead")


def test_journal_fold_and_torn_line(tmp_path: Path) -> None:
    j = OperationJournal(tmp_path / "ops.jsonl")
    j.append("d1", "received", operation={"op": "purge"}, approvals=[])
    j.append("d1", "started", before=["a", "b"])
    j.append("d2", "received", operation={}, approvals=[])
    j.append("d1", "failed", error="worker died")
    s = j.status("d1")
    assert s.received and s.started and not s.finished and s.before == ("a", "b")
    assert s.error == "worker died"
    with open(j.path, "ab") as f:  # a crash in the middle of an append
        f.write(b'{"digest":"d1","event":"fini')
    assert j.status("d1").before == ("a", "b")
    j.append("d1", "started", before=["c"])  # a retry: `before` stays the first one
    j.append("d1", "finished", result={"deleted": []})
    s = j.status("d1")
    assert s.finished and s.result == {"deleted": []} and s.before == ("a", "b")
    assert s.error is None
    assert not operation_status(j.entries(), "d3").received


def config(tmp_path: Path) -> SignerConfig:
    return SignerConfig(name="standby", role="standby", module=Path("/usr/lib/x.so"),
                        softhsm2_conf=tmp_path / "softhsm2.conf", token_label="tok",
                        user_pin="s3cret-pin", state_dir=tmp_path / "state",
                        host_key_path=tmp_path / "hostkey")


def test_config_round_trip_keeps_the_pin_out_of_repr(tmp_path: Path) -> None:
    c = config(tmp_path)
    path = c.save(tmp_path / "signer.toml")
    assert SignerConfig.load(path) == c
    assert "s3cret-pin" not in repr(c)
    assert os.stat(path).st_mode & 0o777 == 0o600
    rel = path.read_text().replace(str(tmp_path / "state"), "state")
    (tmp_path / "rel.toml").write_text(rel)
    assert SignerConfig.load(tmp_path / "rel.toml").state_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t + "\ncolour = 'blue'\n", "unknown key pkcs11.colour"),
        (lambda t: t.replace('token_label = "tok"\n', ""), "pkcs11.token_label is required"),
        (lambda t: t + "\n[extra]\n", r"unknown section \[extra\]"),
        (lambda t: t.replace('role = "standby"', "role = 3"), "signer.role must be"),
        (lambda t: t + "\n[[", "signer.toml"),
    ],
)
def test_config_is_read_strictly(tmp_path: Path, edit, message: str) -> None:
    path = config(tmp_path).save(tmp_path / "signer.toml")
    path.write_text(edit(path.read_text()))
    with pytest.raises(ConfigError, match=message):
        SignerConfig.load(path)


def test_host_key_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path) -> None:
    key = ensure_host_key(tmp_path / "ssh_host_ed25519_key")
    assert ensure_host_key(key) == key  # a second call keeps the key
    out = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True,
                         check=True).stdout.split()
    assert host_key_fingerprint(key) == out[1]
    md5 = subprocess.run(["ssh-keygen", "-E", "md5", "-lf", str(key)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert host_key_md5(key) == md5[1]
    assert os.stat(key).st_mode & 0o777 == 0o600


def test_write_exclusive_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    Path(partial_name(out)).write_bytes(b"left by a crash")
    write_exclusive(out, b"one")
    assert out.read_bytes() == b"one" and not Path(partial_name(out)).exists()
    with pytest.raises(FileExistsError):
        write_exclusive(out, b"two")
    assert out.read_bytes() == b"one"
    write_atomic(tmp_path / "state", b"a")
    write_atomic(tmp_path / "state", b"b")
    assert (tmp_path / "state").read_bytes() == b"b"
