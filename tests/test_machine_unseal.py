"""`unseal`: a bag brought back is opened only if it is the one the custody record names, from
this ceremony's journal or the previous ceremony's (the record issue's continuity): serial,
holder and contents; a bag that differs stops the ceremony with both serials."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceremony.errors import BadInput
from ceremony.machine import events as ev
from ceremony.machine.machine import Machine
from ceremony.script.load import load_script_text
from ceremony.view import Extras
from tests.machine_helpers import refused, replay, roster, seal, send, sign_in, start

SCRIPT = Path(__file__).parent / "scripts" / "unseal.toml"
OFFSITE = {"bag": "offsite", "title": "Offsite bag", "serial": "TEB-2025-0042",
           "custodian": "DSO9", "person": "carol", "name": "Carol Keystore", "step": 131,
           "contents": ["drive:master-copy", "password:device-backup"],
           "drives": {"master-copy": "AA11"}}


def _script():  # type: ignore[no-untyped-def]
    return load_script_text(SCRIPT.read_text(), str(SCRIPT))


def _at_unseal(held: dict | None = None):  # type: ignore[no-untyped-def]
    m, w = start(_script(), previous={"custody": [held or OFFSITE]})
    send(m, w, sign_in(w, "alice"))
    send(m, w, sign_in(w, "dave"))
    send(m, w, ev.Acknowledge(at=w.at(), seat="KGA1"))
    assert m.current is not None and m.current.n == 2
    return m, w


def test_a_bag_the_previous_ceremony_left_is_opened_when_its_serial_matches() -> None:
    m, w = _at_unseal()
    # its holder presents it: carol must be here
    refused(m, ev.Record(at=w.at(), seat="KGA1", value="TEB-2025-0042"),
            "bag offsite is held by Carol Keystore, who must sign in to present it")
    send(m, w, sign_in(w, "carol"))
    [ask] = m.wants(now=w.now)
    assert (ask.kind, ask.detail["bag"], ask.detail["holder"]) == ("unseal", "offsite", "DSO2")
    assert "TEB-2025-0042" not in str(ask.detail)  # read off the bag, never shown first
    refused(m, ev.Record(at=w.at(), seat="DSO2", value="TEB-2025-0042"), "step 2 is for the KGA")
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="teb 2025 0042"))
    assert m.current is not None and m.current.n == 3
    opened = m.snapshot()["opened"]["offsite"]
    assert (opened["serial"], opened["step"], opened["previous"], opened["person"]) == (
        "TEB20250042", 2, True, "carol")
    assert "offsite" not in m.custody
    # resealed in a new bag, then opened again: this ceremony's own record now
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB-2026-0007"))
    send(m, w, seal(w, "KSO2", 4, "offsite", ["drive:master-copy"], "TEB-2026-0007"))
    assert m.custody["offsite"]["custodian"] == "KSO2"
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB-2026-0007"))
    assert m.snapshot()["opened"]["offsite"]["previous"] is False
    assert "offsite" not in m.custody
    send(m, w, ev.Acknowledge(at=w.at(), seat="KGA1"))
    assert m.status == "completed"
    assert replay(m.script, w.accepted, w.previous)._state == m._state


def test_another_serial_stops_the_ceremony_with_both_and_is_never_accepted() -> None:
    m, w = _at_unseal()
    send(m, w, sign_in(w, "carol"))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB-2025-0043"))  # one digit off
    assert m.status == "exception"
    exc = m.exception
    assert exc is not None and exc["kind"] == "bag-mismatch"
    assert (exc["observed"], exc["expected"]) == ("TEB20250043", "TEB20250042")
    assert "bag offsite reads serial TEB20250043, but the previous ceremony's record: held " \
        "by Carol Keystore (DSO9) since its step 131 says serial TEB20250042" in exc["reason"]
    refused(m, ev.Decide(at=w.at(), seat="KGA1", decision="accept", reason="looks fine"),
            "cannot be accepted")
    send(m, w, ev.Decide(at=w.at(), seat="KGA1", decision="retry"))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB-2025-0042"))
    assert m.current is not None and m.current.n == 3


def test_contents_other_than_the_step_lists_stop_it() -> None:
    m, w = _at_unseal({**OFFSITE, "contents": ["drive:master-copy"]})
    send(m, w, sign_in(w, "carol"))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB-2025-0042"))
    exc = m.exception
    assert exc is not None and exc["kind"] == "bag-mismatch"
    assert "holds drive:master-copy by the previous ceremony's record" in exc["reason"]
    assert "not drive:master-copy, password:device-backup as step 2 lists" in exc["reason"]


def test_a_bag_nobody_holds_is_refused_when_the_machine_is_made() -> None:
    with pytest.raises(BadInput, match="step 2 unseals bag offsite, which no earlier step seals "
                       r"and the previous ceremony's record does not hold \(held: no bag\)"):
        Machine(_script(), roster(), {})
    for bad in ("x", [1], [{**OFFSITE, "serial": 7}], [{**OFFSITE, "contents": "drive:x"}],
                [{**OFFSITE, "drives": {"master-copy": 5}}]):
        with pytest.raises(BadInput, match="previous ceremony's custody"):
            Machine(_script(), roster(), {"custody": bad})


def test_keyrite_custody_shows_the_bag_opened_and_sealed_again(tmp_path: Path) -> None:
    """The journal alone says who presented each bag, the serial read, and the new seal."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ceremony import records
    from coordinator.custody import custody, render
    from coordinator.journal import Journal

    m, w = _at_unseal()
    send(m, w, sign_in(w, "carol"))
    for e in (ev.Record(at=w.at(), seat="KGA1", value="TEB-2025-0042"),
              ev.Record(at=w.at(), seat="KGA1", value="TEB-2026-0007"),
              seal(w, "KSO2", 4, "offsite", ["drive:master-copy"], "TEB-2026-0007")):
        send(m, w, e)
    journal = Journal.create(
        tmp_path / "j", key=Ed25519PrivateKey.generate(), name="keyrite.test/unseal",
        origin="keyrite.test/unseal",
        genesis_record={"type": "genesis", "at": "2026-12-07T00:00:00Z",
                        "ceremony": "unseal-test", "title": "Unseal Test", "rehearsal": True,
                        "script": {"name": "unseal.toml", "sha256": m.script.sha256,
                                   "text": SCRIPT.read_text()},
                        "roster": roster().to_dict(), "previous": dict(w.previous),
                        "format": 2})
    again = Machine(m.script, roster(), w.previous)
    for e in w.accepted:
        step = again.current.n if again.current else None
        again.handle(e)
        journal.append(records.of_event(e, step).to_dict())
    journal.close()
    report = custody(tmp_path / "j")
    chain = report["bags"]["offsite"]["chain"]
    assert [(h["kind"], h["step"]) for h in chain] == [("unseal", 2), ("seal", 4)]
    assert chain[0]["previous"] and chain[0]["from_name"] == "Carol Keystore"
    text = render(report)
    assert "step 2 " in text and "opened, serial TEB20250042 read as Carol Keystore (DSO9) " \
        "presented it (sealed at the previous ceremony)" in text
    assert "bag offsite serial TEB20260007: held by" in text


def test_a_drive_out_of_a_previous_bag_must_be_the_one_its_record_read() -> None:
    """What the previous ceremony read off the drive it sealed pins the drive here: plugged in
    after the bag is opened, another drive stops the ceremony."""
    m, w = _at_unseal()
    assert m.drive_pin("master-copy") is None  # still sealed: nothing known here yet
    send(m, w, sign_in(w, "carol"))
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value="TEB20250042"))
    assert m.drive_pin("master-copy") == "AA11"
    assert m.script.drives["master-copy"].serial is None  # the script itself pins nothing
    assert m.view(Extras(now=w.now)).drives[0].expected_serial == "AA11"  # every screen shows it
