"""What a ceremony checks against the previous one's record beyond the signer: a drive's serial
(`[[drives]] serial = "previous.KEY"`), a typed value (`record` with `expect`), a file's digest
on a drive (`verify` of `drive.sha256`), and passwords declared on their own (`[[passwords]]`)
so that a bag can be resealed with a copy this ceremony did not write."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ceremony.errors import BadInput
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import Machine
from ceremony.script.errors import ScriptErrors
from ceremony.script.load import load_script_text
from tests.machine_helpers import refused, roster, seal, send, sign_in, start

BASE = (Path(__file__).parent / "scripts" / "unseal.toml").read_text()
LOG = hashlib.sha256(b"last year's journal").hexdigest()
PREVIOUS = {"master_serial": "AA11BB22", "offsite_serial": "TEB20250042", "log_sha256": LOG}


def _script(extra_steps: str, *, previous: str = '["master_serial", "offsite_serial", '
            '"log_sha256"]', drive_serial: str = '"previous.master_serial"',
            passwords: str = "") -> str:
    text = BASE.replace('continues = "Unseal Test, the year before"',
                        f'continues = "Unseal Test, the year before"\nprevious = {previous}')
    text = text.replace('title = "Master Backup Copy"',
                        f'title = "Master Backup Copy"\nserial = {drive_serial}')
    text = text.replace("[[sections]]", passwords + "[[sections]]", 1)
    # the steps after sign-in are replaced by the ones under test
    head = text[: text.index("[[sections.steps]]\nn = 2")]
    return head + extra_steps


RECORD = '''[[sections.steps]]
n = 2
actor = "KGA"
action = "record"
format = "bag-serial"
bag = "offsite"
expect = "previous.offsite_serial"
text = "KGA records the offsite bag's serial, which must be last year's."

[[sections.steps]]
n = 3
actor = "KGA"
action = "drive.insert"
drive = "master-copy"
text = "KGA plugs in last year's Master Copy drive."

[[sections.steps]]
n = 4
actor = "KGA"
action = "verify"
observe = "drive.sha256"
drive = "master-copy"
file = "journal.jsonl"
expect = "previous.log_sha256"
text = "The coordinator reads last year's journal off the drive; its digest must be the record's."
'''


def _machine(text: str) -> tuple[Machine, object]:
    script = load_script_text(text, "continuity.toml")
    m, w = start(script, previous=dict(PREVIOUS))
    send(m, w, sign_in(w, "alice"))
    send(m, w, sign_in(w, "dave"))
    send(m, w, ev.Acknowledge(at=w.at(), seat="KGA1"))
    return m, w


def test_a_drive_serial_pinned_by_the_previous_record() -> None:
    m, _ = _machine(_script(RECORD))
    assert m.drive_pin("master-copy") == "AA11BB22"
    with pytest.raises(ScriptErrors, match="'nope' is not listed in ceremony.previous"):
        load_script_text(_script(RECORD, drive_serial='"previous.nope"'), "x.toml")
    with pytest.raises(ScriptErrors, match="is not a valid usb-serial|previous-ceremony "
                       "reference"):
        load_script_text(_script(RECORD, drive_serial='"previous.Bad Key"'), "x.toml")


def test_a_typed_value_that_differs_from_the_record_stops_the_ceremony() -> None:
    m, w = _machine(_script(RECORD))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB-2025-0043"))
    exc = m.exception
    assert m.status == "exception" and exc is not None and exc["kind"] == "mismatch"
    assert (exc["observed"], exc["expected"]) == ("TEB20250043", "TEB20250042")
    assert exc["reason"] == ("entered TEB20250043 but the previous ceremony's record says "
                             "TEB20250042")
    send(m, w, ev.Decide(at=w.at(), seat="KGA1", decision="retry"))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="teb 2025 0042"))
    assert m.current is not None and m.current.n == 3
    # the drive plugged in must be the one the record names
    send(m, w, ev.Performed(at=w.at(), step=3, result={"serial": "ZZ99"}))
    assert m.status == "exception" and "AA11BB22" in m.exception["reason"]  # type: ignore[index]


def test_a_files_digest_on_a_drive_is_observed_and_compared() -> None:
    m, w = _machine(_script(RECORD))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB20250042"))
    send(m, w, ev.Performed(at=w.at(), step=3, result={"serial": "AA11BB22"}))
    [want] = m.wants(now=w.now)
    assert isinstance(want, d.Observe) and want.source == "drive.sha256"
    assert want.params == {"drive": "master-copy", "file": "journal.jsonl"}
    colon = ":".join(LOG[i:i + 2] for i in range(0, 64, 2))
    send(m, w, ev.Observed(at=w.at(), step=4, value=hashlib.sha256(b"other").hexdigest()))
    assert m.status == "exception" and m.exception["kind"] == "mismatch"  # type: ignore[index]
    # the record's digest shown as digests are shown (colon hex), whatever form it was typed in
    assert m.exception["reason"].endswith(  # type: ignore[index]
        f"but the previous ceremony's record says {colon}")
    send(m, w, ev.Decide(at=w.at(), seat="KGA1", decision="retry"))
    send(m, w, ev.Observed(at=w.at(), step=4, value=colon.upper()))
    assert m.status == "completed"


def test_a_drive_used_before_it_is_plugged_in_or_a_digest_with_nothing_to_check() -> None:
    unplugged = _script(RECORD.replace('action = "drive.insert"', 'action = "acknowledge"')
                        .replace('drive = "master-copy"\ntext = "KGA plugs', 'text = "KGA plugs'))
    with pytest.raises(ScriptErrors, match="drive 'master-copy' is used before it is plugged in "
                       r"\(expected a drive.insert step with drive = 'master-copy' before"):
        load_script_text(unplugged, "x.toml")
    nothing = _script(RECORD.replace('observe = "drive.sha256"', 'observe = "backup.sha256"')
                      .replace('drive = "master-copy"\nfile = "journal.jsonl"\n', ""))
    with pytest.raises(ScriptErrors, match="there is no backup to check or copy here: no "
                       "hsm.backup step comes before this step"):
        load_script_text(nothing, "x.toml")


def test_a_drive_sha256_check_needs_its_drive_and_a_file_name_or_a_backup() -> None:
    broken = _script(RECORD.replace('drive = "master-copy"\nfile', "file"))
    with pytest.raises(ScriptErrors, match="a verify step observing drive.sha256 requires "
                       "'drive'"):
        load_script_text(broken, "x.toml")
    # without `file`, the coordinator reads the only key backup on the drive
    m, w = _machine(_script(RECORD.replace('file = "journal.jsonl"\n', "")))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB20250042"))
    send(m, w, ev.Performed(at=w.at(), step=3, result={"serial": "AA11BB22"}))
    [want] = m.wants(now=w.now)
    assert isinstance(want, d.Observe) and want.params == {"drive": "master-copy"}
    with pytest.raises(ScriptErrors, match="a file name"):
        load_script_text(_script(RECORD.replace("journal.jsonl", "../etc/passwd")), "x.toml")


def test_a_declared_password_may_be_sealed_again() -> None:
    reseal = '''[[sections.steps]]
n = 2
actor = "KGA"
action = "unseal"
bag = "offsite"
text = "KGA opens last year's bag."

[[sections.steps]]
n = 3
actor = "KGA"
action = "record"
format = "bag-serial"
bag = "offsite"
text = "KGA records the new bag's serial."

[[sections.steps]]
n = 4
actor = "KSO"
action = "seal"
bag = "offsite"
serial = 3
contents = ["drive:master-copy", "password:device-backup"]
text = "A KSO takes the new bag, with the password copy."
'''
    with pytest.raises(ScriptErrors, match="'device-backup' is not the password of any "
                       r"hsm.backup step nor declared in \[\[passwords\]\]"):
        load_script_text(_script(reseal), "x.toml")
    declared = '[[passwords]]\nname = "device-backup"\ntitle = "Device backup password"\n\n'
    script = load_script_text(_script(reseal, passwords=declared), "x.toml")
    assert script.passwords["device-backup"].title == "Device backup password"
    with pytest.raises(BadInput, match="step 2 unseals bag offsite"):
        Machine(script, roster(), dict(PREVIOUS))


def test_a_step_may_name_the_one_seat_that_does_it() -> None:
    """A bag goes back to its own custodian: `seat = "KSO2"` on the seal, whoever else of the
    role is in the room."""
    text = BASE.replace('serial = 3\ncontents = ["drive:master-copy"]',
                        'serial = 3\nseat = "KSO2"\ncontents = ["drive:master-copy"]')
    script = load_script_text(text, "seat.toml")
    assert script.step(4).seat == "KSO2"
    m, w = start(script, previous={"custody": [{
        "bag": "offsite", "title": "Offsite", "serial": "TEB1", "custodian": "DSO9",
        "person": "carol", "name": "Carol Keystore", "step": 9, "drives": {},
        "contents": ["drive:master-copy", "password:device-backup"]}]})
    for person in ("alice", "carol", "dave"):
        send(m, w, sign_in(w, person))
    send(m, w, ev.Acknowledge(at=w.at(), seat="KGA1"))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB1"))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB2"))
    [ask] = m.wants(now=w.now)
    assert ask.detail["seat"] == "KSO2"
    refused(m, seal(w, "KSO1", 4, "offsite", ["drive:master-copy"], "TEB2"),
            "step 4 is for KSO2; KSO1 may not complete it")
    send(m, w, seal(w, "KSO2", 4, "offsite", ["drive:master-copy"], "TEB2"))
    assert m.custody["offsite"]["custodian"] == "KSO2"
    # the roster must hold the seat, in the actor's role
    with pytest.raises(BadInput, match="step 4 is for seat KSO9, which the roster does not "
                       "hold as a KSO"):
        Machine(load_script_text(text.replace('"KSO2"', '"KSO9"'), "x.toml"), roster(),
                {"custody": m.previous_custody and list(m.previous_custody.values())})
    with pytest.raises(ScriptErrors, match="'verify' is not one a single seat does"):
        load_script_text(_script(RECORD.replace('observe = "drive.sha256"',
                                                'seat = "KGA1"\nobserve = "drive.sha256"')),
                         "x.toml")


def test_a_ceremony_reaches_one_signer() -> None:
    """A second signer's steps would be answered by the one link the coordinator holds (the
    rehearsal's one shim): the check refuses, at the step that reaches the second signer."""
    text = (Path(__file__).parent.parent / "ceremony" / "scripts" /
            "standby-restore.toml").read_text()
    two = text.replace("[[drives]]", '[[signers]]\nname = "primary"\n\n[[drives]]', 1)
    for action in ("hsm.list", "hsm.restore"):
        two = two.replace(f'action = "{action}"\n', f'action = "{action}"\nsigner = "standby"\n')
    for observe in ("signer.host_key", "hsm.fingerprint", "hsm.key_count"):
        two = two.replace(f'observe = "{observe}"\n', f'observe = "{observe}"\n'
                          'signer = "standby"\n')
    load_script_text(two, "two.toml")  # two declared, one reached: fine
    primary = two.replace('observe = "hsm.key_count"\nsigner = "standby"\n',
                          'observe = "hsm.key_count"\nsigner = "primary"\n')
    with pytest.raises(ScriptErrors) as err:
        load_script_text(primary, "two.toml")
    assert "this step reaches signer 'primary', and step 6 (line " in str(err.value)
    assert "reaches 'standby': a ceremony reaches one signer" in str(err.value)
