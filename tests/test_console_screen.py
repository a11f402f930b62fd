"""The officer's console screen under prompt_toolkit with a pipe for input and a dummy output:
keystrokes in, command dicts out, and the screen drawn by the real layout read back as text.

Views come from a real machine driven by the honest room (tests/machine_helpers.py); step
numbers are those of tests/scripts/mini.toml, but for the printed transcript's digest, shown over
the bundled seed script with its steps found by action.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from ceremony.digests import colon_hex, pgp_words
from ceremony.machine import decisions as d
from ceremony.machine import events as ev
from ceremony.machine.machine import Machine
from ceremony.view import CeremonyView, Extras, JournalLine, LooseDrive, Progress
from consoles.screen import STYLE, ConsoleScreen, progress_bar
from tests.machine_helpers import (
    World,
    at_kso_quorum,
    drive,
    honest_event,
    role_of,
    seed_script,
    send,
    sign_in,
    start,
)

CTRL_C = "\x03"


class Console:
    """A ConsoleScreen on a pipe: `press()` types keys and runs the app until ctrl-c."""

    def __init__(self, screen: ConsoleScreen, pipe: Any, sent: list[dict[str, Any]]) -> None:
        self.screen, self.pipe, self.sent = screen, pipe, sent

    def press(self, *keys: str) -> list[dict[str, Any]]:
        for k in keys:
            self.pipe.send_text(k)
        self.pipe.send_text(CTRL_C)
        self.screen.app.run()
        return self.sent

    def text(self) -> str:
        return self.screen.render_text(width=160, height=60)


@contextmanager
def console(view: CeremonyView, seat: str, now: float) -> Iterator[Console]:
    sent: list[dict[str, Any]] = []
    with create_pipe_input() as pipe:
        screen = ConsoleScreen(view, seat, role_of(seat), sent.append, clock=lambda: now,
                               input=pipe, output=DummyOutput())
        yield Console(screen, pipe, sent)


def view_at(m: Machine, w: World, **extras: Any) -> CeremonyView:
    return m.view(Extras(now=w.now, **extras))


# --- approvals -----------------------------------------------------------------------------------
def test_kso2_sees_one_of_two_with_a_countdown_and_approves_with_a_passphrase():
    m, w = at_kso_quorum(have=1)
    v = view_at(m, w, connected=frozenset({"KSO1", "KSO2"}))
    (q,) = v.quorums
    assert q.expires_at is not None
    now = q.expires_at - (4 * 60 + 12)
    with console(v, "KSO2", now) as c:
        text = c.text()
        assert "1 of 2 KSO approvals — waiting for KSO2, 4:12 left" in text
        assert "approved by KSO1" in text
        assert "YOU: [p] Approve step 16's backup" in text
        assert "Backup   step 14 of 32" in text
        sent = c.press("p")
        assert sent == []  # the operation is shown and the passphrase asked first
        text = c.text()
        assert "Approve step 16 (keystore-backup) as KSO2:" in text
        assert "operation: backup on token" in text
        assert "digest " + ":".join(q.digest[i:i + 2] for i in range(0, 64, 2)) in text
        assert "words  " in text and "Passphrase of KSO2's key" in text
        sent = c.press("correct horse\r")
        assert sent == [{"type": "approve", "seat": "KSO2", "step": 16,
                         "quorum": "keystore-backup", "digest": q.digest,
                         "passphrase": "correct horse"}]
        assert "correct horse" not in c.text()  # a password field, cleared once submitted
        assert c.screen.field.text == ""


def test_the_passphrase_is_masked_while_typed():
    m, w = at_kso_quorum(have=1)
    with console(view_at(m, w), "KSO2", w.now) as c:
        c.press("p", "s3cret")
        text = c.text()
        assert "s3cret" not in text and "******" in text


def test_escape_cancels_an_approval():
    m, w = at_kso_quorum(have=1)
    with console(view_at(m, w), "KSO2", w.now) as c:
        c.screen.app.ttimeoutlen = 0.01  # a lone Escape is not the start of a sequence
        assert c.press("p", "x", "\x1b") == []
        assert c.screen.message == "cancelled" and "Passphrase" not in c.text()
        assert c.press("a") == []  # back to keys, and acknowledge is not offered here


def test_kso1_who_approved_may_refuse_with_a_reason_but_not_approve_again():
    m, w = at_kso_quorum(have=1)
    with console(view_at(m, w), "KSO1", w.now) as c:
        assert "YOU:" not in c.text()
        assert c.press("p") == []
        assert "not possible now" in c.screen.message
        sent = c.press("r", "the token id is wrong\r")
        assert sent == [{"type": "refuse", "seat": "KSO1", "step": 16,
                         "quorum": "keystore-backup", "reason": "the token id is wrong"}]


def test_a_witness_console_is_read_only():
    m, w = at_kso_quorum(have=1)
    with console(view_at(m, w), "WI1", w.now) as c:
        text = c.text()
        assert "read-only" in text and "[p]" not in text and "no actions" in text
        assert "1 of 2 KSO approvals" in text  # they see everything
        assert c.press("p", "r", "a", "v", "x", "z", "s") == []


def test_an_sa_is_not_offered_a_kso_approval():
    m, w = at_kso_quorum(have=1)
    with console(view_at(m, w), "SA1", w.now) as c:
        assert c.press("p", "r") == []
        assert "Nothing is asked of you now." in c.text()


def test_a_view_that_changed_under_an_open_prompt_lets_nothing_stale_through():
    m, w = at_kso_quorum(have=1)
    with console(view_at(m, w), "KSO2", w.now) as c:
        c.press("p")
        # meanwhile the approval lapsed and KSO1 approves again... here: the quorum moved on
        drive(m, w, until=15)
        c.screen.update(view_at(m, w))
        assert c.press("pw\r") == []
        assert "no longer possible" in c.screen.message


# --- people's steps ------------------------------------------------------------------------------
def test_sign_in_then_acknowledge():
    m, w = start()
    with console(view_at(m, w), "SA1", w.now) as c:
        assert "YOU: [s] Sign in" in c.text()
        assert c.press("s") == []  # the sign-in is signed: the seat's passphrase first
        assert "Passphrase of SA1's key (Enter signs in" in c.text()
        assert c.press("sa1 passphrase\r") == [{"type": "signin", "seat": "SA1",
                                                 "seats": ["SA1"],
                                                 "passphrase": "sa1 passphrase"}]
    drive(m, w, until=3)
    with console(view_at(m, w), "SA1", w.now) as c:
        assert "YOU: [a] Acknowledge step 3" in c.text()
        assert c.press("a") == [{"type": "acknowledge", "seat": "SA1", "step": 3}]


def test_the_request_is_bold():
    m, w = start()
    drive(m, w, until=3)
    with console(view_at(m, w), "SA1", w.now) as c:
        you = [f for f in c.screen._you_fragments() if f[1].startswith("YOU:")]
        assert you and you[0][0] == "class:you"
        assert "bold" in dict(STYLE.style_rules)["you"]


def test_enter_a_value():
    m, w = start()
    drive(m, w, until=18)
    with console(view_at(m, w), "KGA1", w.now) as c:
        assert "[v] Enter the value for step 18 (usb-serial)" in c.text()
        sent = c.press("v", "aa11 - bb22\r")
        assert sent == [{"type": "record", "seat": "KGA1", "step": 18, "value": "aa11 - bb22"}]


def test_an_empty_value_is_not_sent():
    m, w = start()
    drive(m, w, until=18)
    with console(view_at(m, w), "KGA1", w.now) as c:
        assert c.press("v", "   \r") == []
        assert "nothing typed" in c.screen.message


# --- the administrator ---------------------------------------------------------------------------
def mismatch() -> tuple[Machine, World]:
    m, w = start()
    drive(m, w, until=6)
    send(m, w, ev.Observed(at=w.at(), step=6, value="ffff-0000"))
    return m, w


def test_exception_shows_observed_against_record_on_every_console():
    m, w = mismatch()
    v = view_at(m, w)
    for seat in ("KGA1", "SA1", "WI1"):
        with console(v, seat, w.now) as c:
            text = c.text()
            assert "STOPPED" in text and "EXCEPTION at step 6 (mismatch)" in text
            assert "observed: ffff-0000" in text
            assert f"record:   {w.previous['hsm_fingerprint']}" in text


def test_kga_decides_an_exception_by_key_then_gives_the_reason():
    """x opens the decision; one key decides: a accept (then the reason), x abort (then the
    reason), r retry; nothing is typed as a word."""
    m, w = mismatch()
    with console(view_at(m, w), "KGA1", w.now) as c:
        sent = c.press("x", "q")  # not a choice: nothing happens, the menu stays
        assert sent == [] and "[a] accept it as observed, with a reason" in c.text()
        sent = c.press("a")
        assert sent == [] and "Reason:" in c.text()
        sent = c.press("the record had a typo, checked the label\r")
        assert sent == [{"type": "decide", "seat": "KGA1", "step": 6, "decision": "accept",
                         "reason": "the record had a typo, checked the label"}]
    with console(view_at(m, w), "KGA1", w.now) as c:
        assert c.press("x", "x", "wrong hardware in the room\r") == [
            {"type": "decide", "seat": "KGA1", "step": 6, "decision": "abort",
             "reason": "wrong hardware in the room"}]


def test_kga_retries_without_a_reason():
    m, w = mismatch()
    with console(view_at(m, w), "KGA1", w.now) as c:
        assert c.press("x", "r") == [
            {"type": "decide", "seat": "KGA1", "step": 6, "decision": "retry", "reason": ""}]


def test_a_failure_is_not_offered_accept():
    m, w = start()
    drive(m, w, until=5)
    send(m, w, ev.PerformFailed(at=w.at(), step=5, error="token not found"))
    with console(view_at(m, w), "KGA1", w.now) as c:
        assert c.press("x", "a") == []
        assert "[a] accept" not in c.text() and "[x] abort the ceremony" in c.text()
        assert "EXCEPTION at step 5 (failure): token not found" in c.text()


def test_only_the_kga_decides():
    m, w = mismatch()
    with console(view_at(m, w), "SA1", w.now) as c:
        assert c.press("x", "retry\r") == []


def test_pause_and_resume():
    m, w = start()
    drive(m, w, until=3)
    with console(view_at(m, w), "KGA1", w.now) as c:
        assert c.press("g") == []
        assert c.press("z") == [{"type": "pause", "seat": "KGA1", "step": 3}]
    send(m, w, ev.Pause(at=w.now, seat="KGA1"))  # the machine's: as a replay would see it
    with console(view_at(m, w), "KGA1", w.now) as c:
        assert "PAUSED" in c.text()
        assert c.press("z", "g") == [{"type": "resume", "seat": "KGA1", "step": 3}]


# --- progress, panels, updates --------------------------------------------------------------------
def test_progress_bar_and_panels():
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.Execute) and x.operation["op"] == "generate")
    assert m.section_since is not None
    w.now = m.section_since + 75  # the section began 1:15 ago
    extras = dict(connected=frozenset({"KGA1", "SA1"}),
                  journal=tuple(JournalLine(i, w.now, f"entry {i}") for i in range(20)))
    with console(view_at(m, w, progress=Progress(51, 85, "generating keys"), **extras),
                 "WI1", w.now) as c:
        text = c.text()
        assert progress_bar(51, 85) + " generating keys (51/85)" in text
        assert " 60%" in text
        assert "1:15 of" in text  # elapsed against the section's estimate
        assert "SA1   Bob Sysadmin: signed in, connected" in text
        assert "KSO1  Carol Keystore: signed in, DISCONNECTED" in text
        assert "KSO3  Frank Third: not signed in" in text
        assert "entry 19" in text and "entry 0\n" not in text + "\n"  # the tail that fits
        small = c.screen.render_text(width=100, height=30)
        assert "entry 19" in small and "entry 15" not in small  # the journal shrinks first
        assert "the signer runs the approved generate" in text
        c.screen.update(view_at(m, w, progress=Progress(85, 85, "generating keys"), **extras))
        assert "100% generating keys (85/85)" in c.text()
        c.screen.update(view_at(m, w, **extras))
        assert "generating keys" not in c.text()


def test_progress_bar_text():
    assert progress_bar(0, 10, width=10) == "[----------]   0%"
    assert progress_bar(5, 10, width=10) == "[#####-----]  50%"
    assert progress_bar(12, 10, width=10) == "[##########] 100%"
    assert progress_bar(0, 0, width=4) == "[----]   0%"


def test_custody_panel_after_the_seal():
    m, w = start()
    drive(m, w, until=26)
    with console(view_at(m, w, drives_seen=frozenset({"backup"})), "KSO1", w.now) as c:
        text = c.text()
        assert "bag backup TEB000BACKUP: held by Alice Admin (DSO1)" in text
        assert "drive backup: AA11BB22, plugged in" in text
        assert "in the port, no label" not in text
    spare = LooseDrive("0000WRONG0001", "Generic", "Flash_Disk")
    with console(view_at(m, w, loose_drives=(spare,)), "KSO1", w.now) as c:
        assert "in the port, no label: Generic Flash_Disk serial 0000WRONG0001" in c.text()


def test_completed():
    m, w = start()
    drive(m, w)
    with console(view_at(m, w), "KGA1", w.now) as c:
        assert "CEREMONY COMPLETED" in c.text()
        assert c.press("a", "z") == []


def test_update_from_another_thread_while_running():
    """The daemon's side calls update() from its own thread; the screen redraws the new view."""
    import threading

    m, w = start()
    drive(m, w, until=3)
    first = view_at(m, w)
    drive(m, w, until=18)
    second = view_at(m, w)
    with console(first, "KGA1", w.now) as c:
        def later() -> None:
            c.screen.update(second)
            c.pipe.send_text("v")
            c.pipe.send_text("AA11BB22\r")
            c.pipe.send_text(CTRL_C)

        c.screen.app.run(pre_run=lambda: threading.Timer(0.05, later).start())
        assert c.sent == [{"type": "record", "seat": "KGA1", "step": 18, "value": "AA11BB22"}]
        assert "Step 18" in c.text()


