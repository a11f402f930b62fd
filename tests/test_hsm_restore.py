"""hsm.restore in the machine and the loader: planned off the drive the backup comes back on,
approved by two different KSOs over the exact key list, executed with the password its actor
types; one KSO approving twice, a mistyped password and a restore that reads a drive not yet
plugged in (or names no declared password) are refused. The real restore on SoftHSM2 is
tests/test_hsm_restore_softhsm.py."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.script.load import load_script_text
from ceremony.script.model import Script
from coordinator.rehearsal.signer_link import authority_for
from tests.machine_helpers import (
    approval,
    drive,
    refused,
    roster,
    send,
    start,
)

RESTORE = Path(__file__).parent / "scripts" / "restore.toml"
OP = {"op": "restore", "token": "d34d-ba64-0c1e-77a2-9f10-4b3c-aa01-5e6f-1234-abcd",
      "file": "key-backup-2026-12-01.tar.gz", "sha256": "ab" * 32,
      "backup_token": "1111-2222-3333-4444-5555-6666-7777-8888-9999-0000",
      "repository": "rehearsal",
      "keys": [{"locator": f"{i:032x}", "label": f"{i:032x}", "type": "ECDSA/P-256",
                "public_key_sha256": f"{i:064x}"} for i in range(1, 4)]}


@functools.cache
def script() -> Script:
    return load_script_text(RESTORE.read_text(), str(RESTORE))


def planned(m, w) -> None:  # type: ignore[no-untyped-def]
    """Run to the restore's plan and answer it with OP."""
    drive(m, w, before=lambda x: isinstance(x, d.Plan))
    want = m.wants(now=w.now)[0]
    assert isinstance(want, d.Plan) and want.action == "hsm.restore"
    assert want.step == 4 and want.params == {"signer": "standby", "drive": "master-copy",
                                              "file": None}
    send(m, w, ev.OperationPlanned(at=w.at(), step=4, operation=OP))


def test_planned_approved_by_two_kso_then_executed_with_the_password() -> None:
    m, w = start(script(), {})
    planned(m, w)
    want = m.wants(now=w.now)[0]
    assert isinstance(want, d.RequestApproval)
    assert (want.role, want.need, want.operation) == ("KSO", 2, OP)
    drive(m, w, before=lambda x: isinstance(x, d.Execute))
    ex = m.wants(now=w.now)[0]
    assert isinstance(ex, d.Execute) and ex.operation == OP and ex.secrets == ("device-backup",)
    assert len({a.key for a in ex.approvals}) == 2
    ask = m.password_asked(w.now)
    assert ask is not None and (ask.step, ask.names, ask.actor) == (4, ("device-backup",), "SA")
    send(m, w, ev.PasswordEntered(at=w.at(), seat="SA1", step=4, name="device-backup",
                                  purpose="backup"))
    drive(m, w)
    assert m.status == "completed" and 4 in m.completed


def test_one_kso_approving_twice_is_refused_and_nothing_starts() -> None:
    m, w = start(script(), {})
    planned(m, w)
    drive(m, w, until=4)  # the quorum step took KSO1's approval
    want = m.wants(now=w.now)[0]
    assert isinstance(want, d.RequestApproval) and want.have == 1
    digest = want.digest
    again = ev.Approve(at=w.at(), seat="KSO1", approval=approval(w, "KSO1", 4, digest, 120,
                                                                    at=w.now))
    refused(m, again, "2 different people")
    refused(m, ev.OperationStarted(at=w.at(), step=4, digest=digest), "1 of 2")
    assert not any(isinstance(x, d.Execute) for x in m.wants(now=w.now))


def test_a_mistyped_password_is_refused_before_the_restore_starts() -> None:
    m, w = start(script(), {})
    planned(m, w)
    drive(m, w, before=lambda x: isinstance(x, d.Execute))
    refused(m, ev.PasswordEntered(at=w.at(), seat="SA1", step=4, name="device-backup",
                                  purpose="backup", verified=False), "not the pre-generated")
    refused(m, ev.PasswordEntered(at=w.at(), seat="KSO1", step=4, name="device-backup",
                                  purpose="backup"), "the SA enters")
    assert 4 not in m._state.started


def test_the_signer_accepts_restore_at_its_step_under_the_scripts_quorum() -> None:
    rules = authority_for(script(), roster()).rules
    assert [(r.op, r.step, r.quorums) for r in rules] == [("restore", 4, (("KSO", 2),))]


def _errors(text: str) -> list[str]:
    from ceremony.script.errors import ScriptErrors

    with pytest.raises(ScriptErrors) as e:
        load_script_text(text, "restore.toml")
    return [x.message for x in e.value.errors]


