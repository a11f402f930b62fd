"""Custody hand-overs: at a `handover` step the taker reads the bag's serial back and signs an
acceptance that names the seat they take it from; the machine refuses anything else and records
the hand-over (from whom, to whom, with the signature) in place of the bag's previous custody.

Step numbers are those of tests/scripts/handover.toml: 4 records the log bag's serial, 5 seals it
to a DSO, 6 hands it to a KSO, 7 back to a DSO.
"""

from __future__ import annotations

import dataclasses

from ceremony.approval import custody_message
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.script.model import Script
from tests.machine_helpers import (
    drive,
    handover_script,
    refused,
    replay,
    seal,
    send,
    start,
    typed,
)

CONTENTS = ("drive:log", "transcript")


def test_the_bag_changes_hands_twice_and_replays():
    m, w = start(handover_script())
    drive(m, w, until=6)
    sealed = m.snapshot()["custody"]["log-bag"]
    assert sealed["custodian"] == "DSO1" and "from" not in sealed
    want = m.wants()[0]
    assert want == d.Ask(
        6,
        "KSO",
        "handover",
        {
            "text": m.script.step(6).text,
            "bag": "log-bag",
            "contents": list(CONTENTS),
            "holder": "DSO1",
        },
    )
    drive(m, w, until=7)
    to_kso = m.snapshot()["custody"]["log-bag"]
    assert to_kso == {
        "serial": "TEB000LOGBAG",
        "contents": list(CONTENTS),
        "custodian": "KSO1",
        "person": "carol",
        "step": 6,
        "at": to_kso["at"],
        "signature": to_kso["signature"],
        "from": "DSO1",
        "from_person": "alice",
        "sealed_at": 5,
    }
    assert m.snapshot()["values"]["6"] == "TEB000LOGBAG"  # the serial as read, normalised
    drive(m, w)
    assert m.status == "completed"
    back = m.snapshot()["custody"]["log-bag"]
    assert (back["custodian"], back["from"], back["from_person"], back["sealed_at"]) == (
        "DSO1",
        "KSO1",
        "carol",
        5,
    )
    assert back["signature"] != to_kso["signature"]
    again = replay(m.script, w.accepted, w.previous)
    assert again.snapshot() == m.snapshot() and again._state == m._state


def test_only_a_true_signed_acceptance_of_this_bag_from_its_holder_is_taken():
    m, w = start(handover_script())
    drive(m, w, until=6)
    serial = typed(w.bag_serials["log-bag"])

    def take(seat: str = "KSO1", **kw) -> ev.Record:
        args = {"giver": "DSO1", "contents": CONTENTS, "typed_value": serial} | kw
        return seal(
            w,
            seat,
            6,
            "log-bag",
            args["contents"],
            args["typed_value"],
            signed_serial=kw.get("signed_serial"),
            giver=args["giver"],
        )

    refused(m, take("DSO2"), "for the KSO")
    refused(
        m,
        take(typed_value="TEB 000 OTHER"),
        "TEB000OTHER does not match TEB000LOGBAG",
        "sealed at step 5",
    )
    refused(m, ev.Record(at=w.at(), seat="KSO1", value=serial), "signing for it")
    refused(m, dataclasses.replace(take("KSO2"), seat="KSO1"), "does not verify")  # dave's key
    refused(m, take(signed_serial="TEB000OTHER"), "does not verify")
    refused(m, take(giver="KSO2"), "does not verify")  # not from the seat that holds it
    refused(m, take(contents=("drive:log",)), "does not verify")
    # a seal's acceptance of the same bag, serial and contents is not a hand-over's
    as_seal = seal(w, "KSO1", 6, "log-bag", CONTENTS, serial)
    refused(m, as_seal, "does not verify")
    good = take()
    send(m, w, good)
    assert m.snapshot()["custody"]["log-bag"]["signature"] == good.signature


def test_a_handover_acceptance_is_not_a_seal():
    m, w = start(handover_script())
    drive(m, w, until=5)
    serial = typed(w.bag_serials["log-bag"])
    refused(m, seal(w, "DSO1", 5, "log-bag", CONTENTS, serial, giver="DSO1"), "does not verify")
    send(m, w, seal(w, "DSO1", 5, "log-bag", CONTENTS, serial))
    assert m.snapshot()["custody"]["log-bag"]["custodian"] == "DSO1"


def test_no_handover_to_the_person_who_holds_the_bag():
    """carol holds KSO1 and DSO2: sealed to her as DSO2, she cannot take it again as KSO1."""
    m, w = start(handover_script())
    drive(m, w, until=5)
    serial = typed(w.bag_serials["log-bag"])
    send(m, w, seal(w, "DSO2", 5, "log-bag", CONTENTS, serial))
    assert m.wants()[0].detail["holder"] == "DSO2"
    refused(
        m,
        seal(w, "KSO1", 6, "log-bag", CONTENTS, serial, giver="DSO2"),
        "KSO1's holder already holds bag log-bag",
        "as DSO2 since step 5",
    )
    send(m, w, seal(w, "KSO2", 6, "log-bag", CONTENTS, serial, giver="DSO2"))
    c = m.snapshot()["custody"]["log-bag"]
    assert (c["custodian"], c["person"], c["from"], c["from_person"]) == (
        "KSO2",
        "dave",
        "DSO2",
        "carol",
    )


def _unsealed(script: Script) -> Script:
    """The script with step 6 handing over the spare bag, which nothing seals (the loader
    refuses this; the machine must refuse it on its own too)."""
    sections = tuple(
        dataclasses.replace(
            sec,
            steps=tuple(dataclasses.replace(s, bag="spare") if s.n == 6 else s for s in sec.steps),
        )
        for sec in script.sections
    )
    return dataclasses.replace(script, sections=sections)


def test_a_bag_never_sealed_cannot_be_handed_over():
    m, w = start(_unsealed(handover_script()))
    drive(m, w, until=6)
    assert m.wants()[0].detail["holder"] is None
    serial = typed(w.bag_serials["spare"])
    refused(
        m, seal(w, "KSO1", 6, "spare", (), serial, giver="DSO1"), "bag spare has not been sealed"
    )


def test_the_messages_differ_by_kind_and_giver():
    base = dict(ceremony="c", step=6, script_sha256="ab", bag="b", serial="S", contents=["x"])
    as_seal = custody_message(**base)
    assert as_seal == (
        b"keyrite-custody-v1\nceremony c\nstep 6\nscript ab\nbag b\nserial S\ncontents x\n"
    )  # what seals have always signed
    handover = custody_message(**base, kind="handover", giver="DSO1")
    assert handover.startswith(b"keyrite-custody-v1\nkind handover\nceremony c\n")
    assert handover.endswith(b"contents x\nfrom DSO1\n")
    assert handover != custody_message(**base, kind="handover", giver="DSO2")
    for bad in ({"kind": "handover"}, {"giver": "DSO1"}, {"kind": "transfer", "giver": "x"}):
        try:
            custody_message(**base, **bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")