def test_a_small_terminal_still_draws():
    m, w = at_kso_quorum(have=1)
    with console(view_at(m, w), "KSO2", w.now) as c:
        text = c.screen.render_text(width=80, height=24)
        assert "Mini Key Generation" in text and "[p] approve" in text


# --- the live console's additions ----------------------------------------------------------------
@contextmanager
def console_of(view: CeremonyView, seat: str, now: float,
               also: tuple[tuple[str, str], ...] = ()) -> Iterator[Console]:
    sent: list[dict[str, Any]] = []
    with create_pipe_input() as pipe:
        screen = ConsoleScreen(view, seat, role_of(seat), sent.append, also=also,
                               clock=lambda: now, input=pipe, output=DummyOutput())
        yield Console(screen, pipe, sent)


def test_one_person_signs_in_all_their_seats_at_once_and_acts_for_each() -> None:
    m, w = start()
    with console_of(view_at(m, w), "KSO1", w.now, also=(("DSO2", "DSO"),)) as c:
        assert "you: KSO1 (KSO), DSO2 (DSO)" in c.text()
        assert c.press("s") == []
        assert "Passphrase of KSO1's key (1 of 2)" in c.text()
        assert c.press("kso phrase\r") == []  # each seat's own key signs: its passphrase too
        assert "Passphrase of DSO2's key (2 of 2)" in c.text()
        [cmd] = c.press("dso phrase\r")
    assert cmd == {"type": "signin", "seat": "KSO1", "seats": ["KSO1", "DSO2"],
                   "passphrases": {"KSO1": "kso phrase", "DSO2": "dso phrase"}}


