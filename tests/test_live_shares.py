"""The live coordinator's part in KEK shares: it relays boxes it cannot open. A share brought
for a wrap backup's drill is kept in memory for that piece of work, who brought it journaled
(never the box); the drill waits until the KEK's threshold came; a stranger's or a malformed
share is refused without a traceback; a holder's box is shown only at their kek.share step and
forgotten once they confirmed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import zmq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.machine import decisions as d
from ceremony.view import from_dict
from coordinator.bus import CommandRefused
from coordinator.journal import Journal
from coordinator.live.daemon import Live
from keyrite import sealing
from tests.idle_world import NoWork
from tests.machine_helpers import drive, send, sign_in
from tests.test_machine_kek import SCRIPT, _at_drill, start

SIGNER_PUBLIC, SIGNER_SECRET = (k.decode() for k in zmq.curve_keypair())


class _Hands(NoWork):
    """The coordinator's world, doing no work: these tests bring shares, not run the drill."""

    def __init__(self) -> None:
        super().__init__()
        self.share_boxes: dict[int, dict[str, str]] = {}
        self.sealed: dict[str, str] = {}
        self.handed: list[str] = []

    def share_key(self) -> str:
        return SIGNER_PUBLIC

    def sealed_shares(self) -> dict[str, str]:
        return dict(self.sealed)

    def share_handed(self, seat: str) -> None:
        self.handed.append(seat)
        self.sealed.pop(seat, None)


def _live(tmp_path: Path, m: Any, w: Any) -> tuple[Live, Journal]:
    journal = Journal.create(tmp_path / "journal.jsonl", key=Ed25519PrivateKey.generate(),
                             name="keyrite.test/live", origin="keyrite.test/live",
                             genesis_record={"type": "genesis", "at": "2026-12-08T00:00:00Z"})
    return Live(m, journal, _Hands(), clock=lambda: w.now + 1), journal  # type: ignore[arg-type]


def _box(kek_id: str, words: str = "a share") -> str:
    return sealing.seal(SIGNER_PUBLIC, words.encode(), sealing.share_context(kek_id, "signer"))


def _share(live: Live, seat: str, box: str, **over: Any) -> Any:
    cmd = {"type": "share", "seat": seat, "step": 10, "purpose": "drill", "box": box, **over}
    return trio.run(live.handle, seat, cmd)


def test_shares_are_relayed_sealed_and_the_drill_waits_for_enough(tmp_path: Path) -> None:
    m, w = _at_drill()
    live, journal = _live(tmp_path, m, w)
    kek_id = m.share_asked(w.now).kek_id  # type: ignore[union-attr]
    view = from_dict(live.view())
    assert view.step is not None
    [asked] = [a for a in view.step.asked if a.kind == "share"]
    assert asked.detail["share_key"] == SIGNER_PUBLIC and asked.detail["threshold"] == 2
    assert live._shares_short(w.now + 1, m.wants(now=w.now + 1))  # none brought: it waits
    assert live._blocked(m.wants(now=w.now + 1), w.now + 1)

    one = _box(kek_id, "first share words")
    _share(live, "KSO1", one)
    assert live.world.share_boxes == {10: {"KSO1": one}}
    assert live._shares_short(w.now + 1, m.wants(now=w.now + 1))
    with pytest.raises(CommandRefused, match="brought by the KSOs"):
        _share(live, "SA1", _box(kek_id))
    two = _box(kek_id, "second share words")
    _share(live, "KSO2", two)
    assert not live._shares_short(w.now + 1, m.wants(now=w.now + 1))
    with pytest.raises(CommandRefused, match="already brought"):
        _share(live, "KSO3", _box(kek_id))
    assert not [a for a in from_dict(live.view()).step.asked  # type: ignore[union-attr]
                if a.kind == "share"]

    text = (tmp_path / "journal.jsonl").read_text()
    assert one not in text and two not in text and "share words" not in text
    shares = [e.record for e in journal.entries() if e.record.get("type") == "share"]
    assert [(r["seat"], r["purpose"], r["step"]) for r in shares] == [
        ("KSO1", "drill", 10), ("KSO2", "drill", 10)]
    assert all(set(r) == {"type", "at", "seat", "step", "purpose"} for r in shares)


@pytest.mark.parametrize("box, why", [
    ("", "'box'"),
    ("A" * 40, "sealed box"),
    ("é" * 80, "sealed box"),
    ("A" * (sealing.MAX_BOX + 1), "box"),
    (7, "box"),
])
def test_a_malformed_share_is_refused_and_journaled_without_a_traceback(
        tmp_path: Path, box: Any, why: str) -> None:
    m, w = _at_drill()
    live, journal = _live(tmp_path, m, w)
    with pytest.raises(CommandRefused, match=why):
        _share(live, "KSO1", box)
    assert live.world.share_boxes == {}
    [refused] = [e.record for e in journal.entries() if e.record.get("type") == "refused"]
    assert refused["command"] == "share"


def test_a_share_when_none_is_asked_for_is_refused(tmp_path: Path) -> None:
    m, w = start(SCRIPT, {})
    w.previous["hsm_fingerprint"] = "d34d-ba64"
    drive(m, w, until=2)
    live, _ = _live(tmp_path, m, w)
    with pytest.raises(CommandRefused, match="no KEK share is asked for"):
        _share(live, "KSO1", _box("00" * 16), step=2)
    assert live.world.share_boxes == {}


def test_a_holders_box_is_shown_at_their_step_and_forgotten_once_written(tmp_path: Path
                                                                        ) -> None:
    m, w = start(SCRIPT, {})
    w.previous["hsm_fingerprint"] = "d34d-ba64"
    drive(m, w, until=4)
    live, _ = _live(tmp_path, m, w)
    live.world.sealed = {"KSO1": "box-1", "KSO2": "box-2", "KSO3": "box-3"}
    view = from_dict(live.view())
    assert view.step is not None
    [asked] = [a for a in view.step.asked if a.kind == "kek.share"]
    assert asked.detail["box"] == "box-1" and asked.detail["seat"] == "KSO1"
    with pytest.raises(CommandRefused):
        trio.run(live.handle, "KSO2", {"type": "acknowledge", "seat": "KSO2", "step": 4})
    assert live.world.handed == []
    trio.run(live.handle, "KSO1", {"type": "acknowledge", "seat": "KSO1", "step": 4})
    assert live.world.handed == ["KSO1"] and "KSO1" not in live.world.sealed
    assert m.current is not None and m.current.n == 5
    view = from_dict(live.view())
    [asked] = [a for a in view.step.asked if a.kind == "kek.share"]  # type: ignore[union-attr]
    assert asked.detail["box"] == "box-2"


def test_no_box_is_in_the_view_outside_a_kek_share_step(tmp_path: Path) -> None:
    m, w = start(SCRIPT, {})
    w.previous["hsm_fingerprint"] = "d34d-ba64"
    drive(m, w, until=6)
    send(m, w, sign_in(w, "frank", seats=("KSO3",)))
    drive(m, w, before=lambda x: isinstance(x, d.Perform) and x.action == "drive.insert")
    live, _ = _live(tmp_path, m, w)
    live.world.sealed = {"KSO3": "box-3"}
    assert "box-3" not in str(live.view())