def test_the_loader_wants_a_declared_drive_plugged_in_before_the_plan() -> None:
    text = RESTORE.read_text()
    late = text.replace('n = 2\nactor = "SA"\naction = "drive.insert"',
                        'n = 2\nactor = "SA"\naction = "acknowledge"').replace(
        'drive = "master-copy"\ntext = "SA plugs', 'text = "SA plugs')
    assert any("drive 'master-copy' is used before it is plugged in" in x and "step 3" in x
               for x in _errors(late))
    assert _errors(text.replace('source = "drive:master-copy"', 'source = "drive:nowhere"')) \
        == ["'nowhere' is not a declared drive (expected one of master-copy)"]
    assert any("hsm.restore reads its backup off a drive" in x
               for x in _errors(text.replace('source = "drive:master-copy"',
                                             'source = "backup"')))


def test_the_loader_wants_a_known_password_and_a_quorum() -> None:
    text = RESTORE.read_text()
    errors = _errors(text.replace('password = "device-backup"', 'password = "typo"'))
    assert any("'typo' is not the password of any hsm.backup step nor declared in "
               "[[passwords]]" in x for x in errors)
    errors = _errors(text.replace('password = "device-backup"\n', ''))
    assert any("hsm.restore needs what opens the backup: a `password` (a token-directory "
               "backup) or `shares`" in x and "neither is given" in x for x in errors)
    errors = _errors(text.replace('quorum = "restore"\ntext = "SA restores', 'text = "SA restores'))
    assert any("requires 'quorum'" in x for x in errors)


def test_an_approver_is_shown_every_key_of_the_restore() -> None:
    from consoles.screen import operation_lines

    lines = "\n".join(operation_lines(OP))
    assert "3 keys" in lines and OP["backup_token"] in lines and OP["sha256"] in lines
    for k in OP["keys"]:
        assert f"{k['locator']} ECDSA/P-256 label {k['label']} public key sha256 " \
               f"{k['public_key_sha256']}" in lines


def _put(data: str, **over: object) -> bytes:
    import json

    params = {"name": "key-backup-2026-12-01.tar.gz", "offset": 0, "size": 10,
              "sha256": "ab" * 32, "data": data, **over}
    return json.dumps({"v": 1, "id": "r1", "key": "k1", "method": "put_input",
                       "params": params}).encode()


def test_a_handed_over_chunk_is_base64_and_bounded_on_the_wire() -> None:
    import base64

    from signer_shim import protocol

    assert protocol.parse_request(_put(base64.b64encode(b"x" * 10).decode())).params["size"] == 10
    for line, words in ((_put("not base64!"), "base64"),
                        (_put(base64.b64encode(b"x" * (protocol.INPUT_CHUNK + 1)).decode()),
                         "at most"),
                        (_put("", offset=-1), "negative")):
        with pytest.raises(protocol.ProtocolError, match=words) as e:
            protocol.parse_request(line)
        assert e.value.type == "BadRequest"


def test_inputs_take_chunks_in_order_and_only_the_announced_file(tmp_path: Path) -> None:
    import hashlib

    from signer_shim.inputs import Inputs
    from signer_shim.interface import SignerError
    from signer_shim.restore import MAX_BACKUP

    inputs, name, data = Inputs(tmp_path), "key-backup-2026-12-01.tar.gz", b"0123456789"
    sha = hashlib.sha256(data).hexdigest()
    assert inputs.put(name, data[:4], 0, 10, sha)["received"] == 4
    with pytest.raises(SignerError, match="at offset 8, but 4 bytes are in"):
        inputs.put(name, data[8:], 8, 10, sha)
    with pytest.raises(SignerError, match="not been handed"):
        inputs.read(name, sha)
    assert inputs.put(name, data[4:], 4, 10, sha)["received"] == 10
    assert inputs.read(name, sha) == data
    with pytest.raises(SignerError, match="not the file planned"):
        inputs.read(name, "00" * 32)
    with pytest.raises(SignerError, match="another SHA-256"):
        inputs.put(name, b"9876543210", 0, 10, sha)
    assert inputs.read(name, sha) == data  # what was there stays
    for bad, words in (({"name": "../x.tar.gz"}, "not a backup file name"),
                       ({"size": MAX_BACKUP + 1}, "a backup to restore is 1 to"),
                       ({"sha256": "xyz"}, "64 lower-case hex")):
        args = {"name": name, "data": b"", "offset": 0, "size": 10, "sha256": sha, **bad}
        with pytest.raises(SignerError, match=words):
            inputs.put(**args)  # type: ignore[arg-type]