def test_the_administrator_signs_in_a_witness_by_seat() -> None:
    m, w = start()
    send(m, w, sign_in(w, "alice"))
    with console(view_at(m, w), "KGA1", w.now) as c:
        assert c.press("i") == []
        text = c.text()
        listed = [line.strip() for line in text.splitlines() if line[2:5].endswith(") ")]
        # witnesses only: officers sign in with their own keys
        assert listed == ["> 1) WI1   Erin Witness (WI)", "2) WI2   Gina Guest (WI)"]
        assert c.press("1", " ") == []  # its number marks it, Space (or Enter) picks it
        text = c.text()
        assert "The ID document you checked for WI1 (Erin Witness):" in text
        assert "[p] passport" in text and "[d] driving licence" in text
        assert c.press("d") == []
        assert "type only the last 4 digits" in c.text()
        assert c.press("123456789\r") == []  # never the whole number
        assert "never the whole number (9 characters given)" in c.screen.message
        c.screen.field.text = ""
        assert c.press("12ab\r") == []
        text = c.text()
        assert "You checked their driving licence ending 12AB" in text
        assert "Passphrase of KGA1's key (Enter signs WI1 in" in text
        [cmd] = c.press("kga phrase\r")
    assert cmd == {"type": "signin", "seat": "KGA1", "id_checked": True, "seats": ["WI1"],
                   "id_document": "driving-licence", "id_digits": "12AB",
                   "passphrase": "kga phrase"}
    with console(view_at(m, w), "KGA1", w.now) as c:
        c.press("i", "\x1b[B", "\r", "p", "4711\r")  # or the arrows, then Enter
        [cmd] = c.press("pw\r")
    assert (cmd["seats"], cmd["id_document"], cmd["id_digits"]) == (["WI2"], "passport", "4711")


