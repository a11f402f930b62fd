"""A hand-over at the consoles: the taker is offered the same two-step prompt as a seal's custodian
(type the serial read on the bag, then the passphrase that signs for it), shown whom they take it
from; the console signs a hand-over acceptance that the machine takes, and that is no seal's.

Views come from a real machine driven by the honest room; step numbers are those of
tests/scripts/handover.toml (5 seals the log bag to DSO1, 6 hands it to a KSO).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from ceremony.approval import custody_message, load_public_key
from ceremony.machine import events as ev
from ceremony.machine.machine import Machine
from ceremony.roster import Roster
from consoles.actions import actions_for
from consoles.app import Console as ConsoleApp
from keyrite.enroll import make_officer, unlock
from tests.machine_helpers import drive, handover_script, roster, signed_sign_in, start
from tests.test_console_screen import console, view_at

PASS = "correct horse battery staple"


def test_the_taker_is_offered_the_seal_prompt_naming_the_holder():
    m, w = start(handover_script())
    drive(m, w, until=6)
    v = view_at(m, w)
    assert v.step is not None
    (asked,) = v.step.asked
    assert asked.text == "the KSO takes bag log-bag from DSO1 and enters its serial"
    (take,) = actions_for(v, "KSO1", "KSO")
    assert take.kind == "record" and take.needs == ("value", "passphrase")
    assert take.detail == {
        "format": "bag-serial",
        "bag": "log-bag",
        "contents": ["drive:log", "transcript"],
        "from": "DSO1",
    }
    assert actions_for(v, "DSO1", "DSO") == []  # the holder does not take it from themselves
    with console(v, "KSO1", w.now) as c:
        c.pipe.send_text("v")
        c.pipe.send_text("teb 000-logbag\r")
        c.pipe.send_text("\x03")
        c.screen.app.run()
        text = c.text()
        assert "Take bag log-bag with serial teb 000-logbag from DSO1, holding:" in text
        assert "  drive:log" in text and "  transcript" in text
        assert "Passphrase of KSO1's key" in text
        [cmd] = c.press("my passphrase\r")
    assert cmd == {
        "type": "record",
        "seat": "KSO1",
        "step": 6,
        "value": "teb 000-logbag",
        "passphrase": "my passphrase",
    }


def test_the_console_signs_a_handover_the_machine_takes(tmp_path: Path):
    """The console's own signing (consoles.app), with a key enrolled as a person does, for a
    roster that carries that key: the machine takes the acceptance at the hand-over step."""
    entry = make_officer(
        tmp_path / "kso1",
        role="KSO",
        seat="KSO1",
        name="Carol Keystore",
        person="carol",
        organisation="Registry",
        passphrase=PASS.encode(),
    )
    officers = roster().to_dict()["officers"]
    for o in officers:
        if o["seat"] == "KSO1":
            o["signing_key"] = entry.signing_key
    m, w = start(handover_script())
    drive(m, w, until=6)
    enrolled = Machine(m.script, Roster.from_dict({"officers": officers}), {})
    kso1 = unlock(tmp_path / "kso1", PASS.encode()).signing_key
    for e in w.accepted:
        if isinstance(e, ev.SignIn) and "KSO1" in e.seats:  # carol signs in with that key
            e = signed_sign_in(m.script, e.person, e.name, e.organisation, e.seats, e.at,
                               keys={"KSO1": kso1})
        enrolled.handle(e)
    app = object.__new__(ConsoleApp)  # the signing part only: no bus, no screen
    app.enrolments = {"KSO1": tmp_path / "kso1"}
    app.view = view_at(enrolled, w)
    typed = {"type": "record", "seat": "KSO1", "step": 6, "value": "teb 000-logbag"}
    body = app._signed({**typed, "passphrase": PASS})
    assert body == {**typed, "signature": body["signature"]}
    fields = dict(
        ceremony=m.script.ceremony.id,
        step=6,
        script_sha256=m.script.sha256,
        bag="log-bag",
        serial="TEB000LOGBAG",
        contents=["drive:log", "transcript"],
    )
    key = load_public_key(entry.signing_key)
    key.verify(
        base64.b64decode(body["signature"]),
        custody_message(**fields, kind="handover", giver="DSO1"),
    )
    with pytest.raises(InvalidSignature):  # not a seal's acceptance
        key.verify(base64.b64decode(body["signature"]), custody_message(**fields))
    record = ev.Record(at=w.at(), seat="KSO1", value=typed["value"], signature=body["signature"])
    enrolled.handle(record)
    assert enrolled.custody["log-bag"]["custodian"] == "KSO1"
    assert enrolled.custody["log-bag"]["from"] == "DSO1"
