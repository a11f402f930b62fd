"""The crash matrix's fixed sample, in the normal suite: the small rehearsal (and the wrap
ceremony, tests/scripts/keygen-wrap.toml) killed at a few of its crash points, some twice (the
test-only `KEYRITE_TEST_CRASH`, keyrite/crashpoints.py), resumed in the same work directory,
and checked (tests/crash_helpers.py: nothing acknowledged lost, no HSM operation twice, on the
token too, the journal verifies, the inventory of an uninterrupted run).
bench/crash_sweep.py runs every point; docs/reliability.md reports both."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash_helpers import baseline, crash_and_resume

WRAP = ("tests/scripts/keygen-wrap.toml", "--fixture", "small")

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


#: two kills in a row: the first resume is killed too (at a point counted from its own start)
TWICE = [
    # the generation journaled as started; the resume's shim then makes the keys and dies
    # before `finished`: the second resume must reconcile, not generate again
    ("journal:52", "shim:generate:after_device:1"),
    # the backup written and the shim killed; the resume dies just after its second entry
    ("shim:backup:after_device", "journal:2"),
]


@pytest.mark.parametrize(("point", "then"), TWICE, ids=[f"{p}+{t}" for p, t in TWICE])
def test_killed_twice_the_second_resume_completes_as_if_nothing_happened(
        tmp_path: Path, point: str, then: str) -> None:
    out = crash_and_resume(point, tmp_path / "r", UNINTERRUPTED, "--fixture", "small",
                           then=then)
    assert out.ok, "\n".join(out.problems)


@pytest.fixture(scope="module")
def wrap_baseline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted wrap ceremony (a KEK split 2-of-3, its shares written down, a wrap
    backup, a drill opened with two shares), with what its token holds."""
    return baseline(tmp_path_factory.mktemp("wrap") / "base", *WRAP)


@pytest.mark.parametrize(("point", "then"), [
    ("shim:kek:after_device", None),  # the KEK made, `finished` not journaled
    ("shim:kek:before_device", "shim:backup:after_device:1"),
])
def test_a_wrap_ceremony_killed_resumes_with_one_kek(wrap_baseline: dict, tmp_path: Path,
                                                     point: str, then: str | None) -> None:
    assert wrap_baseline["token_keys"] == {"privkey": 6, "secrkey": 1}
    out = crash_and_resume(point, tmp_path / "r", wrap_baseline, *WRAP, then=then)
    assert out.ok, "\n".join(out.problems)