def test_the_steps_actor_types_a_password_the_operation_needs_masked() -> None:
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.Execute) and bool(x.secrets))
    want = m.wants(now=w.now)[0]
    assert isinstance(want, d.Execute)
    view = m.view(Extras(now=w.now, secrets_needed=want.secrets))
    actor = next(s for s in sorted(m.signed_in)
                 if role_of(s) == m.script.step(want.step).actor)
    with console(view, actor, w.now) as c:
        c.pipe.send_text("w")
        c.pipe.send_text("s3cret-pw")
        c.pipe.send_text(CTRL_C)
        c.screen.app.run()
        assert "s3cret-pw" not in c.text()  # masked while typed
        assert c.press("\r") == [] and "Confirm password:" in c.text()  # asked twice
        assert c.press("s3cret-pv\r") == []  # they differ: nothing sent, start over
        assert "the two entries differ: nothing was sent" in c.text()
        assert "Password:" in c.text() and "Confirm" not in c.text()
        [cmd] = c.press("s3cret-pw\r", "s3cret-pw\r")
        assert "s3cret" not in c.text() and c.screen.field.text == ""
    assert cmd == {"type": "secret", "seat": actor, "step": want.step, "name": want.secrets[0],
                   "value": "s3cret-pw"}


def test_acknowledging_a_step_that_is_not_yours_is_asked_of_the_coordinator() -> None:
    """Its refusal, with the machine's reason, comes back on the message line; a witness's
    console sends nothing."""
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.Ask) and x.kind == "acknowledge"
          and x.role == "KGA" and bool(m.signed_in))
    view = view_at(m, w)
    with console(view, "SA1", w.now) as c:
        [cmd] = c.press("a")
        assert cmd == {"type": "acknowledge", "seat": "SA1", "step": view.step.n}  # type: ignore[union-attr]
        c.screen.notify("REFUSED acknowledge: step 1 is for the KGA")
        assert "REFUSED acknowledge: step 1 is for the KGA" in c.text()
    with console(view, "WI1", w.now) as c:
        assert c.press("a", "p") == []
        assert "this console is read-only" in c.text()


