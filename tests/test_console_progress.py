"""The progress bar: whose work it reports, and how long it stays up.

The daemon stamps every progress report with the step whose work it is; the view keeps a bar
while that step is current and, once finished, until the first step after it that waits for
people is done. Step numbers are those of tests/scripts/mini.toml (11 generate, 12 hsm.list,
13 and 14 the KSOs' quorum steps).
"""

from __future__ import annotations

from pathlib import Path

from ceremony.machine import decisions as d
from ceremony.view import Extras, Progress
from tests.machine_helpers import drive, start
from tests.test_live_daemon import _live


def _generating():
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.Execute) and x.operation["op"] == "generate")
    return m, w


def test_a_bar_is_shown_while_its_step_runs_and_until_the_next_step_for_people_is_done():
    m, w = _generating()
    done = Progress(85, 85, "generated 85 of 85 keys", step=11)
    running = Progress(40, 85, "generated 40 of 85 keys", step=11)
    assert m.view(Extras(now=w.now, progress=running)).progress == running
    drive(m, w, until=12)  # 11 is done; 12 lists the keys (the coordinator's own work)
    assert m.view(Extras(now=w.now, progress=done)).progress == done
    assert m.view(Extras(now=w.now, progress=running)).progress is None  # never finished
    drive(m, w, until=13)  # the KSOs are asked: the room still sees what was generated
    assert m.view(Extras(now=w.now, progress=done)).progress == done
    drive(m, w, until=14)  # a step for people is done: the old bar goes
    assert m.view(Extras(now=w.now, progress=done)).progress is None
    unknown = Progress(85, 85, "generated 85 of 85 keys")  # not stamped: shown as it comes
    assert m.view(Extras(now=w.now, progress=unknown)).progress == unknown


def test_the_daemon_stamps_progress_with_the_step_that_works(tmp_path: Path):
    live, _, _, _ = _live(tmp_path, lambda x: isinstance(x, d.Execute)
                          and x.operation["op"] == "generate")
    live._set_progress(3, 85, "generated 3 of 85 keys")
    assert live.progress == Progress(3, 85, "generated 3 of 85 keys", step=11)
