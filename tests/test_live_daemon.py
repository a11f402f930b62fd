"""The live coordinator's own rules, with a real machine and a real journal and the clock in the
test's hand: who may say what (attribution), refusals journaled with their reason, approvals that
lapse (journaled once, then asked again), a refused quorum asked again, the KGA's pause, and
consoles that drop. The coordinator's work for steps (signer, drives) is not started here: the
tmux test runs it for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.approval import key_fingerprint
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.view import from_dict
from coordinator.bus import CommandRefused
from coordinator.journal import Journal
from coordinator.live.daemon import PRESENCE_TIMEOUT, Live
from coordinator.live.translate import Invalid, Own, translate
from tests.idle_world import NoWork
from tests.machine_helpers import T0, approval, drive, kso_quorum, roster, start


class _Clock:
    def __init__(self) -> None:
        self.now = T0 + 10_000

    def __call__(self) -> float:
        return self.now


def _live(tmp_path: Path, before: Any) -> tuple[Live, Journal, Any, _Clock]:
    m, w = start()
    drive(m, w, before=before)
    journal = Journal.create(tmp_path / "journal.jsonl", key=Ed25519PrivateKey.generate(),
                             name="keyrite.test/live", origin="keyrite.test/live",
                             genesis_record={"type": "genesis", "at": "2026-11-27T00:00:00Z"})
    clock = _Clock()
    clock.now = max(clock.now, w.now + 1)
    live = Live(m, journal, NoWork(), clock=clock)  # type: ignore[arg-type]
    return live, journal, w, clock


def _records(journal: Journal, kind: str) -> list[dict[str, Any]]:
    return [e.record for e in journal.entries() if e.record.get("type") == kind]


def _handle(live: Live, officer: str, body: dict[str, Any]) -> Any:
    return trio.run(live.handle, officer, body)


# --- translation (pure) --------------------------------------------------------------------------
def test_a_console_acts_for_its_own_person_only() -> None:
    r = roster()
    e = translate(r, "KGA", "KSO1", {"type": "acknowledge", "seat": "DSO2"}, T0)
    assert e == ev.Acknowledge(at=T0, seat="DSO2")  # carol holds KSO1 and DSO2
    with pytest.raises(Invalid, match="this console belongs to KSO1; it may not act as KSO2"):
        translate(r, "KGA", "KSO1", {"type": "acknowledge", "seat": "KSO2"}, T0)
    assert translate(r, "KGA", "SA1", {"type": "acknowledge"}, T0) == \
        ev.Acknowledge(at=T0, seat="SA1")  # no seat named: the console's own


def test_only_the_administrator_signs_in_someone_else_and_vouches_for_their_id() -> None:
    r = roster()
    signed = {"signed_at": int(T0), "signatures": ["c2ln"], "id_document": "passport",
              "id_digits": "4711"}  # the machine verifies the signature, not translate
    e = translate(r, "KGA", "KGA1", {"type": "signin", "seats": ["WI1"], "id_checked": True,
                                     **signed}, T0)
    assert isinstance(e, ev.SignIn) and e.person == "erin" and e.id_checked
    assert (e.by, e.id_document, e.id_digits) == ("KGA1", "passport", "4711")
    # which key signed is the roster's word, whatever a console says
    assert e.fingerprints == (key_fingerprint(r.officers["KGA1"].signing_key),)
    own = translate(r, "KGA", "WI1", {"type": "signin", "seats": ["WI1"], "id_checked": True,
                                      **signed}, T0)
    assert isinstance(own, ev.SignIn) and not own.id_checked  # nobody vouches for themselves
    assert (own.by, own.id_document, own.id_digits) == ("", "", "")
    with pytest.raises(Invalid, match="only the KGA signs in someone else"):
        translate(r, "KGA", "KSO1", {"type": "signin", "seats": ["KSO2"]}, T0)
    with pytest.raises(Invalid, match="one person signs in at a time"):
        translate(r, "KGA", "KGA1", {"type": "signin", "seats": ["KSO2", "WI1"]}, T0)


@pytest.mark.parametrize("body, reason", [
    ([], "a command is an object"),
    ({"type": "launch"}, "unknown command 'launch'"),
    ({"type": "record", "value": ""}, "'value' must be a non-empty string"),
    ({"type": "approve", "approval": {"step": 1}}, "not an approval"),
    ({"type": "pause", "seat": "KGA1"}, "may not act as KGA1"),  # the machine judges roles
    ({"type": "secret", "name": "device-backup", "value": "x"}, "'step' must be an integer"),
])
def test_malformed_or_unauthorised_commands_are_refused_with_a_reason(body, reason) -> None:
    with pytest.raises(Invalid, match=reason):
        translate(roster(), "KGA", "SA1", body, T0)


def test_presence_and_journal_are_the_coordinators_own() -> None:
    assert translate(roster(), "KGA", "WI1", {"type": "presence"}, T0) == Own("presence", "WI1",
                                                                             {})


# --- the daemon's rules --------------------------------------------------------------------------
def test_a_refused_command_is_journaled_with_the_console_and_the_reason(tmp_path: Path) -> None:
    live, journal, _, _ = _live(tmp_path, kso_quorum(0))
    with pytest.raises(CommandRefused, match="may not act as KSO2"):
        _handle(live, "KSO1", {"type": "refuse", "seat": "KSO2", "quorum": "keystore-backup",
                               "reason": "no"})
    [rec] = _records(journal, "refused")
    assert rec["console"] == "KSO1" and "may not act as KSO2" in rec["reason"]
    with pytest.raises(CommandRefused, match="does not take Acknowledge"):
        _handle(live, "WI1", {"type": "acknowledge"})  # the machine's reason, journaled too
    assert len(_records(journal, "refused")) == 2
    assert any("refused" in line.text.lower() for line in live.lines)


def test_an_approval_that_lapses_is_journaled_once_and_asked_for_again(tmp_path: Path) -> None:
    live, journal, w, clock = _live(tmp_path, kso_quorum(0))
    [want] = [x for x in live.m.wants(now=clock()) if isinstance(x, d.RequestApproval)]
    a = approval(w, "KSO1", want.step, want.digest, 300, at=clock())
    assert _handle(live, "KSO1", {"type": "approve", "approval": a.to_dict()}) == \
        {"accepted": True}
    view = from_dict(live.view())
    [q] = view.quorums
    assert (q.have, q.approved_by, q.expires_at) == (1, ("KSO1",), float(a.expires))

    clock.now = a.expires - 1
    live.tick()
    assert _records(journal, "expired") == []
    clock.now = a.expires + 1
    live.tick()
    live.tick()
    [rec] = _records(journal, "expired")
    assert (rec["seat"], rec["quorum"], rec["nonce"]) == ("KSO1", "keystore-backup", a.nonce)
    [q] = from_dict(live.view()).quorums
    assert (q.have, q.waiting_for) == (0, ("KSO1", "KSO2"))

    again = approval(w, "KSO1", want.step, want.digest, 300, at=clock())
    _handle(live, "KSO1", {"type": "approve", "approval": again.to_dict()})
    assert from_dict(live.view()).quorums[0].have == 1


def test_a_refused_quorum_is_journaled_and_asked_again(tmp_path: Path) -> None:
    live, journal, w, clock = _live(tmp_path, kso_quorum(0))
    [want] = [x for x in live.m.wants(now=clock()) if isinstance(x, d.RequestApproval)]
    a = approval(w, "KSO1", want.step, want.digest, 300, at=clock())
    _handle(live, "KSO1", {"type": "approve", "approval": a.to_dict()})
    _handle(live, "KSO2", {"type": "refuse", "quorum": "keystore-backup",
                           "reason": "the digest read out differs"})
    events = [r["event"]["event"] for r in _records(journal, "event")]
    assert events[-2:] == ["Approve", "RefuseApproval"]
    [q] = from_dict(live.view()).quorums
    assert (q.have, q.waiting_for) == (0, ("KSO1", "KSO2"))


def test_while_paused_only_the_administrator_resumes(tmp_path: Path) -> None:
    live, journal, _, _ = _live(tmp_path, kso_quorum(0))
    with pytest.raises(CommandRefused, match="only the KGA may pause"):
        _handle(live, "KSO1", {"type": "pause"})
    _handle(live, "KGA1", {"type": "pause"})
    assert from_dict(live.view()).status == "paused"
    with pytest.raises(CommandRefused, match="paused"):
        _handle(live, "KSO2", {"type": "refuse", "quorum": "keystore-backup", "reason": "x"})
    with pytest.raises(CommandRefused, match="already paused"):
        _handle(live, "KGA1", {"type": "pause"})
    _handle(live, "KGA1", {"type": "resume"})
    assert from_dict(live.view()).status == "running"
    assert [r["type"] for r in journal_types(journal) if r["type"] in ("pause", "resume")] == \
        ["pause", "resume"]


def journal_types(journal: Journal) -> list[dict[str, Any]]:
    return [e.record for e in journal.entries()]


def test_a_console_that_stops_answering_is_shown_dropped_and_journaled(tmp_path: Path) -> None:
    live, journal, _, clock = _live(tmp_path, kso_quorum(0))
    _handle(live, "KSO1", {"type": "presence"})
    assert {"KSO1", "DSO2"} <= live.connected  # carol's console stands for both her seats
    [rec] = _records(journal, "presence")
    assert rec["connected"] and rec["seats"] == ["DSO2", "KSO1", "SA2"]  # all carol's seats
    clock.now += PRESENCE_TIMEOUT + 0.1
    live.tick()
    assert "KSO1" not in live.connected
    assert _records(journal, "presence")[-1]["connected"] is False
    view = from_dict(live.view())
    me = view.participant("KSO1")
    assert me is not None and me.signed_in and not me.connected


def test_a_secret_is_taken_only_from_the_steps_actor_and_never_journaled(tmp_path: Path) -> None:
    live, journal, _, _ = _live(tmp_path, kso_quorum(0))
    with pytest.raises(CommandRefused, match="no device-backup password is asked for"):
        _handle(live, "SA1", {"type": "secret", "step": live.m.current.n,  # type: ignore[union-attr]
                              "name": "device-backup", "value": "hunter22"})
    assert live.world.secrets == {}
    assert "hunter22" not in (tmp_path / "journal.jsonl").read_text()


def test_an_approval_lapsing_just_before_the_operation_starts_stops_nothing(tmp_path: Path):
    """The driver read an Execute; by the time OperationStarted is judged the approval lapsed:
    the refusal is journaled, nothing is sent to the signer, and the approval is asked again."""
    live, journal, w, clock = _live(
        tmp_path, lambda x: isinstance(x, d.RequestApproval) and x.role == "SA")
    [want] = live.m.wants(now=clock())
    assert isinstance(want, d.RequestApproval)
    a = approval(w, "SA1", want.step, want.digest, 300, at=clock())
    _handle(live, "SA1", {"type": "approve", "approval": a.to_dict()})
    [execute] = live.m.wants(now=clock())
    assert isinstance(execute, d.Execute)

    class Late(NoWork):
        def now(self) -> float:
            return float(a.expires + 1)

        def execute(self, *args: Any) -> dict[str, Any]:
            raise AssertionError("the signer was asked to run an unapproved operation")

    live.world = Late()  # type: ignore[assignment]
    live.runner.world = live.world  # type: ignore[assignment]
    trio.run(live._work, execute)
    [rec] = _records(journal, "refused")
    assert rec["event"]["event"] == "OperationStarted"
    assert isinstance(live.m.wants(now=a.expires + 1)[0], d.RequestApproval)


def test_a_usb_drive_notice_is_journaled_and_shown_at_once(tmp_path: Path) -> None:
    from coordinator.usb.usb_drives import DriveNotice
    from coordinator.usb.watch import UsbDrive

    live, journal, _, clock = _live(tmp_path, kso_quorum(0))
    stick = UsbDrive(serial="AA0011", vendor="Kingston", model="DataTraveler",
                     devnode="/dev/sdb", partitions=("/dev/sdb1",), syspath="/sys/x/sdb")
    live.drive_notice(DriveNotice("removed", stick, "albany"))
    live.drive_notice(DriveNotice("refused", stick, "wellington",
                                  "drive wellington expects serial BB; wrong drive"))
    [removed, refused] = _records(journal, "drive")
    assert removed == {"type": "drive", "at": clock.now, "step": live.m.current.n,
                       "event": "removed", "serial": "AA0011", "vendor": "Kingston",
                       "model": "DataTraveler", "device": "/dev/sdb", "label": "albany"}
    assert refused["reason"] == "drive wellington expects serial BB; wrong drive"
    tail = [line["text"] for line in live.view()["journal"]][-2:]
    assert tail == ["DRIVE REMOVED: Kingston DataTraveler serial AA0011 (albany)",
                    "DRIVE REFUSED: Kingston DataTraveler serial AA0011 (wellington): "
                    "drive wellington expects serial BB; wrong drive"]
    # and the printed transcript keeps them, in journal order, with the time
    from coordinator.transcript import render

    text = render(live.m.script, ((e.seq, e.record) for e in journal.entries()))
    flat = " ".join(text.split())  # a long line wraps on the printed page, never cut
    assert all(t in flat for t in tail) and flat.index(tail[0]) < flat.index(tail[1])


def test_a_console_flooding_refused_commands_is_cut_off_for_a_while_others_are_not(
        tmp_path: Path) -> None:
    """Every refusal is journaled, up to a budget per console: past it the console's commands
    are refused unread until its window ends, then one record counts them."""
    live, journal, _, clock = _live(tmp_path, kso_quorum(0))
    limit = live.budget.limit
    before = len(_records(journal, "refused"))
    for _ in range(limit + 5):
        with pytest.raises(CommandRefused):
            _handle(live, "WI1", {"type": "acknowledge", "step": "not a number"})
    assert len(_records(journal, "refused")) == before + limit
    with pytest.raises(CommandRefused, match="refused commands from this console"):
        _handle(live, "WI1", {"type": "presence"})
    # another console is served as ever
    assert _handle(live, "KSO1", {"type": "presence"}) == {"seq": 0}
    clock.now += live.budget.window
    live.tick()
    [summary] = [r for r in _records(journal, "refused") if r["command"] == "*"]
    assert summary["console"] == "WI1" and summary["reason"].startswith("6 more commands")
    with pytest.raises(CommandRefused, match="'step' must be an integer"):
        _handle(live, "WI1", {"type": "acknowledge", "step": "again"})
    assert len(_records(journal, "refused")) == before + limit + 2
