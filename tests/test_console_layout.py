"""What a room sees on its consoles at the sizes terminals have: the projector at 80x24 keeps every
essential line (step, actor, what is asked, who is waited for, quorum clocks, alerts) and
condenses the rest; words are never broken across rows; messages wrap and go when their step
ends; status lines say what the ceremony waits for; the exception shows observed and record once
with the first difference marked; the date and time are filled in from the console's clock.

Views come from a real machine driven by the honest room (tests/machine_helpers.py) over the
bundled seed script (step numbers as in ceremony/scripts/second-key-generation.toml) or the
mini script where said.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from ceremony.digests import colon_hex
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import Machine
from ceremony.view import CeremonyView, ExceptionView, Extras, JournalLine, Progress
from consoles.screen import DATETIME_FORMAT
from tests.machine_helpers import World, drive, seed_script, send, start
from tests.test_console_screen import console, console_of

KGA = (("DSO1", "DSO"),)  # alice: the KGA, also a DSO (the projector's console)


def seed(until: int) -> tuple[Machine, World]:
    m, w = start(seed_script())
    drive(m, w, until=until)
    return m, w


def seed_view(m: Machine, w: World, **extras: Any) -> CeremonyView:
    journal = tuple(JournalLine(i, w.now, f"step {i}: KSO{i % 2 + 1} confirms step {i}")
                    for i in range(12))
    extras = {"connected": frozenset(m.signed_in) - {"KSO2"}, "journal": journal, **extras}
    return m.view(Extras(now=w.now, **extras))


def tokens(screen: str) -> list[str]:
    return screen.replace("│", " ").split()


def whole_words(screen: str, *texts: str) -> None:
    """Every word of every text is on the screen whole (none broken across two rows)."""
    have = set(tokens(screen))
    for text in texts:
        for word in text.split():
            assert word in have, f"{word!r} is not whole on the screen:\n{screen}"


def rows_of(screen: str, label: str) -> str:
    """A row holding `label` and the rows that continue it (indented further), joined."""
    rows = [r.strip("│ ") for r in screen.splitlines()]
    start = next(i for i, r in enumerate(rows) if r.startswith(label))
    out = rows[start][len(label):]
    for raw in screen.splitlines()[start + 1:]:
        r = raw.strip("│")
        if not r.startswith("       ") or not r.strip():
            break
        out += r.strip()
    return out


# --- the projector at 80x24 ----------------------------------------------------------------------
def test_the_projector_at_80x24_keeps_every_essential_line():
    """Step 42: the DSO quorum is asked, the KSOs' two approvals are held and counting down, one
    officer's console dropped. Everything that matters is on the KGA's 80x24 screen."""
    m, w = seed(42)
    v = seed_view(m, w)
    with console_of(v, "KGA1", w.now + 5, also=KGA) as c:
        screen = c.screen.render_text(80, 24)
        assert len(screen.splitlines()) <= 24
        step = m.script.step(42)
        assert re.search(r"^Step 42  \[DSO\]  quorum$", screen, re.M)
        assert "waiting for DSO1 or DSO2: 1 more DSO approval(s) of step 43's backup" in screen
        assert "YOU: [p] Approve step 43's backup" in screen
        assert "0 of 1 DSO approvals — waiting for DSO1, DSO2" in screen
        assert re.search(r"2 of 2 KSO approvals held, 4:\d\d left", screen)
        assert re.search(r"approved by KSO1 \(4:\d\d left\), KSO2 \(4:\d\d left\)", screen)
        assert rows_of(screen, "digest ") == colon_hex(v.quorums[0].digest)
        assert "KSO2  Dave Keystore: signed in, DISCONNECTED" in screen  # an alert
        assert "[p] approve" in screen and "[ctrl-c] close" in screen
        whole_words(screen, step.text, "signed in, DISCONNECTED not signed in")
        # the journal shrank first; the participants are condensed, not cut off
        assert "of 11 seats signed in" in screen


def test_the_projector_between_quorum_steps_shows_the_clock_and_the_journal():
    m, w = seed(38)
    v = seed_view(m, w)
    with console_of(v, "KGA1", w.now + 10, also=KGA) as c:
        screen = c.screen.render_text(80, 24)
        assert re.search(r"step 43 backup: 1 of 2 KSO approvals held, 4:\d\d left", screen)
        assert "approved by KSO1" in screen
        assert "waiting for the SA: the SA acknowledges" in screen
        assert "Nothing is asked of you now." in screen
        assert "no approval is being asked for" not in screen
        assert "step 11: KSO2 confirms step 11" in screen  # the newest journal line
        whole_words(screen, m.script.step(38).text)


def test_at_200x50_the_journal_uses_its_whole_panel():
    m, w = seed(38)
    with console_of(seed_view(m, w), "KGA1", w.now, also=KGA) as c:
        screen = c.screen.render_text(200, 50)
        assert all(f"step {i}: KSO{i % 2 + 1} confirms step {i}" in screen for i in range(12))
        rows = screen.splitlines()
        top = next(i for i, r in enumerate(rows) if "| Journal |" in r)
        assert rows[top + 1:][-2].startswith("└")  # down to the footer
        assert "KGA1  Alice Admin: signed in, connected" in screen  # all participants


def test_words_are_never_broken_across_rows_at_any_width():
    m, w = seed(33)
    v = seed_view(m, w)
    for width in (80, 100, 120, 200):
        with console_of(v, "SA1", w.now) as c:
            screen = c.screen.render_text(width, 40)
            whole_words(screen, m.script.step(33).text, m.script.step(33).note or "")


# --- messages ------------------------------------------------------------------------------------
def test_a_long_refusal_wraps_whole_and_goes_when_its_step_ends():
    m, w = start()
    drive(m, w, until=3)
    reason = ("REFUSED approve: quorum keystore-backup needs 2 different people; Carol Keystore "
              "already approved it as KSO1")
    with console(m.view(Extras(now=w.now)), "SA1", w.now) as c:
        c.screen.notify(reason)
        screen = c.screen.render_text(80, 24)
        assert reason in " ".join(" ".join(screen.split("|")[-1].split()).split())
        whole_words(screen, reason)
        drive(m, w, until=4)
        c.screen.update(m.view(Extras(now=w.now)))
        assert "REFUSED" not in c.screen.render_text(80, 24)
        c.screen.notify("accepted: acknowledge", 3)  # an answer about step 3, come late
        assert "accepted" not in c.screen.render_text(80, 24)


# --- status lines --------------------------------------------------------------------------------
def test_step_43_waits_for_the_password_not_for_the_signer():
    m, w = start(seed_script())
    drive(m, w, before=lambda x: isinstance(x, d.Execute) and bool(x.secrets))
    v = seed_view(m, w, secrets_needed=("device-backup",))
    with console_of(v, "KGA1", w.now, also=KGA) as c:
        screen = c.screen.render_text(80, 24)
        assert "waiting for the SA: the SA enters the device-backup password" in screen
        assert "then the signer runs the approved backup" in screen
        assert "waiting for the coordinator" not in screen
        assert "no progress reported yet" not in screen  # the signer is not working yet


def test_a_quorum_step_names_who_is_asked_whatever_its_printed_text_says():
    m, w = start(seed_script())
    drive(m, w, before=lambda x: isinstance(x, d.RequestApproval) and x.role == "KSO")
    with console_of(seed_view(m, w), "KGA1", w.now, also=KGA) as c:
        screen = c.screen.render_text(80, 24)
        assert "as printed: KSO1 authorizes the backup using their password" in screen
        assert ("waiting for KSO1 or KSO2: 2 more KSO approval(s) of step 43's backup (any 2 "
                "KSOs, in either order)") in " ".join(screen.split())
    m, w = seed(39)  # KSO1 approved at 37 ...
    lapsed = w.now + 400  # ... and their approval lapsed: two are needed at 39 again
    v = m.view(Extras(now=lapsed, connected=frozenset(m.signed_in)))
    with console_of(v, "KGA1", lapsed, also=KGA) as c:
        screen = " ".join(c.screen.render_text(80, 24).split())
        assert "as printed: A second KSO logs into the HSM" in screen
        assert "waiting for KSO1 or KSO2: 2 more KSO approval(s)" in screen
        assert "0 of 2 KSO approvals — waiting for KSO1, KSO2" in screen


def test_an_exception_shows_observed_and_record_once_and_marks_the_difference():
    m, w = start()
    drive(m, w, until=6)
    fp = w.previous["hsm_fingerprint"]
    seen = fp[:12] + "f" + fp[13:]
    send(m, w, ev.Observed(at=w.at(), step=6, value=seen))
    with console(m.view(Extras(now=w.now)), "KGA1", w.now) as c:
        screen = c.screen.render_text(80, 24)
        assert screen.count(seen) == 1 and screen.count(fp) == 1
        rows = screen.splitlines()
        i = next(i for i, r in enumerate(rows) if r.startswith("record:   "))
        assert rows[i - 1] == f"observed: {seen}"
        assert rows[i + 1].index("^") == len("record:   ") + 12
        assert "differs from here (character 13)" in rows[i + 1]


def test_an_exception_on_a_long_value_lines_the_rows_up_at_80_columns():
    m, w = start()
    drive(m, w, until=6)
    record = colon_hex("ab" * 32)
    seen = record[:70] + "0" + record[71:]
    v = dataclasses.replace(m.view(Extras(now=w.now)), status="exception",
                            exception=ExceptionView(6, "mismatch", "x", seen, record, True))
    with console(v, "KGA1", w.now) as c:
        rows = c.screen.render_text(80, 30).splitlines()
    i = next(i for i, r in enumerate(rows) if "^" in r)
    assert rows[i - 4:i + 1] == [
        f"observed: {seen[:70]}", f"record:   {record[:70]}", f"          {seen[70:]}",
        f"          {record[70:]}", "          ^ differs from here (character 71)"]


# --- progress ------------------------------------------------------------------------------------
def test_a_bar_while_the_signer_works_even_before_its_first_report():
    """After a coordinator restart during key generation the daemon has no progress yet: the
    consoles still show that the signer is working."""
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.Execute) and x.operation["op"] == "generate")
    everyone = frozenset(m.signed_in)
    with console(m.view(Extras(now=w.now, connected=everyone)), "WI1", w.now) as c:
        screen = c.screen.render_text(80, 24)
        assert "waiting for the coordinator: the signer runs the approved generate" in screen
        assert re.search(r"^\[·+\] +working, no progress reported yet \(step 11\)$", screen, re.M)
    drive(m, w, until=13)
    done = Progress(6, 6, "generated 6 of 6 keys", step=11)
    with console(m.view(Extras(now=w.now, progress=done)), "WI1", w.now) as c:
        screen = c.screen.render_text(80, 24)
        assert "100% generated 6 of 6 keys (6/6) — step 11" in screen


# --- typing the machine can spare ----------------------------------------------------------------
def test_the_date_and_time_are_filled_in_from_the_console_clock_in_the_stated_format():
    m, w = seed(18)
    v = seed_view(m, w)
    clock = w.now + 0.4
    shown = time.strftime(DATETIME_FORMAT, time.gmtime(clock))
    with console_of(v, "KGA1", clock, also=KGA) as c:
        assert c.press("v") == []
        screen = " ".join(c.screen.render_text(80, 24).split())
        assert "Format: YYYY-MM-DDTHH:MM:SSZ (UTC)" in screen
        assert c.screen.field.text == shown
        [cmd] = c.press("\r")  # Enter confirms it
    assert cmd == {"type": "record", "seat": "KGA1", "step": 18, "value": shown}
    with console_of(v, "KGA1", clock, also=KGA) as c:
        c.press("v", "\x15", "18/11/2026 10:00\r")  # ctrl-u clears; a wrong shape is not sent
        assert c.sent == [] and "not a valid datetime: type it as YYYY-MM-DDTHH:MM:SSZ" in \
            " ".join(c.screen.render_text(80, 24).split())
        assert c.screen.field.text == "18/11/2026 10:00"  # kept, to be corrected
        [cmd] = c.press("\x15", "2026-11-18T10:00:00Z\r")
    assert cmd["value"] == "2026-11-18T10:00:00Z"
