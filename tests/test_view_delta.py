"""Views broadcast as deltas (coordinator.bus.view_delta): a console folding the deltas of a
real ceremony's broadcasts shows exactly the views the coordinator built, and a delta is far
smaller than the whole view; a delta with nothing to apply it to is refused, not guessed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceremony.view import Extras, from_dict, to_dict
from coordinator.bus import view_delta
from tests.machine_helpers import honest_event, seed_script, send, start


def test_folding_every_delta_of_a_ceremony_gives_every_view() -> None:
    m, w = start(seed_script())
    before: dict | None = None
    shown: dict | None = None
    whole = sent = 0
    for _ in range(400):  # well into the ceremony: sign-ins, steps, approvals, work
        view = to_dict(m.view(Extras(now=w.now)))
        body = view_delta.delta(before, view)
        shown = view_delta.apply(shown, json.loads(json.dumps(body)))  # through the wire
        assert shown == view
        assert from_dict(shown) == from_dict(view)
        whole += len(json.dumps(view))
        sent += len(json.dumps(body))
        before = view
        e = honest_event(m, w)
        if e is None:
            break
        send(m, w, e)
    assert sent * 3 < whole, (sent, whole)  # the deltas carry a third of the bytes, or less


def test_a_removed_field_is_removed_and_the_first_body_is_whole() -> None:
    assert view_delta.delta(None, {"a": 1}) == {"a": 1}
    body = view_delta.delta({"a": 1, "b": 2}, {"a": 1, "c": 3})
    assert body == {"view_delta": {"c": 3}, "removed": ["b"]}
    assert view_delta.apply({"a": 1, "b": 2}, body) == {"a": 1, "c": 3}


@pytest.mark.parametrize("body", [
    {"view_delta": [], "removed": []},
    {"view_delta": {}, "removed": "b"},
])
def test_a_malformed_delta_is_refused(body: dict) -> None:
    with pytest.raises(view_delta.DeltaError):
        view_delta.apply({"a": 1}, body)


def test_a_delta_before_any_view_is_refused() -> None:
    with pytest.raises(view_delta.DeltaError, match="before any whole view"):
        view_delta.apply(None, {"view_delta": {"a": 1}, "removed": []})


def test_a_list_that_moved_on_goes_as_its_tail() -> None:
    before = {"journal": [{"seq": i} for i in range(5)], "now": 1.0}
    after = {"journal": before["journal"][2:] + [{"seq": 5}], "now": 2.0}
    body = view_delta.delta(before, after)
    assert body == {"view_delta": {"now": 2.0}, "removed": [],
                    "tails": {"journal": [2, [{"seq": 5}]]}}
    assert view_delta.apply(before, json.loads(json.dumps(body))) == after
    # a list that changed otherwise goes whole
    edited = {"journal": [{"seq": 9}] + before["journal"][1:], "now": 1.0}
    assert view_delta.delta(before, edited)["view_delta"] == {"journal": edited["journal"]}


@settings(max_examples=300, deadline=None)
@given(old=st.lists(st.integers(0, 6), max_size=8), drop=st.integers(0, 9),
       added=st.lists(st.integers(0, 6), max_size=4), other=st.lists(st.integers(0, 6),
                                                                      max_size=8),
       moved=st.booleans())
def test_any_list_change_folds_back_exactly(old, drop, added, other, moved) -> None:
    new = old[drop:] + added if moved else other
    before, after = {"xs": old, "k": 1}, {"xs": new, "k": 1}
    body = json.loads(json.dumps(view_delta.delta(before, after)))
    assert view_delta.apply(before, body) == after


@pytest.mark.parametrize("tails", [
    {"xs": [1]}, {"xs": [True, []]}, {"xs": [-1, []]}, {"xs": [9, []]}, {"ys": [0, []]},
    {"xs": [0, {}]}, [],
])
def test_a_malformed_tail_is_refused(tails) -> None:
    with pytest.raises(view_delta.DeltaError):
        view_delta.apply({"xs": [1, 2]}, {"view_delta": {}, "removed": [], "tails": tails})
