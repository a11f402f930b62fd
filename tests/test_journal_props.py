"""Properties: any sequence of appends and checkpoints verifies, and any single flipped byte is
caught and blamed on the entry it landed in.

Flips are drawn from every byte before the journal's final line, which is a checkpoint. That
final entry is vouched for by nothing after it (true of any hash chain's head): a flip there is
caught when it lands in the signed note or breaks the line (a torn tail), but a flip in its `at`
value would not be. Appending entries after it is what protects it; see docs/journal.md.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.journal import Journal, verify_journal
from coordinator.journal import lines as journal_lines
from coordinator.journal.chain import Broken, Chain
from tests.test_journal import AT, GENESIS, NAME

KEY = Ed25519PrivateKey.generate()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
records = st.fixed_dictionaries(
    {"type": st.text(min_size=1, max_size=12).filter(  # both are checked for what they sign
        lambda t: t not in ("checkpoint", "cosignature")), "at": st.text()},
    optional={"value": json_values, "note": st.text()},
)
#: None stands for a checkpoint.
operations = st.lists(st.none() | records, max_size=12)


def build(path: Path, ops: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The journal for `ops`, closed by a checkpoint; returns the records as read back."""
    with mock.patch.object(os, "fsync"), Journal.create(path, KEY, NAME, NAME, GENESIS) as j:
        for op in ops:
            if op is None:
                j.checkpoint(AT)
            else:
                j.append(op)
        j.checkpoint(AT)
        return [e.record for e in j.entries()]


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(ops=operations)
def test_any_sequence_of_appends_and_checkpoints_verifies(ops) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "j"
        written = build(path, ops)
        report = verify_journal(path)
        assert report.ok, report.summary()
        assert report.entries == len(ops) + 2
        assert report.checkpoints == ops.count(None) + 1
        assert report.last_checkpoint_size == len(ops) + 1
        with Journal.open(path, KEY) as j:
            assert [e.record for e in j.entries()] == written
        appended = [r for r in written[1:] if r.get("type") != "checkpoint"]
        assert appended == [json.loads(json.dumps(op)) for op in ops if op is not None]


@SETTINGS
@given(ops=operations, where=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255))
def test_any_single_byte_flip_is_caught_in_the_entry_it_hit(ops, where: float, xor: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "j"
        build(path, ops)
        data = bytearray(path.read_bytes())
        final_line_start = data.rindex(b"\n", 0, len(data) - 1) + 1
        pos = int(where * final_line_start)
        hit = data.count(b"\n", 0, pos)  # the seq of the entry whose line holds byte pos
        data[pos] ^= xor
        path.write_bytes(bytes(data))
        report = verify_journal(path)
        assert not report.ok
        assert report.problem is not None
        assert report.problem.seq == hit, (pos, xor, report.problem)
        slow = _one_by_one(bytes(data))
        if slow is None:
            assert report.problem.kind == "torn"
        else:
            assert (slow.seq, slow.kind, slow.reason) == (
                hit,
                report.problem.kind,
                report.problem.reason,
            )


def _one_by_one(data: bytes) -> Broken | None:
    """The plain `feed` loop, to hold the inlined `feed_lines` (which verify uses) to it."""
    complete, _ = journal_lines.split(data)
    chain = Chain()
    for i, line in enumerate(complete):
        try:
            chain.feed(line, complete[i + 1] if i + 1 < len(complete) else None)
        except Broken as e:
            return e
    return None  # a torn tail: verify reports it at the same seq


@SETTINGS
@given(ops=operations, where=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255))
def test_a_flip_in_the_final_checkpoints_note_is_caught(ops, where: float, xor: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "j"
        build(path, ops)
        data = bytearray(path.read_bytes())
        final_line_start = data.rindex(b"\n", 0, len(data) - 1) + 1
        start = data.index(b'"note":"', final_line_start) + len(b'"note":"')
        end = data.index(b'","type":"checkpoint"}', start)
        pos = start + int(where * (end - start))
        data[pos] ^= xor
        path.write_bytes(bytes(data))
        report = verify_journal(path)
        assert not report.ok
        assert report.problem is not None
        assert report.problem.seq == len(ops) + 1