def test_a_custodian_types_the_bag_serial_then_signs_for_the_bag() -> None:
    m, w = start()
    drive(m, w, before=lambda x: isinstance(x, d.Ask) and x.kind == "seal")
    want = m.wants(now=w.now)[0]
    assert isinstance(want, d.Ask)
    step = m.script.step(want.step)
    custodian = next(s for s in sorted(m.signed_in) if role_of(s) == step.actor)
    with console(view_at(m, w), custodian, w.now) as c:
        c.pipe.send_text("v")
        c.pipe.send_text("teb-000-backup\r")
        c.pipe.send_text(CTRL_C)
        c.screen.app.run()
        text = c.text()
        assert f"Take bag {step.bag} with serial teb-000-backup, holding:" in text
        assert all(f"  {x}" in text for x in step.contents)
        [cmd] = c.press("my passphrase\r")
    assert cmd == {"type": "record", "seat": custodian, "step": step.n,
                   "value": "teb-000-backup", "passphrase": "my passphrase"}


# --- the printed transcript's digest --------------------------------------------------------------
# The bundled seed script, its transcript step and the record step that confirms it found by
# action and by `equals` (never by number: the script's closing steps may be renumbered).
SEED_SEATS = (("KGA1", (("DSO1", "DSO"),)), ("SA1", ()), ("KSO1", ()), ("WI1", ()))
SIZES = ((80, 24), (200, 50))
TEXT_SHA256 = hashlib.sha256(b"the transcript's text").hexdigest()
PDF_SHA256 = hashlib.sha256(b"the transcript's pdf").hexdigest()
FILE = "transcript-20261207.txt"


