"""Journal records (ceremony.records): one shape per type, written exactly as the coordinator
wrote them before they were typed (so journals keep their format), read back strictly, and every
shape a journal already holds still read: the runner's refusals from before the one shape, a
password record from before its purpose, and every line of the 2026-12-07 rehearsal journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ceremony import records as r
from ceremony.machine import Refused as MachineRefused
from ceremony.machine import events as ev
from ceremony.records import record_from_dict
from coordinator.live.tail import describe
from coordinator.runner import Runner
from tests.machine_helpers import T0, start

JOURNAL = Path(__file__).resolve().parent / "data" / "rehearsal-journal-2026-12-07.jsonl"
ACK = ev.Acknowledge(at=T0, seat="KSO1")

#: one record of each type, and the dict the coordinator wrote for it before records were typed
#: (its literal, keys in the order it wrote them)
WRITTEN: list[tuple[r.Record, dict[str, Any]]] = [
    (r.Genesis(at="2026-12-07T15:33:56Z", ceremony="kgc", title="Key generation",
               rehearsal=True, script={"name": "s.toml", "sha256": "ab" * 32, "text": "x"},
               roster={"officers": []}, previous={"key_count": "6"}),
     {"type": "genesis", "at": "2026-12-07T15:33:56Z", "ceremony": "kgc",
      "title": "Key generation", "rehearsal": True,
      "script": {"name": "s.toml", "sha256": "ab" * 32, "text": "x"},
      "roster": {"officers": []}, "previous": {"key_count": "6"}}),
    (r.Event(at=T0, step=3, event=ACK),
     {"type": "event", "at": T0, "step": 3, "event": ev.event_to_dict(ACK)}),
    (r.Refused(at=T0, step=None, console="WI1", command="approve", reason="no"),
     {"type": "refused", "at": T0, "step": None, "console": "WI1", "command": "approve",
      "reason": "no"}),
    (r.Checkpoint(note="origin\n4\nroot\n\n— sig\n", at="2026-12-07T15:40:00Z"),
     {"type": "checkpoint", "note": "origin\n4\nroot\n\n— sig\n", "at": "2026-12-07T15:40:00Z"}),
    (r.Pause(at=T0, seat="KGA1", step=7),
     {"type": "pause", "at": T0, "seat": "KGA1", "step": 7}),
    (r.Resume(at=T0, seat="KGA1", step=None),
     {"type": "resume", "at": T0, "seat": "KGA1", "step": None}),
    (r.Secret(at=T0, seat="SA1", step=43, name="device-backup", purpose="drill"),
     {"type": "secret", "at": T0, "seat": "SA1", "step": 43, "name": "device-backup",
      "purpose": "drill"}),
    (r.Expired(at=T0, seat="KSO2", quorum="keystore-backup", step=12, key="ed25519:AAAA",
               nonce="0" * 32),
     {"type": "expired", "at": T0, "seat": "KSO2", "quorum": "keystore-backup", "step": 12,
      "key": "ed25519:AAAA", "nonce": "0" * 32}),
    (r.Presence(at=T0, person="carol", seats=("DSO2", "KSO1"), connected=False),
     {"type": "presence", "at": T0, "person": "carol", "seats": ["DSO2", "KSO1"],
      "connected": False}),
    (r.Drive(at=T0, step=5, event="plugged", serial="AA0011", vendor="Kingston",
             model="DataTraveler", device="/dev/sdb"),
     {"type": "drive", "at": T0, "step": 5, "event": "plugged", "serial": "AA0011",
      "vendor": "Kingston", "model": "DataTraveler", "device": "/dev/sdb"}),
    (r.Drive(at=T0, step=None, event="refused", serial="", vendor="", model="",
             device="/dev/sdc", label="albany", reason="wrong drive"),
     {"type": "drive", "at": T0, "step": None, "event": "refused", "serial": "", "vendor": "",
      "model": "", "device": "/dev/sdc", "label": "albany", "reason": "wrong drive"}),
    (r.Coordinator(at=T0, step=None, what="started"),
     {"type": "coordinator", "at": T0, "step": None, "what": "started"}),
    (r.Cosignature(at=T0, seat="KSO1", size=57, root="R" * 44, signature="— o/KSO1 AAAA"),
     {"type": "cosignature", "at": T0, "seat": "KSO1", "size": 57, "root": "R" * 44,
      "signature": "— o/KSO1 AAAA"}),
    (r.Document(at=T0, what="report", file="report.pdf", sha256="ab:cd"),
     {"type": "document", "at": T0, "what": "report", "file": "report.pdf", "sha256": "ab:cd"}),
    (r.Share(at=T0, seat="KSO2", step=10, purpose="drill"),
     {"type": "share", "at": T0, "seat": "KSO2", "step": 10, "purpose": "drill"}),
]


@pytest.mark.parametrize("record, written", WRITTEN, ids=lambda x: getattr(x, "TYPE", ""))
def test_each_record_writes_todays_shape_and_reads_back(record: r.Record,
                                                        written: dict[str, Any]) -> None:
    out = record.to_dict()
    assert out == written
    assert list(out) == list(written)  # the same keys in the same order
    assert json.dumps(out) == json.dumps(written)
    back = record_from_dict(json.loads(json.dumps(out)))  # through JSON, as a journal keeps it
    assert back == record and type(back) is type(record)


def test_every_record_type_is_covered() -> None:
    assert {rec.TYPE for rec, _ in WRITTEN} == set(r.RECORD_TYPES)


def test_a_genesis_as_written_carries_the_journals_own_parameters() -> None:
    rec, written = WRITTEN[0]
    params = {"origin": "o", "version": 1, "vkey": "o+1+AA"}
    back = record_from_dict({**written, "journal": params})
    assert isinstance(back, r.Genesis) and back.journal == params
    assert back.to_dict() == {**written, "journal": params}
    with pytest.raises(ValueError, match="script.sha256 is not text"):
        record_from_dict({**written, "script": {"name": "s", "text": "x"}})


def test_the_runners_old_refusal_reads_as_the_one_shape() -> None:
    old = {"type": "refused", "at": T0, "step": 4, "event": ev.event_to_dict(ACK),
           "reason": "the step does not take Acknowledge"}
    rec = record_from_dict(old)
    assert rec == r.Refused(at=T0, step=4, console="KSO1", command="Acknowledge",
                            reason="the step does not take Acknowledge", event=ACK)
    # an event of the coordinator's own carries no seat: no console
    observed = ev.Observed(at=T0, step=9, value="12")
    rec = record_from_dict({"type": "refused", "at": T0, "step": 9,
                            "event": ev.event_to_dict(observed), "reason": "mismatch"})
    assert isinstance(rec, r.Refused)
    assert (rec.console, rec.command, rec.event) == ("", "Observed", observed)


def test_a_password_record_from_before_the_drill_was_for_the_backup() -> None:
    rec = record_from_dict({"type": "secret", "at": T0, "seat": "SA1", "step": 43,
                            "name": "device-backup"})
    assert isinstance(rec, r.Secret) and rec.purpose == "backup"


def test_the_runner_writes_the_one_refused_shape() -> None:
    m, _ = start()  # the first step wants sign-ins: an acknowledgement is refused

    class Journal:
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []

        def append(self, record: dict[str, Any]) -> None:
            self.records.append(record)

        def checkpoint(self, at: str) -> str:
            raise AssertionError("no section ends here")

    journal = Journal()
    runner = Runner(m, journal, None, None, str)  # type: ignore[arg-type]
    with pytest.raises(MachineRefused) as e:
        runner.apply(ACK)
    [written] = journal.records
    assert written == {"type": "refused", "at": T0, "step": m.current.n,  # type: ignore[union-attr]
                       "console": "KSO1", "command": "Acknowledge", "reason": e.value.reason,
                       "event": ev.event_to_dict(ACK)}
    assert record_from_dict(written) == r.Refused.of_event(ACK, m.current.n,  # type: ignore[union-attr]
                                                           e.value.reason)
    # the panel shows it as it showed the old shape
    old = {k: v for k, v in written.items() if k not in ("console", "command")}
    assert describe(written) == describe(old) == f"REFUSED KSO1 Acknowledge: {e.value.reason}"


def test_the_panel_reads_every_refused_shape() -> None:
    daemon = r.Refused(at=T0, step=None, console="WI1", command="approve", reason="no")
    assert describe(daemon.to_dict()) == "REFUSED WI1 approve: no"
    observed = ev.Observed(at=T0, step=9, value="12")
    own = r.Refused.of_event(observed, 9, "mismatch").to_dict()
    assert describe(own) == "REFUSED ? Observed: mismatch"
    assert describe({"type": "refused", "event": "not an object"}) == "REFUSED ? command: None"


@pytest.mark.parametrize("bad, words", [
    ({"type": "launch", "at": T0}, "unknown record type 'launch'"),
    ({"at": T0}, "unknown record type None"),
    (["type", "event"], "a journal record is a JSON object"),
    ({**WRITTEN[4][1], "why": "lunch"}, "pause record has unknown field(s) why"),
    ({k: v for k, v in WRITTEN[4][1].items() if k != "seat"}, "pause record lacks field 'seat'"),
    ({**WRITTEN[4][1], "step": "7"}, "pause record: step is not an integer or null"),
    ({**WRITTEN[4][1], "at": True}, "pause record: at is not a number"),
    ({**WRITTEN[4][1], "step": 7.0}, "step is not an integer"),
    ({**WRITTEN[0][1], "rehearsal": "yes"}, "rehearsal is not true or false"),
    ({**WRITTEN[0][1], "at": T0}, "genesis record: at is not text"),
    ({**WRITTEN[8][1], "seats": ["KSO1", 2]}, "seats is not a list of text"),
    ({**WRITTEN[8][1], "connected": 1}, "connected is not true or false"),
    ({**WRITTEN[9][1], "label": 3}, "label is not text or null"),
    ({**WRITTEN[1][1], "event": {"event": "Acknowledge", "at": T0}}, "lacks field 'seat'"),
    ({**WRITTEN[1][1], "event": {"event": "Launch", "at": T0}}, "unknown event 'Launch'"),
    ({**WRITTEN[1][1], "event": None}, "event is not an event"),
    # a refusal with a console but no command is neither shape
    ({k: v for k, v in WRITTEN[2][1].items() if k != "command"}, "lacks field 'command'"),
    ({"type": "refused", "at": T0, "step": 1, "reason": "x"}, "lacks field 'console'"),
])
def test_a_record_that_says_more_less_or_else_is_refused(bad: Any, words: str) -> None:
    with pytest.raises(ValueError) as e:
        record_from_dict(bad)
    assert words in str(e.value)


def test_every_line_of_the_2026_12_07_rehearsal_journal_reads() -> None:
    lines = JOURNAL.read_text().splitlines()
    assert len(lines) == 165
    kinds: dict[str, int] = {}
    for line in lines:
        written = json.loads(line)["record"]
        rec = record_from_dict(written)
        assert rec.to_dict() == written
        kinds[rec.TYPE] = kinds.get(rec.TYPE, 0) + 1
        assert describe(written)
    assert kinds == {"genesis": 1, "event": 149, "checkpoint": 15}
