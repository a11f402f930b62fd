"""The crash matrix's fixed sample, in the normal suite: the small rehearsal killed at a few of
its crash points (the test-only `KEYRITE_TEST_CRASH`, keyrite/crashpoints.py), resumed in the
same work directory, and checked (tests/crash_helpers.py: nothing acknowledged lost, no HSM
operation twice, on the token too, the journal verifies, the inventory of an uninterrupted run).
bench/crash_sweep.py runs every point; docs/reliability.md reports both."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash_helpers import crash_and_resume

#: an uninterrupted `keyrite rehearse --fixture small` (tests/test_rehearse.py checks the same)
UNINTERRUPTED = {"steps_completed": 132,
                 "keys": {"initial": 6, "after_purge": 4, "after_generate": 10, "purged": 2,
                          "generated": 6}}

#: the sample, and what the journal's last entry must be when the point is a journal entry
#: (so a script that moves its entries makes this say so, rather than test something else)
SAMPLE = {
    # the generation journaled as started, not yet sent to the shim
    "journal:52": ("OperationStarted", 33),
    # the end: the report's digest journaled, the transcripts' not yet
    "journal:200": ("document", None),
    "shim:generate:before_device": None,  # started journaled, the token untouched
    "shim:generate:after_device": None,  # the keys made, `finished` not journaled
    "shim:backup:after_device": None,  # the backup written, `finished` not journaled
}


@pytest.mark.parametrize("point", list(SAMPLE))
def test_killed_at_a_crash_point_the_resume_completes_as_if_nothing_happened(
        tmp_path: Path, point: str) -> None:
    out = crash_and_resume(point, tmp_path / "r", UNINTERRUPTED, "--fixture", "small")
    assert out.ok, "\n".join(out.problems)
    want = SAMPLE[point]
    if want is not None:
        assert out.last is not None
        kind, step = want
        got = out.last["event"]["event"] if out.last["type"] == "event" else out.last["type"]
        assert (got, out.last.get("step")) == (kind, step), out.last