def transcript_written() -> tuple[Machine, World, int, int]:
    """The seed ceremony just past its transcript step, whose result is the coordinator's
    (coordinator/ceremony_world.py): the text's and the PDF's digests in colon hex."""
    m, w = start(seed_script())
    n = next(x.n for x in m.steps if x.action == "transcript")
    confirm = next(x.n for x in m.steps if x.action == "record" and x.equals == n)
    drive(m, w, until=n)
    w.transcript_sha256 = TEXT_SHA256
    send(m, w, ev.Performed(at=w.at(), step=n, result={
        "file": FILE, "drive": "keygen-copy", "sha256": colon_hex(TEXT_SHA256),
        "pdf": FILE.replace(".txt", ".pdf"), "pdf_sha256": colon_hex(PDF_SHA256)}))
    return m, w, n, confirm


def kga_confirms(m: Machine, w: World, confirm: int) -> None:
    """The KGA types the digest read aloud at its step, as colon hex in capitals (the honest
    room of machine_helpers would pair up the colon hex's characters again)."""
    drive(m, w, until=confirm)
    send(m, w, ev.Record(at=w.at(), seat="KGA1", value=colon_hex(TEXT_SHA256).upper()))


def seed_view_at(m: Machine, w: World) -> CeremonyView:
    return view_at(m, w, connected=frozenset(m.signed_in))


def joined(screen: str, label: str) -> str:
    """What the row starting with `label` and the rows continuing it (indented under it) say,
    all spaces dropped: the rows of a box or of a prompt alike."""
    rows = [r.strip("│") for r in screen.splitlines()]
    start_ = next(i for i, r in enumerate(rows) if r.startswith(label))
    out = rows[start_][len(label):]
    for r in rows[start_ + 1:]:
        if not r.startswith(" " * len(label)) or not r.strip():
            break
        out += r
    return "".join(out.split())


def shows_the_digest_whole(screen: str, height: int) -> None:
    """The full colon hex and all 32 PGP words, in order, every word whole, and nothing of the
    screen cut off."""
    assert len(screen.splitlines()) <= height
    assert "more lines: enlarge the terminal" not in screen
    assert joined(screen, "sha256 ") == colon_hex(TEXT_SHA256), screen
    words = pgp_words(TEXT_SHA256).split()
    assert len(words) == 32
    assert joined(screen, "words  ") == "".join(words), screen
    on_screen = screen.replace("│", " ").split()
    assert all(word in on_screen for word in words), screen  # none broken across rows


def test_before_the_transcript_is_written_no_console_shows_a_digest():
    m, w = start(seed_script())
    drive(m, w, until=next(x.n for x in m.steps if x.action == "transcript"))
    v = seed_view_at(m, w)
    assert v.transcript is None
    for seat, also in SEED_SEATS:
        with console_of(v, seat, w.now, also=also) as c:
            for size in SIZES:
                assert "Printed transcript" not in c.screen.render_text(*size)


def test_every_console_shows_the_transcript_digest_whole_at_80x24_and_large():
    m, w, n, confirm = transcript_written()
    v = seed_view_at(m, w)
    assert v.transcript is not None and v.step is not None and v.step.n != n
    for seat, also in SEED_SEATS:
        with console_of(v, seat, w.now, also=also) as c:
            small = c.screen.render_text(80, 24)
            shows_the_digest_whole(small, 24)
            assert f"Printed transcript: {FILE}" in small  # compact: the file in the title
            large = c.screen.render_text(200, 50)
            shows_the_digest_whole(large, 50)
            assert colon_hex(TEXT_SHA256) in large  # on one row at 200 columns
            assert pgp_words(TEXT_SHA256) in " ".join(large.replace("│", " ").split())
            assert f"{FILE} written at step {n}, read aloud and confirmed at step {confirm}" \
                in large
            assert f"PDF    {FILE.replace('.txt', '.pdf')}  sha256 {colon_hex(PDF_SHA256)}" \
                in large


