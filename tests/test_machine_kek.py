"""The machine's side of a backup KEK split among the KSOs: the hsm.kek operation and its plan,
each holder's kek.share step, and the shares officers bring to a wrap backup's drill
(`Machine.share_asked`, `ShareGiven`): who may bring one, what is recorded, and that a replay
of the journal knows the same."""

from __future__ import annotations

from pathlib import Path

from ceremony import records
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import Machine
from ceremony.script.load import load_script_text
from ceremony.view import Extras
from consoles.actions import actions_for
from tests.machine_helpers import drive, refused, replay, send, sign_in, start

WRAP = Path(__file__).resolve().parent / "scripts" / "keygen-wrap.toml"
#: the honest room holds two KSOs (carol, dave); frank, KSO3, signs in for his share
#: (and the test roster's DSO seats need their role, as its people combine it with KGA and KSO)
ROOM = '''[roles.DSO]
title = "Device Security Officer"
duty = "authorizes device operations"
min = 0
max = 2

[separation]
may_combine = [["KGA", "DSO"], ["KSO", "DSO"]]

[[materials]]'''
TEXT = WRAP.read_text().replace("min = 3\nmax = 3", "min = 2\nmax = 3").replace(
    "[[materials]]", ROOM, 1)
SCRIPT = load_script_text(TEXT, "keygen-wrap.toml")


def _at_drill():  # type: ignore[no-untyped-def]
    m, w = start(SCRIPT, {})
    w.previous["hsm_fingerprint"] = "d34d-ba64"  # what the honest signer plans on
    drive(m, w, until=6)
    send(m, w, sign_in(w, "frank", seats=("KSO3",)))
    drive(m, w, until=10)
    drive(m, w, before=lambda x: isinstance(x, d.Perform) and x.action == "drive.verify")
    return m, w


def test_the_kek_is_planned_for_its_holders_and_threshold() -> None:
    m, w = start(SCRIPT, {})
    w.previous["hsm_fingerprint"] = "d34d-ba64"  # what the honest signer plans on
    drive(m, w, before=lambda x: isinstance(x, d.Plan))
    [want] = [x for x in m.wants(now=w.now) if isinstance(x, d.Plan)]
    assert want.action == "hsm.kek"
    assert want.params == {"signer": "standby", "threshold": 2,
                           "holders": ["KSO1", "KSO2", "KSO3"]}


def test_each_holder_writes_down_their_own_share_and_nobody_else_may() -> None:
    m, w = start(SCRIPT, {})
    w.previous["hsm_fingerprint"] = "d34d-ba64"  # what the honest signer plans on
    drive(m, w, until=4)
    kek_id = m.results_of("hsm.kek")[0][1]["kek_id"]
    [ask] = [x for x in m.wants(now=w.now) if isinstance(x, d.Ask)]
    assert ask.kind == "kek.share" and ask.detail["seat"] == "KSO1"
    assert ask.detail["kek_id"] == kek_id
    refused(m, ev.Acknowledge(at=w.at(), seat="KSO2"), "KSO1")
    view = m.view(Extras(now=w.now, sealed_shares=(("KSO1", "box-for-kso1"),)))
    assert view.step is not None
    [asked] = [a for a in view.step.asked if a.kind == "kek.share"]
    assert asked.detail["box"] == "box-for-kso1"
    assert "KSO1" in asked.text and "KEK share" in asked.text
    kinds = {a.kind for a in actions_for(view, "KSO1", "KSO")}
    assert "acknowledge" in kinds
    assert not actions_for(view, "KSO2", "KSO") or all(
        a.kind != "acknowledge" for a in actions_for(view, "KSO2", "KSO"))
    send(m, w, ev.Acknowledge(at=w.at(), seat="KSO1"))
    assert m.current is not None and m.current.n == 5


def test_the_drill_asks_the_ksos_for_as_many_shares_as_the_kek_needs() -> None:
    m, w = _at_drill()
    ask = m.share_asked(w.now)
    kek_id = m.results_of("hsm.kek")[0][1]["kek_id"]
    assert ask is not None
    assert (ask.step, ask.purpose, ask.role, ask.kek_id, ask.threshold, ask.given) == \
        (10, "drill", "KSO", kek_id, 2, ())
    [want] = m.wants(now=w.now)
    assert isinstance(want, d.Perform) and want.params["shares"] == "KSO"
    assert want.params["secrets"] == []  # no password: the KEK opens a wrap backup


def test_who_may_bring_a_share() -> None:
    m, w = _at_drill()
    refused(m, ev.ShareGiven(at=w.at(), seat="SA1", step=10, purpose="drill"),
            "brought by the KSOs")
    refused(m, ev.ShareGiven(at=w.at(), seat="KSO4", step=10, purpose="drill"), "signed in")
    refused(m, ev.ShareGiven(at=w.at(), seat="KSO1", step=9, purpose="drill"), "step 9")
    refused(m, ev.ShareGiven(at=w.at(), seat="KSO1", step=10, purpose="restore"),
            "asked for the drill")
    send(m, w, ev.ShareGiven(at=w.at(), seat="KSO1", step=10, purpose="drill"))
    send(m, w, ev.ShareGiven(at=w.at(), seat="KSO1", step=10, purpose="drill"))  # again
    send(m, w, ev.ShareGiven(at=w.at(), seat="KSO3", step=10, purpose="drill"))
    ask = m.share_asked(w.now)
    assert ask is not None and ask.given == ("KSO1", "KSO3")
    again = replay(SCRIPT, w.accepted, {})
    assert again.share_asked(w.now) == ask


def test_the_view_asks_each_ksos_console_and_names_the_signers_share_key() -> None:
    m, w = _at_drill()
    view = m.view(Extras(now=w.now, share_key="K" * 40, shares_brought=("KSO1",)))
    assert view.step is not None
    [asked] = [a for a in view.step.asked if a.kind == "share"]
    assert asked.role == "KSO" and "1 more KSO" in asked.text and "1 of 2" in asked.text
    assert asked.detail["share_key"] == "K" * 40 and asked.detail["purpose"] == "drill"
    done = m.view(Extras(now=w.now, share_key="K" * 40, shares_brought=("KSO1", "KSO2")))
    assert done.step is not None and all(a.kind != "share" for a in done.step.asked)


def test_a_share_is_journaled_as_who_brought_it_and_nothing_else() -> None:
    e = ev.ShareGiven(at=5.0, seat="KSO2", step=10, purpose="drill")
    rec = records.of_event(e, 10)
    d_ = rec.to_dict()
    assert d_["type"] == "share" and set(d_) >= {"seat", "step", "purpose"}
    assert not {"box", "share", "value"} & set(d_)
    assert records.record_from_dict(d_).machine_event() == e


def test_the_whole_wrap_ceremony_completes_in_the_honest_room() -> None:
    m, w = _at_drill()
    drive(m, w)
    assert m.status == "completed"
    [(n, result)] = m.results_of("hsm.kek")
    assert n == 3 and result["threshold"] == 2 and "sealed" not in result


def test_a_holder_the_roster_lacks_is_refused_when_the_machine_starts() -> None:
    text = TEXT.replace('"KSO3"]', '"KSO9"]').replace('seat = "KSO3"', 'seat = "KSO1"')
    script = load_script_text(text, "w.toml")
    from tests.machine_helpers import roster
    try:
        Machine(script, roster(), {})
    except Exception as e:  # BadInput
        assert "KSO9" in str(e)
    else:
        raise AssertionError("a holder the roster lacks was accepted")
