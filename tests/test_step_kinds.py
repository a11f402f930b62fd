"""The one row per step action (ceremony.script.step_kinds) is what the loader, the machine and
the view read: every name a row gives must exist where it is looked up, and the tables derived
from the rows must agree with the rows."""

from __future__ import annotations

import pytest

from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import ACCEPTS, PERFORMED, STATE_CHANGING
from ceremony.machine.view_of import _ask_text
from ceremony.script.model import ACTIONS, PARAMETERS
from ceremony.script.schema import QUORUM_ACTIONS, YIELDS
from ceremony.script.step_kinds import STEP_KINDS, WORK
from ceremony.script.steps import StepChecker


@pytest.mark.parametrize("action", sorted(STEP_KINDS))
def test_each_row_names_only_what_exists(action: str) -> None:
    kind = STEP_KINDS[action]
    assert kind.work in WORK
    if kind.check is not None:
        assert callable(getattr(StepChecker, kind.check, None)), kind.check
    if kind.answer is not None:
        assert kind.answer in ev.EVENT_TYPES
    if kind.work == "person":
        assert kind.ask and "{role}" in kind.ask


def test_the_derived_tables_are_the_rows() -> None:
    assert list(ACTIONS) == list(PARAMETERS) == list(STEP_KINDS) == list(ACCEPTS)
    assert set(QUORUM_ACTIONS) == set(STATE_CHANGING) == {
        a for a, k in STEP_KINDS.items() if k.needs_quorum}
    assert set(PERFORMED) == {a for a, k in STEP_KINDS.items() if k.work == "perform"}
    assert {a for a in YIELDS if STEP_KINDS[a].yields} == {
        a for a, k in STEP_KINDS.items() if k.yields}
    assert ACCEPTS["seal"] == (ev.Record,) and ACCEPTS["hsm.backup"] == (
        ev.OperationStarted, ev.Performed, ev.PerformFailed)


def test_a_persons_step_is_worded_from_its_row() -> None:
    ask = d.Ask(7, "KSO", "handover", {"text": "t", "bag": "log-bag", "holder": "DSO1"})
    assert _ask_text(ask) == "the KSO takes bag log-bag from DSO1 and enters its serial"
    assert _ask_text(d.Ask(3, "KGA", "record", {"text": "t", "format": "usb-serial"})) == \
        "the KGA enters the value (usb-serial)"
    assert _ask_text(d.Ask(3, "KGA", "record", {"text": "t"})) == \
        "the KGA enters the value (text)"