def test_the_digest_stays_on_every_console_to_the_end_of_the_ceremony():
    """At every step after the transcript's, and once the ceremony is over, each seat's 80x24
    screen holds the whole digest and its words."""
    m, w, _, confirm = transcript_written()
    seen = set()
    while True:
        v = seed_view_at(m, w)
        seen.add(v.step.n if v.step is not None else None)
        for seat, also in SEED_SEATS:
            with console_of(v, seat, w.now, also=also) as c:
                shows_the_digest_whole(c.screen.render_text(80, 24), 24)
        if m.current is None:
            break
        here = m.current.n
        while m.current is not None and m.current.n == here:
            if here == confirm:
                kga_confirms(m, w, confirm)
            else:
                send(m, w, honest_event(m, w))
    assert m.status == "completed" and confirm in seen and None in seen
    with console_of(seed_view_at(m, w), "KGA1", w.now, also=SEED_SEATS[0][1]) as c:
        assert f"confirmed at step {confirm}" in c.screen.render_text(200, 50)


def test_the_kga_compares_the_digest_read_aloud_at_the_step_that_confirms_it():
    m, w, n, confirm = transcript_written()
    drive(m, w, until=confirm)
    v = seed_view_at(m, w)
    assert v.step is not None and v.step.n == confirm
    for seat, also in SEED_SEATS:  # on every console the step shows it whole, once
        with console_of(v, seat, w.now, also=also) as c:
            for width, height in SIZES:
                screen = c.screen.render_text(width, height)
                shows_the_digest_whole(screen, height)
                assert screen.count(colon_hex(TEXT_SHA256)[:47]) == 1  # the first 16 bytes
                assert "record:" not in screen and "observed:" not in screen
    with console_of(v, "KGA1", w.now, also=SEED_SEATS[0][1]) as c:
        assert c.press("v") == []
        for width, height in SIZES:
            screen = c.screen.render_text(width, height)
            shows_the_digest_whole(screen, height)
            assert f"The printed transcript's digest (step {n}, {FILE}): compare it" in \
                " ".join(screen.split())
        prompt = c.screen.render_text(80, 24).split("Enter the value for step", 1)[1]
        shows_the_digest_whole(prompt, 24)  # in the prompt itself, over the field
        typed = colon_hex(TEXT_SHA256).upper()
        assert c.press(typed + "\r") == [{"type": "record", "seat": "KGA1", "step": confirm,
                                          "value": typed}]


def test_another_record_step_prompt_shows_no_digest():
    m, w, _, confirm = transcript_written()
    later = next(x.n for x in m.steps if x.action == "record" and x.n > confirm)
    kga_confirms(m, w, confirm)
    drive(m, w, until=later)
    v = seed_view_at(m, w)
    assert v.step is not None and v.step.actor == "KGA"
    with console_of(v, "KGA1", w.now, also=SEED_SEATS[0][1]) as c:
        c.press("v")
        screen = c.screen.render_text(80, 24)
        assert "compare it with what was read aloud" not in screen
        shows_the_digest_whole(screen, 24)  # the box is still there


def test_a_prompt_too_tall_for_the_digest_too_hides_it_whole_until_it_closes():
    """The exception at the verify after the transcript: the KGA's menu of decisions leaves
    80x24 no room for the box, which then goes whole (never a part of the digest) and comes
    back with Esc."""
    m, w, _, _ = transcript_written()
    other = colon_hex(hashlib.sha256(b"another transcript").hexdigest())
    send(m, w, ev.Observed(at=w.at(), step=m.current.n, value=other))
    v = seed_view_at(m, w)
    assert v.exception is not None and v.transcript is not None
    with console_of(v, "KGA1", w.now, also=SEED_SEATS[0][1]) as c:
        shows_the_digest_whole(c.screen.render_text(80, 24), 24)
        c.press("x")
        screen = c.screen.render_text(80, 24)
        assert "[a] accept it as observed, with a reason" in screen
        assert "Printed transcript" not in screen and "words  " not in screen
        assert "more lines: enlarge the terminal" not in screen
        shows_the_digest_whole(c.screen.render_text(200, 50), 50)  # room for both
        c.press("\x1b")
        shows_the_digest_whole(c.screen.render_text(80, 24), 24)
