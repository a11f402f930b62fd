"""One officer's full-screen console (prompt_toolkit): it shows a `CeremonyView` and turns
keystrokes into command dicts. No network, no keys, no clock of its own beyond the countdown.

The view comes from outside through `update()` (safe from another thread or loop: it swaps a
reference and calls `app.invalidate()`); commands leave through `on_command(dict)`. What the
officer may do is `actions_for(view, seat, role)`, asked again at every keystroke and again when a
typed input is submitted, so a view that changed meanwhile (the quorum filled, an exception was
decided) never lets a stale action through.

Approve and sign-off carry the typed `passphrase` in the command: signing is the caller's job
(unlock the seat's key for this one signature, build the Approval, send that and never the
passphrase). Keeping keys out of this module keeps it testable with a pipe and a dummy output.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.application.current import set_app
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import ConditionalContainer, HSplit, Layout, VSplit, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from prompt_toolkit.layout.mouse_handlers import MouseHandlers
from prompt_toolkit.layout.screen import Screen, WritePosition
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style
from prompt_toolkit.widgets import Frame, TextArea

from consoles.view import KEYS, Action, CeremonyView, QuorumView, absent_actor, actions_for
from keyrite.digests import colon_hex, pgp_words

STYLE = Style.from_dict({
    "title": "bold",
    "you": "bold reverse",
    "bad": "bold fg:ansired",
    "good": "fg:ansigreen",
    "dim": "fg:ansibrightblack",
    "bar": "fg:ansicyan",
})
JOURNAL_LINES = 8
BAR_WIDTH = 30

Fragments = StyleAndTextTuples


def mmss(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[#######-------]  50%`: the same text on every console for the same progress."""
    pct = 0 if total <= 0 else min(100, done * 100 // total)
    filled = width * pct // 100
    return f"[{'#' * filled}{'-' * (width - filled)}] {pct:3d}%"


def quorum_line(q: QuorumView, now: float) -> str:
    """"1 of 2 KSO approvals — waiting for KSO2, 4:12 left"."""
    text = f"{q.have} of {q.need} {q.role} approvals"
    if q.waiting_for:
        text += f" — waiting for {', '.join(q.waiting_for)}"
    elif q.have < q.need:
        text += f" — waiting for a {q.role} to sign in"
    if q.expires_at is not None:
        text += f", {mmss(q.expires_at - now)} left"
    return text


def operation_lines(op: dict[str, Any]) -> list[str]:
    """The whole operation, as an approver must see it before signing."""
    kind = op.get("op")
    lines = [f"operation: {kind} on token {op.get('token', '?')}"]
    if kind == "purge":
        keys = list(op.get("delete", []))
        lines.append(f"delete {len(keys)} dead keys: {' '.join(map(str, keys))}")
    elif kind == "generate":
        for b in op.get("batches", []):
            lines.append(f"  {b.get('policy')} {b.get('role')} {b.get('algorithm')}: "
                         f"{b.get('count')} new keys")
        for k in op.get("keys", []):
            lines.append(f"  {k.get('policy')} {k.get('role')} {k.get('algorithm')}")
        if op.get("duration"):
            lines.append(f"for {op['duration']}")
    elif kind == "backup":
        lines.append(f"write {op.get('file', '?')} of token {op.get('token', '?')}")
    return lines


@dataclass
class _Prompt:
    """An input the officer is typing: shown above the field, submitted with Enter."""

    lines: list[str]
    label: str
    secret: bool
    submit: Callable[[str], None]


class ConsoleScreen:
    def __init__(
        self,
        view: CeremonyView,
        seat: str,
        role: str,
        on_command: Callable[[dict[str, Any]], None],
        *,
        also: tuple[tuple[str, str], ...] = (),
        status: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.time,
        input: Input | None = None,
        output: Output | None = None,
    ) -> None:
        self.view = view
        self.seat = seat
        self.role = role
        self.on_command = on_command
        self.also = also  # (seat, role): the same person's other seats, acted for from here
        self.status = status  # one more line under the header (the auditor's journal copy)
        self.clock = clock
        self.message = ""
        self._prompt: _Prompt | None = None

        prompting = Condition(lambda: self._prompt is not None)
        self.field = TextArea(
            multiline=False,
            password=Condition(lambda: bool(self._prompt and self._prompt.secret)),
            accept_handler=self._accept,
            prompt=lambda: [("class:you", (self._prompt.label if self._prompt else "") + " ")],
        )
        self._body = Window(FormattedTextControl(self._step_fragments, focusable=True),
                            wrap_lines=True, dont_extend_height=True)

        def panel(title: str, fn: Callable[[], Fragments]) -> Frame:
            return Frame(Window(FormattedTextControl(fn), wrap_lines=True,
                                dont_extend_height=True), title=title)

        root = HSplit([
            Window(FormattedTextControl(self._header_fragments), dont_extend_height=True),
            self._body,
            ConditionalContainer(
                Window(FormattedTextControl(self._progress_fragments), height=1),
                filter=Condition(lambda: self.view.progress is not None)),
            VSplit([panel("Participants", self._participants_fragments),
                    HSplit([panel("Quorum", self._quorum_fragments),
                            panel("Drives and bags", self._custody_fragments)])]),
            panel("Journal", self._journal_fragments),
            Window(),
            ConditionalContainer(HSplit([
                Window(FormattedTextControl(self._prompt_fragments), wrap_lines=True,
                       dont_extend_height=True),
                self.field,
            ]), filter=prompting),
            Window(FormattedTextControl(self._footer_fragments), height=1),
        ])
        self.app: Application[None] = Application(
            layout=Layout(root, focused_element=self._body),
            key_bindings=self._bindings(prompting),
            style=STYLE,
            full_screen=True,
            refresh_interval=1.0,  # the countdown and the elapsed time tick between views
            input=input,
            output=output,
        )

    # --- from outside ----------------------------------------------------------------------------
    def update(self, view: CeremonyView) -> None:
        """Show a new view. Safe from any thread: the change and the redraw request are handed
        to the screen's own loop (prompt_toolkit's invalidate is not meant for other threads: a
        redraw lost that way froze a console's screen for good in the tmux test)."""
        self._on_screen_loop(lambda: setattr(self, "view", view))

    def notify(self, text: str) -> None:
        """Show one line of feedback (the coordinator's refusal reason, for one)."""
        self._on_screen_loop(lambda: setattr(self, "message", text))

    def _on_screen_loop(self, change: Callable[[], None]) -> None:
        loop = self.app.loop
        if loop is None or not self.app.is_running or loop.is_closed():
            change()  # not drawing yet (or any more): the next draw reads it
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            change()
            self.app.invalidate()
            return

        def on_loop() -> None:
            change()
            self.app.invalidate()

        try:
            loop.call_soon_threadsafe(on_loop)
        except RuntimeError:  # the loop closed meanwhile
            change()

    def actions(self) -> list[Action]:
        """This seat's actions, then the same person's other seats' (signing in takes them all
        at once: one person, one sign-in)."""
        out = []
        for a in actions_for(self.view, self.seat, self.role):
            if a.kind == "signin" and self.also:
                seats = [self.seat, *(s for s, _ in self.also
                                      if not (p := self.view.participant(s)) or not p.signed_in)]
                a = dataclasses.replace(a, command={**a.command, "seats": seats})
            out.append(a)
        for seat, role in self.also:
            out += [a for a in actions_for(self.view, seat, role) if a.kind != "signin"]
        return out

    def render_text(self, width: int = 110, height: int = 70) -> str:
        """The screen as plain text, drawn by the real layout (for tests and snapshots)."""
        screen = Screen()
        self.app.render_counter += 1  # controls cache their text per render: draw afresh
        with set_app(self.app):
            self.app.layout.container.write_to_screen(
                screen, MouseHandlers(), WritePosition(0, 0, width, height), "", False, None)
            screen.draw_all_floats()
        rows = ["".join(screen.data_buffer[y][x].char for x in range(width)).rstrip()
                for y in range(height)]
        return "\n".join(rows).rstrip()

    # --- keys ------------------------------------------------------------------------------------
    def _bindings(self, prompting: Condition) -> KeyBindings:
        kb = KeyBindings()
        for kind, key in KEYS.items():
            kb.add(key, filter=~prompting)(self._starter(kind))

        @kb.add("escape", filter=prompting)
        def _cancel(event: KeyPressEvent) -> None:
            self._close("cancelled")

        @kb.add("c-c")
        def _quit(event: KeyPressEvent) -> None:
            event.app.exit()

        return kb

    def _starter(self, kind: str) -> Callable[[KeyPressEvent], None]:
        def start(event: KeyPressEvent) -> None:
            action = self._find(kind)
            if action is None:
                self._not_offered(kind)
                return
            self.message = ""
            self._begin(action)
        return start

    def _not_offered(self, kind: str) -> None:
        """An officer who acknowledges a step that is not theirs is told why by the coordinator
        (the machine's reason, journaled as a refusal); read-only consoles never send."""
        role = self.view.role(self.role)
        step = self.view.step
        if (kind == "acknowledge" and role is not None and not role.observer and step is not None
                and self.view.status == "running"
                and any(a.kind == "acknowledge" for a in step.asked)):
            self.message = f"sent: acknowledge step {step.n} (not offered to you)"
            self.on_command({"type": "acknowledge", "seat": self.seat, "step": step.n})
            return
        if role is not None and role.observer:
            self.message = "this console is read-only"
            return
        self.message = f"[{KEYS[kind]}] is not possible now"

    def _find(self, kind: str, command: dict[str, Any] | None = None) -> Action | None:
        for a in self.actions():
            if a.kind == kind and (command is None or a.command == command):
                return a
        return None

    def _begin(self, a: Action) -> None:
        if not a.needs:
            self._send(a, {})
        elif a.kind == "approve":
            op = a.detail.get("operation", {})
            digest = str(a.command["digest"])
            seat = a.command["seat"]
            self._open(_Prompt(
                [f"Approve step {a.command['step']} ({a.command['quorum']}) as {seat}:",
                 *operation_lines(op), f"digest {colon_hex(digest)}",
                 f"words  {pgp_words(digest)}"],
                f"Passphrase of {seat}'s key (Enter approves, Esc cancels):", True,
                lambda text: self._send(a, {"passphrase": text})))
        elif a.kind == "signoff":
            self._open(_Prompt(
                ["Sign this journal checkpoint:", *str(a.command["checkpoint"]).splitlines()],
                f"Passphrase of {a.command['seat']}'s key:", True,
                lambda text: self._send(a, {"passphrase": text})))
        elif a.kind == "secret":
            self._open(_Prompt([a.label, "It is used for this operation only: never journaled, "
                                "never shown."], "Password:", True,
                               lambda text: self._send(a, {"value": text})))
        elif a.kind == "admit":
            self._admit(a)
        elif a.kind == "record" and "passphrase" in a.needs:
            self._open(_Prompt([a.label], "Value:", False, lambda text: self._seal(a, text)))
        elif a.kind == "record":
            self._open(_Prompt([a.label], "Value:", False,
                               lambda text: self._send(a, {"value": text.strip()})))
        elif a.kind == "refuse":
            self._open(_Prompt([a.label], "Reason:", False,
                               lambda text: self._send(a, {"reason": text.strip()})))
        elif a.kind == "decide":
            self._decide(a)

    def _decide(self, a: Action) -> None:
        choices = list(a.detail.get("choices", []))

        def chosen(text: str) -> None:
            decision = text.strip().lower()
            if decision not in choices:
                self.message = f"type one of: {', '.join(choices)}"
                self._decide(a)
                return
            if decision == "retry":
                self._send(a, {"decision": "retry", "reason": ""})
                return
            self._open(_Prompt([f"{decision.capitalize()} the exception: the reason is "
                                "recorded with the step."], "Reason:", False,
                               lambda r: self._send(a, {"decision": decision,
                                                        "reason": r.strip()})))

        self._open(_Prompt([a.label, *self._exception_lines()],
                           f"Decision ({' / '.join(choices)}):", False, chosen))

    def _seal(self, a: Action, typed: str) -> None:
        """The custodian's second input: the passphrase that signs for the bag as typed (at a
        seal, or at a hand-over from the seat that holds it)."""
        serial = typed.strip()
        giver = f" from {a.detail['from']}" if a.detail.get("from") else ""
        self._open(_Prompt(
            [f"Take bag {a.detail.get('bag')} with serial {serial}{giver}, holding:",
             *(f"  {c}" for c in a.detail.get("contents", [])),
             "Your signature records that you hold it from now on."],
            f"Passphrase of {a.command['seat']}'s key (Enter signs, Esc cancels):", True,
            lambda secret: self._send(a, {"value": serial, "passphrase": secret})))

    def _admit(self, a: Action) -> None:
        choices = list(a.detail.get("choices", []))

        def chosen(text: str) -> None:
            seat = text.strip().upper()
            if seat not in choices:
                self.message = f"type one of: {', '.join(choices)}"
                self._admit(a)
                return
            self._send(a, {"seats": [seat]})

        self._open(_Prompt([a.label, "Check the person's government ID first.",
                            f"Not signed in: {', '.join(choices)}"], "Seat:", False, chosen))

    def _open(self, prompt: _Prompt) -> None:
        self._prompt = prompt
        self.field.text = ""
        self.app.layout.focus(self.field)

    def _close(self, message: str = "") -> None:
        self._prompt = None
        self.message = message
        self.app.layout.focus(self._body)

    def _accept(self, buffer: Any) -> bool:
        prompt = self._prompt
        text = buffer.text
        if prompt is None:
            return False
        if not text.strip():
            self.message = "nothing typed (Esc cancels)"
            return False
        self._prompt = None
        self.app.layout.focus(self._body)
        prompt.submit(text)
        return False  # clear the field: a passphrase never stays in a buffer

    def _send(self, a: Action, inputs: dict[str, Any]) -> None:
        # the view may have changed since the key was pressed: offer only what is still offered
        if self._find(a.kind, a.command) is None:
            self.message = f"no longer possible: {a.label}"
            return
        self.message = f"sent: {a.label}"  # first: the answer may come back before we return
        self.on_command({**a.command, **inputs})

    # --- drawing ---------------------------------------------------------------------------------
    def _header_fragments(self) -> Fragments:
        v = self.view
        now = self.clock()
        seats = ", ".join(f"{s} ({r})" for s, r in ((self.seat, self.role), *self.also))
        out: Fragments = [("class:title", f"{v.title}  ({v.ceremony_id})"),
                          ("", f"   you: {seats}\n")]
        if v.step is not None:
            elapsed = mmss(now - v.section_started) if v.section_started is not None else "-:--"
            out.append(("", f"{v.section}   step {v.step.position} of {v.step.total}   "
                            f"{elapsed} of {mmss(v.section_estimate)} estimated"))
            if v.section_started is not None and now - v.section_started > v.section_estimate:
                out.append(("class:bad", "  (over the estimate)"))
            out.append(("", "\n"))
        if v.status != "running":
            badge = {"exception": "STOPPED: an exception awaits the administrator's decision",
                     "paused": "PAUSED by the administrator", "completed": "CEREMONY COMPLETED",
                     "aborted": "CEREMONY ABORTED"}.get(v.status, v.status.upper())
            out.append(("class:bad" if v.status != "completed" else "class:good", badge + "\n"))
        absent = absent_actor(v)
        if absent:
            out.append(("class:bad", f"WAITING: {absent}\n"))
        if self.status is not None:
            out.append(("", self.status() + "\n"))
        return out

    def _step_fragments(self) -> Fragments:
        v = self.view
        s = v.step
        out: Fragments = []
        if s is None:
            return [("", "No current step.\n")] + self._you_fragments()
        out.append(("class:title", f"Step {s.n}  [{s.actor}]  {s.action}\n"))
        out.append(("", f"{s.text}\n"))
        if s.note:
            out.append(("class:dim", f"note: {s.note}\n"))
        if s.observed is not None or s.expected is not None:
            out.append(("", f"observed: {s.observed if s.observed is not None else '(not yet)'}\n"))
            out.append(("", f"record:   {s.expected if s.expected is not None else '-'}\n"))
        out += self._exception_fragments()
        for a in s.asked:
            who = f"the {a.role}" if a.role else "the coordinator"
            out.append(("class:dim", f"waiting for {who}: {a.text}\n"))
        return out + self._you_fragments()

    def _exception_fragments(self) -> Fragments:
        return [("class:bad", line + "\n") for line in self._exception_lines()]

    def _exception_lines(self) -> list[str]:
        e = self.view.exception
        if e is None:
            return []
        lines = [f"EXCEPTION at step {e.step} ({e.kind}): {e.reason}"]
        if e.observed is not None:
            lines.append(f"  observed {e.observed}")
        if e.expected is not None:
            lines.append(f"  record   {e.expected}")
        return lines

    def _you_fragments(self) -> Fragments:
        """In bold: what is asked of this officer now, with the keys that do it."""
        acts = self.actions()
        role = self.view.role(self.role)
        if role is not None and role.observer:
            return [("class:dim", "You observe: this console is read-only.\n")]
        asked = [a for a in acts if a.kind not in ("pause", "refuse", "admit")]
        if not asked:
            return [("class:dim", "Nothing is asked of you now.\n")]
        text = "; ".join(f"[{a.key}] {a.label}" for a in asked)
        return [("class:you", f"YOU: {text}"), ("", "\n")]

    def _progress_fragments(self) -> Fragments:
        p = self.view.progress
        if p is None:
            return []
        return [("class:bar", progress_bar(p.done, p.total)),
                ("", f" {p.what} ({p.done}/{p.total})")]

    def _participants_fragments(self) -> Fragments:
        out: Fragments = []
        for p in self.view.participants:
            if not p.signed_in:
                out.append(("class:dim", f"{p.seat:<5} {p.name}: not signed in\n"))
            elif p.connected:
                out.append(("", f"{p.seat:<5} {p.name}: signed in, connected\n"))
            else:
                out.append(("class:bad", f"{p.seat:<5} {p.name}: signed in, DISCONNECTED\n"))
        return out

    def _quorum_fragments(self) -> Fragments:
        v = self.view
        if not v.quorums:
            return [("class:dim", "no approval is being asked for\n")]
        now = self.clock()
        out: Fragments = []
        for q in v.quorums:
            out.append(("class:title", f"step {q.step} {q.operation.get('op')}: "))
            out.append(("", quorum_line(q, now) + "\n"))
            out.append(("", f"  {operation_lines(q.operation)[0]}\n"))
            if q.approved_by:
                out.append(("", f"  approved by {', '.join(q.approved_by)}\n"))
            out.append(("class:dim", f"  digest {colon_hex(q.digest)}\n"))
        return out

    def _custody_fragments(self) -> Fragments:
        out: Fragments = []
        for d in self.view.drives:
            state = "plugged in" if d.seen else "not plugged in"
            serial = d.serial or (f"expected {d.expected_serial}" if d.expected_serial
                                  else "serial not yet read")
            out.append(("", f"drive {d.label}: {serial}, {state}\n"))
        for loose in self.view.loose_drives:
            name = " ".join(w for w in (loose.vendor, loose.model) if w)
            out.append(("class:bad", f"in the port, no label: {name} serial "
                                     f"{loose.serial or '(none)'}\n"))
        for b in self.view.bags:
            if b.serial is None:
                out.append(("class:dim", f"bag {b.label}: not sealed\n"))
            else:
                out.append(("", f"bag {b.label} {b.serial}: held by {b.custodian_name} "
                                f"({b.custodian})\n"))
        return out or [("class:dim", "none\n")]

    def _journal_fragments(self) -> Fragments:
        lines = self.view.journal[-JOURNAL_LINES:]
        if not lines:
            return [("class:dim", "empty\n")]
        return [("", f"{j.seq:5d} {time.strftime('%H:%M:%S', time.gmtime(j.at))} {j.text}\n")
                for j in lines]

    def _prompt_fragments(self) -> Fragments:
        p = self._prompt
        return [] if p is None else [("", line + "\n") for line in p.lines]

    def _footer_fragments(self) -> Fragments:
        keys = "  ".join(f"[{a.key}] {a.kind}" for a in self.actions())
        msg = f"  | {self.message}" if self.message else ""
        return [("class:dim", (keys or "no actions") + "  [ctrl-c] close"), ("", msg)]
