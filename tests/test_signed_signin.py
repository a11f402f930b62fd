"""Signed sign-in (issue 13, item 4): an officer signs in with the passphrase that unlocks their
seat's key, for one signature over `ceremony.approval.signin_message` (ceremony, script, person,
seats, time); a witness or auditor is signed in by the administrator, whose key signs the same
text plus the ID document they checked (its type and at most its last 4 digits). The machine
refuses a sign-in unsigned, signed by another key, or recording a whole document number; the
journaled event says how identity was checked and which key signed. Journals written before
(their genesis states no format) still replay; new ones state `format = 2` and replay signed.

Step numbers and seats are those of tests/scripts/mini.toml and tests/machine_helpers.py.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ceremony.approval import (
    ID_DOCUMENTS,
    key_fingerprint,
    public_key_text,
    signin_message,
)
from ceremony.errors import Failure
from ceremony.machine import Machine
from ceremony.machine import events as ev
from ceremony.machine.replay import replay
from ceremony.records import FORMAT, Genesis, of_event, record_from_dict
from ceremony.roster import Roster
from ceremony.script.load import load_script_text
from ceremony.view import Extras
from consoles.app import Console as ConsoleApp
from coordinator.live.translate import translate
from coordinator.rehearsal.officers import Person, ScriptedRoom
from keyrite.enroll import EnrollError, make_officer
from tests.machine_helpers import (
    PEOPLE,
    drive,
    mini_script,
    private_key,
    refused,
    roster,
    send,
    sign_in,
    signed_sign_in,
    start,
)
from tests.test_console_screen import console_of, view_at

DATA = Path(__file__).resolve().parent / "data"
OLD_JOURNAL = DATA / "rehearsal-journal-2026-12-07.jsonl"


def fp(seat: str) -> str:
    return key_fingerprint(roster().officers[seat].signing_key)


# --- the message --------------------------------------------------------------------------------
def test_the_signed_text_is_fixed_and_a_vouched_one_is_not_an_own_one() -> None:
    own = signin_message("kgc", "ab" * 32, "carol", ("KSO1", "DSO2"), 1_700_000_000)
    assert own == (b"keyrite-signin-v1\nkind own\nceremony kgc\nscript " + b"ab" * 32 +
                   b"\nperson carol\nseats KSO1 DSO2\nat 1700000000\n")
    vouched = signin_message("kgc", "ab" * 32, "erin", ("WI1",), 1_700_000_000, by="KGA1",
                             id_document="passport", id_digits="4711")
    assert vouched.endswith(b"\nkind vouched\nceremony kgc\nscript " + b"ab" * 32 +
                            b"\nperson erin\nseats WI1\nat 1700000000\nby KGA1\n"
                            b"id passport 4711\n")
    with pytest.raises(ValueError, match="never the whole number"):
        signin_message("kgc", "ab", "erin", ("WI1",), 1, by="KGA1", id_document="passport",
                       id_digits="123456789")
    with pytest.raises(ValueError, match="single words"):  # no line of the text can be forged
        signin_message("kgc", "ab", "erin\nat 5", ("WI1",), 1)
    assert ID_DOCUMENTS == ("passport", "national-id", "driving-licence", "other")


def test_a_fingerprint_is_the_one_ssh_keygen_prints() -> None:
    key = private_key("KSO1").public_key()
    blob = base64.b64decode(key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).split()[1])
    assert key_fingerprint(public_key_text(key)) == (
        "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="))


# --- the machine's rules ------------------------------------------------------------------------
def test_an_unsigned_sign_in_is_refused() -> None:
    m, w = start()
    name, org, seats = PEOPLE["carol"]
    unsigned = ev.SignIn(at=w.at(), person="carol", name=name, organisation=org, seats=seats,
                         id_checked=True)
    refused(m, unsigned, "KSO1 and DSO2 sign in with each seat's own key", "no signature")
    send(m, w, sign_in(w, "alice"))
    witness = ev.SignIn(at=w.at(), person="erin", name="Erin Witness", organisation="Press",
                        seats=("WI1",), id_checked=True)
    refused(m, witness, "the KGA signs WI1 in", "ID document", "no signature")


def test_a_sign_in_signed_by_another_seats_key_is_refused() -> None:
    m, w = start()
    # KSO2's key in KSO1's place, named as what it is: not KSO1's enrolled key
    other = signed_sign_in(m.script, "carol", "Carol", "R", ("KSO1", "DSO2"), w.at(),
                           signers=("KSO2", "DSO2"))
    refused(m, other, "names key", "for KSO1, whose enrolled key is " + fp("KSO1"))
    # ...or passed off under KSO1's fingerprint: the signature does not verify
    forged = dataclasses.replace(other, fingerprints=(fp("KSO1"), fp("DSO2")))
    refused(m, forged, "not signed with KSO1's enrolled key")
    # one seat's signature for both seats is not each seat's
    one = signed_sign_in(m.script, "carol", "Carol", "R", ("KSO1", "DSO2"), w.at(),
                         signers=("KSO1",))
    refused(m, one, "one signature, and one key fingerprint, by each of KSO1, DSO2")
    # signed for KSO1 alone, then sent as KSO1 and DSO2: the text signed is another
    alone = signed_sign_in(m.script, "carol", "Carol", "R", ("KSO1",), w.at())
    both = dataclasses.replace(alone, seats=("KSO1", "DSO2"),
                               signatures=alone.signatures * 2,
                               fingerprints=(fp("KSO1"), fp("DSO2")))
    refused(m, both, "not signed with KSO1's enrolled key")
    # another ceremony's, or an old one's, sign-in does not count here
    at = w.at()
    stale = signed_sign_in(m.script, "carol", "Carol", "R", ("KSO1", "DSO2"), at,
                           signed_at=int(at) - 3600)
    refused(m, stale, "not within 300 s of its arrival")
    elsewhere = dataclasses.replace(stale, signed_at=int(at))  # its signatures are the stale one's
    refused(m, elsewhere, "not signed with KSO1's enrolled key")


def test_a_sign_in_signed_with_each_seats_key_is_accepted_and_says_which_key() -> None:
    m, w = start()
    e = sign_in(w, "carol")
    assert e.seats == ("KSO1", "DSO2") and e.by == "" and not e.id_checked
    assert e.fingerprints == (fp("KSO1"), fp("DSO2"))
    send(m, w, e)
    assert m.signed_in == {"KSO1": "carol", "DSO2": "carol"}
    written = json.loads(json.dumps(ev.event_to_dict(e)))  # as the journal keeps it
    assert written["signatures"] == list(e.signatures) and written["signed_at"] == int(e.at)
    assert written["fingerprints"] == [fp("KSO1"), fp("DSO2")]
    assert ev.event_from_dict(written) == e


def test_the_kga_signs_in_a_witness_with_the_id_document_type_and_last_digits() -> None:
    m, w = start()
    refused(m, sign_in(w, "erin"), "KGA1 must sign in before signing anyone else in")
    send(m, w, sign_in(w, "alice"))
    e = sign_in(w, "erin", id_document="national-id", id_digits="123X")
    assert (e.by, e.id_checked, e.id_document, e.id_digits) == ("KGA1", True, "national-id",
                                                                "123X")
    assert e.fingerprints == (fp("KGA1"),)  # the administrator's key signed it
    send(m, w, e)
    assert m.signed_in["WI1"] == "erin"
    written = ev.event_to_dict(e)
    assert {k: written[k] for k in ("by", "id_document", "id_digits", "fingerprints")} == {
        "by": "KGA1", "id_document": "national-id", "id_digits": "123X",
        "fingerprints": [fp("KGA1")]}
    again = Machine(m.script, roster(), w.previous)  # and it replays from its journal form
    for x in w.accepted:
        again.handle(ev.event_from_dict(json.loads(json.dumps(ev.event_to_dict(x)))))
    assert again.snapshot() == m.snapshot()


def test_a_whole_id_number_is_refused_never_cut() -> None:
    m, w = start()
    send(m, w, sign_in(w, "alice"))
    good = sign_in(w, "erin")
    for digits in ("123456789", "12345"):
        refused(m, dataclasses.replace(good, id_digits=digits),
                "only the ID document's last 4 digits, never the whole number")
    refused(m, dataclasses.replace(good, id_digits=""), "last digits are missing")
    refused(m, dataclasses.replace(good, id_digits="12-4"), "digits or capital letters")
    refused(m, dataclasses.replace(good, id_document="library card"), "passport, national-id")
    refused(m, dataclasses.replace(good, id_checked=False), "only after checking their ID")
    # the digits are in the signed text: changing them breaks the administrator's signature
    refused(m, dataclasses.replace(good, id_digits="0000"), "not signed with KGA1's enrolled key")
    send(m, w, good)


def test_who_may_vouch_and_for_whom() -> None:
    m, w = start()
    send(m, w, sign_in(w, "alice"))
    send(m, w, sign_in(w, "bob"))
    refused(m, sign_in(w, "erin", by="SA1"), "only the KGA signs someone else in")
    # an officer of a trusted role signs in with their own key, never on the KGA's word
    refused(m, sign_in(w, "carol", by="KGA1"), "KSO is a trusted role", "with their own key")
    # and a witness cannot sign themselves in with a key of their own
    own = signed_sign_in(m.script, "erin", "Erin", "Press", ("WI1",), w.at())
    refused(m, own, "WI is not a trusted role", "after checking their ID document")


# --- the journal's format -----------------------------------------------------------------------
def _old_records() -> list[dict[str, Any]]:
    return [json.loads(line)["record"] for line in OLD_JOURNAL.read_text().splitlines()]


def _machine_of(genesis: dict[str, Any]) -> Machine:
    script = load_script_text(genesis["script"]["text"])
    return Machine(script, Roster.from_dict(genesis["roster"]), genesis["previous"])


def test_the_2026_12_07_journal_of_unsigned_sign_ins_still_replays() -> None:
    records = _old_records()
    genesis = record_from_dict(records[0])
    assert isinstance(genesis, Genesis) and genesis.format is None
    assert not genesis.signed_signin
    machine = _machine_of(records[0])
    assert machine.signed_signin  # a machine requires signatures...
    replay(enumerate(records), machine, machine.script.sha256)
    assert machine.status == "completed"
    assert machine.signed_signin  # ...and does again once the old journal is replayed
    # fed the same events without its genesis, a new machine refuses the first sign-in
    fresh = _machine_of(records[0])
    with pytest.raises(Failure, match="journal entry 1 does not replay: .* no signature"):
        replay(enumerate(records[1:], start=1), fresh, fresh.script.sha256)


def test_a_journal_stating_the_format_refuses_an_unsigned_sign_in_on_replay() -> None:
    records = _old_records()
    records[0] = {**records[0], "format": FORMAT}
    machine = _machine_of(records[0])
    with pytest.raises(Failure, match="journal entry 1 does not replay"):
        replay(enumerate(records), machine, machine.script.sha256)


def test_the_genesis_format_is_read_strictly() -> None:
    genesis = _old_records()[0]
    assert record_from_dict({**genesis, "format": 2}).signed_signin
    assert record_from_dict({**genesis, "format": 2}).to_dict()["format"] == 2
    assert "format" not in record_from_dict(genesis).to_dict()  # an old one written back as it was
    for bad, words in ((3, "format 3 is not one this keyrite reads"), ("2", "not an integer"),
                       (True, "not an integer")):
        with pytest.raises(ValueError, match=words):
            record_from_dict({**genesis, "format": bad})


def test_a_new_journal_replays_signed_and_a_restart_requires_signatures(tmp_path: Path) -> None:
    """As a coordinator writes a journal (format 2) and rebuilds its machine from it."""
    m, w = start()
    drive(m, w, until=4)
    genesis = {"type": "genesis", "at": "2026-12-07T00:00:00Z", "ceremony": m.script.ceremony.id,
               "title": "t", "rehearsal": True,
               "script": {"name": "mini.toml", "sha256": m.script.sha256,
                          "text": (Path(__file__).parent / "scripts" / "mini.toml").read_text()},
               "roster": roster().to_dict(), "previous": w.previous, "format": FORMAT}
    records = [genesis, *(of_event(e, None).to_dict() for e in w.accepted)]
    again = Machine(m.script, roster(), w.previous)
    replay(enumerate(records), again, m.script.sha256)
    assert again.snapshot() == m.snapshot() and again.signed_signin


# --- the console ---------------------------------------------------------------------------------
PASS = {"SA1": "bob's passphrase here", "KSO1": "carol's KSO passphrase",
        "DSO2": "carol's DSO passphrase", "KGA1": "alice's passphrase here"}


def _enrolled(tmp_path: Path) -> tuple[Roster, dict[str, Path]]:
    """The test roster with the seats of PASS enrolled as a person does (`keyrite enroll`)."""
    dirs, keys = {}, {}
    for seat, phrase in PASS.items():
        o = roster().officers[seat]
        entry = make_officer(tmp_path / seat, role=o.role, seat=seat, name=o.name,
                             person=o.person, organisation=o.organisation,
                             passphrase=phrase.encode())
        dirs[seat], keys[seat] = tmp_path / seat, entry.signing_key
    officers = roster().to_dict()["officers"]
    for o in officers:
        o["signing_key"] = keys.get(o["seat"], o["signing_key"])
    return Roster.from_dict({"officers": officers}), dirs


def _app(enrolments: dict[str, Path], view: Any) -> ConsoleApp:
    app = object.__new__(ConsoleApp)  # the signing part only: no bus, no screen
    app.enrolments = enrolments
    app.view = view
    return app


def test_a_console_signs_in_through_its_screen_with_the_passphrase(tmp_path: Path) -> None:
    r, dirs = _enrolled(tmp_path)
    m = Machine(mini_script(), r, start()[1].previous)
    now = time.time()  # the console signs with its own clock; the coordinator stamps its own
    for seat, also in (("SA1", ()), ("KSO1", (("DSO2", "DSO"),))):
        view = m.view(Extras(now=now))
        app = _app(dirs, view)
        with console_of(view, seat, now, also=also) as c:
            c.press("s")
            for s in (seat, *(x for x, _ in also)):
                assert f"Passphrase of {s}'s key" in c.text()
                sent = c.press(PASS[s] + "\r")
        [cmd] = sent
        body = app._signed(dict(cmd))
        assert "passphrase" not in body and "passphrases" not in body
        event = translate(r, "KGA", seat, body, now)
        assert isinstance(event, ev.SignIn)
        m.handle(event)
        assert event.fingerprints == tuple(key_fingerprint(r.officers[s].signing_key)
                                           for s in event.seats)
    assert m.signed_in == {"SA1": "bob", "KSO1": "carol", "DSO2": "carol"}


def test_a_wrong_passphrase_signs_nothing_and_names_the_seat(tmp_path: Path) -> None:
    _, dirs = _enrolled(tmp_path)
    m, _ = start()
    app = _app(dirs, view_at(m, start()[1]))
    cmd = {"type": "signin", "seat": "KSO1", "seats": ["KSO1", "DSO2"],
           "passphrases": {"KSO1": PASS["KSO1"], "DSO2": "not carol's DSO passphrase"}}
    with pytest.raises(EnrollError) as e:
        app._signed(dict(cmd))
    assert getattr(e.value, "seat", None) == "DSO2"


def test_the_kga_console_signs_a_witness_in_with_the_id_document(tmp_path: Path) -> None:
    r, dirs = _enrolled(tmp_path)
    m = Machine(mini_script(), r, start()[1].previous)
    now = time.time()
    view = m.view(Extras(now=now))
    with console_of(view, "KGA1", now) as c:  # alice signs in as KGA1 first
        c.press("s")  # the prompt is drawn before its passphrase is taken
        [cmd] = c.press(PASS["KGA1"] + "\r")
    m.handle(translate(r, "KGA", "KGA1", _app(dirs, view)._signed(dict(cmd)), now))
    view = m.view(Extras(now=now))
    with console_of(view, "KGA1", now) as c:
        c.press("i", "1", " ", "o", "0042\r")
        assert "You checked their other ID document ending 0042" in c.text()
        [cmd] = c.press(PASS["KGA1"] + "\r")
    body = _app(dirs, view)._signed(dict(cmd))
    event = translate(r, "KGA", "KGA1", body, now)
    assert isinstance(event, ev.SignIn)
    assert (event.seats, event.by, event.id_document, event.id_digits) == (
        ("WI1",), "KGA1", "other", "0042")
    m.handle(event)
    assert m.signed_in["WI1"] == "erin"


# --- the rehearsal's scripted officers -----------------------------------------------------------
def test_the_scripted_room_signs_everyone_in_with_their_keys_and_the_witness_by_the_kga() -> None:
    m, w = start()
    people = [Person(p, name, org, seats) for p, (name, org, seats) in PEOPLE.items()]
    people[-1] = dataclasses.replace(people[-1], id_document="driving-licence", id_digits="77")
    keys = {seat: private_key(seat) for seat in roster().officers}
    room = ScriptedRoom(m, people, keys, w.at, lambda label: w.drive_serials[label],
                        lambda bag: w.bag_serials[bag], {})
    drive(m, w, until=2)  # alice signed in for the first step, as the KGA does
    signins: list[ev.SignIn] = []
    while m.current is not None and m.current.n == 2:
        [want] = m.wants(now=w.now)
        [event] = room.answer(want, {})
        if isinstance(event, ev.SignIn):
            signins.append(event)
        send(m, w, event)
    assert [e.person for e in signins] == ["bob", "carol", "dave", "erin"]
    assert all(e.by == "" and e.signatures for e in signins[:3])
    erin = signins[-1]
    assert (erin.by, erin.id_document, erin.id_digits) == ("KGA1", "driving-licence", "77")
    assert m.signed_in["WI1"] == "erin"
