"""One officer's full-screen console (prompt_toolkit): it shows a `CeremonyView` and turns
keystrokes into command dicts. No network, no keys, no clock of its own beyond the countdown.

The view comes from outside through `update()` (safe from another thread or loop: it swaps a
reference and calls `app.invalidate()`); commands leave through `on_command(dict)`. What the
officer may do is `actions_for(view, seat, role)`, asked again at every keystroke and again when a
typed input is submitted, so a view that changed meanwhile (the quorum filled, an exception was
decided) never lets a stale action through.

The screen lays itself out for the terminal it is drawn on (`_body`, `_footer`): every line is
wrapped at word boundaries, and what is essential (the step, who acts, what is asked of this
officer, who is waited for, approval clocks, alerts, the open prompt, messages) is always drawn;
the panels condense to fit (the journal first, then remarks and decided deviations, then
participants, drives and bags, then the operation and digest beside a clock) from 80x24 up. Open
deviations are alerts: one row each under the header until the administrator decides them. The
printable transcript's digest, once written, is a box of its own on every screen: its colon hex
and all 32 PGP words, whole at 80x24, and again in the prompt of the step that confirms it. A
prompt that asks for a signature (approve, sign off, sign for a bag) takes over the screen and
shows all it signs, page by page (PgDn, PgUp): its passphrase is taken only once the last page
has been shown, and not at all on a terminal too small to show it (`SIGN_MIN`).

Approve and sign-off carry the typed `passphrase` in the command: signing is the caller's job
(unlock the seat's key for this one signature, build the Approval, send that and never the
passphrase). Keeping keys out of this module keeps it testable with a pipe and a dummy output.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.application.current import set_app
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout import ConditionalContainer, HSplit, Layout, Window
from prompt_toolkit.layout.controls import UIContent, UIControl
from prompt_toolkit.layout.mouse_handlers import MouseHandlers
from prompt_toolkit.layout.screen import Screen, WritePosition
from prompt_toolkit.output import Output
from prompt_toolkit.styles import Style
from prompt_toolkit.widgets import TextArea

from ceremony.approval import ID_DIGITS_MAX, id_digits_problem
from ceremony.digests import colon_hex, pgp_words
from ceremony.script.formats import FORMATS, check_value
from ceremony.script.step_kinds import STEP_KINDS
from ceremony.view import CeremonyView, DeviationView, DocumentView, QuorumView, absent_actor
from consoles.actions import KEYS, Action, actions_for, remark_for
from consoles.shares import ShareError, ShareKeeper
from consoles.shares import check as check_share
from consoles.shares import rows as share_rows

STYLE = Style.from_dict({
    "title": "bold",
    "you": "bold reverse",
    "bad": "bold fg:ansired",
    "good": "fg:ansigreen",
    "dim": "fg:ansibrightblack",
    "bar": "fg:ansicyan",
    "message": "bold",
})
BAR_WIDTH = 30
WIDE = 110  # from this width the panels sit in two columns
NOTES = "Remarks and deviations"  # the panel's title
TRANSCRIPT = "Printed transcript"  # the digest's box
#: rows the panels keep at least before the transcript's box gives up its files for its digest
TRANSCRIPT_FULL_ROOM = 10
#: the smallest terminal (columns, rows) a signature is taken on: the size every console is laid
#: out for. On a smaller one the signing prompt shows what fits and refuses the passphrase.
SIGN_MIN = (80, 24)
#: the datetime format a record step's value is filled in with (the console's clock, UTC)
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DATETIME_SHAPE = "YYYY-MM-DDTHH:MM:SSZ"
#: open deviations shown one row each under the header; more are counted on one row
OPEN_DEVIATIONS_SHOWN = 3
#: the ID documents the administrator records at a witness's or auditor's sign-in: key, words
_DOCUMENT_KEYS = {"passport": "p", "national-id": "n", "driving-licence": "d", "other": "o"}
_DOCUMENT_WORDS = {"passport": "passport", "national-id": "national ID",
                   "driving-licence": "driving licence", "other": "other ID document"}

Fragments = StyleAndTextTuples
Row = list[tuple[str, str]]  # one screen row: (style, text) pieces no wider than the row


class NotSent(Exception):
    """Raised by `on_command` when the console did not send what was typed (a wrong passphrase):
    the message says why; with `again`, the same prompt is opened again to try once more."""

    def __init__(self, message: str, *, again: bool = False) -> None:
        super().__init__(message)
        self.again = again


def mmss(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[#######-------]  50%`: the same text on every console for the same progress."""
    pct = 0 if total <= 0 else min(100, done * 100 // total)
    filled = width * pct // 100
    return f"[{'#' * filled}{'-' * (width - filled)}] {pct:3d}%"


def quorum_line(q: QuorumView, now: float) -> str:
    """"1 of 2 KSO approvals — waiting for KSO2, 4:12 left"; a quorum not asked for now holds
    approvals for a later step: "1 of 2 KSO approvals held, 4:12 left"."""
    text = f"{q.have} of {q.need} {q.role} approvals"
    if not q.asked:
        text += " held"
    elif q.waiting_for:
        text += f" — waiting for {', '.join(q.waiting_for)}"
    elif q.have < q.need:
        text += f" — waiting for a {q.role} to sign in"
    if q.expires_at is not None:
        text += f", {mmss(q.expires_at - now)} left"
    return text


def operation_lines(op: dict[str, Any]) -> list[str]:
    """The whole operation, as an approver must see it before signing: every field of it."""
    kind = op.get("op")
    lines = [f"operation: {kind} on token {op.get('token', '?')}"]
    shown = {"op", "token"}
    if kind == "purge":
        keys = list(op.get("delete", []))
        lines.append(f"delete {len(keys)} dead keys: {' '.join(map(str, keys))}")
        shown.add("delete")
    elif kind == "generate":
        if op.get("duration"):
            lines.append(f"keys for {op['duration']}:")
        for b in op.get("batches", []):
            b = dict(b)
            locators = [str(x) for x in b.pop("locators", [])]
            head = (f"  {b.pop('policy', '?')} {b.pop('role', '?')} {b.pop('algorithm', '?')}: "
                    f"{b.pop('count', len(locators))} new keys")
            rest = ", ".join(f"{k} {_plain(v)}" for k, v in sorted(b.items()))
            lines.append(head + (f" ({rest})" if rest else ""))
            if locators:
                lines.append(f"    locators: {' '.join(locators)}")
        for k in op.get("keys", []):
            lines.append(f"  {k.get('policy')} {k.get('role')} {k.get('algorithm')}")
        shown |= {"duration", "batches", "keys"}
    elif kind == "backup":
        lines.append(f"write {op.get('file', '?')} of token {op.get('token', '?')}")
        shown.add("file")
    elif kind == "restore":
        keys = [dict(k) for k in op.get("keys", [])]
        lines.append(f"replace it with token {op.get('backup_token', '?')} from "
                     f"{op.get('file', '?')} (sha256 {op.get('sha256', '?')}): {len(keys)} keys")
        lines += [f"  {k.get('locator')} {k.get('type')} label {k.get('label')} public key "
                  f"sha256 {k.get('public_key_sha256')}" for k in keys]
        shown |= {"keys", "backup_token", "file", "sha256"}
        kek = op.get("kek")
        if isinstance(kek, dict):  # a wrap backup: opened by the KSOs' shares of its KEK
            lines.append(f"opened by {kek.get('threshold')} of the {kek.get('shares')} shares of "
                         f"backup KEK {kek.get('id')}, each brought sealed to the signer's "
                         f"share key {op.get('share_key')}")
            shown |= {"kek", "share_key", "method"}
    elif kind == "kek":
        holders = [dict(h) for h in op.get("holders", [])]
        lines.append(f"make the backup KEK in the HSM and split it into {len(holders)} shares, "
                     f"any {op.get('threshold')} of which rebuild it; each share leaves sealed "
                     "to its holder's console key:")
        lines += [f"  {h.get('seat')} console key {h.get('key')}" for h in holders]
        shown |= {"holders", "threshold"}
    lines += [f"{k}: {_plain(v)}" for k, v in sorted(op.items()) if k not in shown]
    return lines


def _plain(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


# --- text laid out on rows -----------------------------------------------------------------------
_BREAK_AFTER = "/:-_.,=;"


def row_width(row: Row) -> int:
    return sum(len(t) for _, t in row)


def wrap(frags: Fragments, width: int, hang: int = 0) -> list[Row]:
    """The fragments' lines (split at "\\n") on rows of `width`, broken at spaces only. A row
    that continues a line is indented like the line, plus `hang`. A word longer than a row (a
    digest, a path) is broken after one of / : - _ . , = ; where it can be, else where it must."""
    width = max(1, width)
    rows: list[Row] = []
    cells: list[tuple[str, str]] = []
    for frag in frags:
        style, text = frag[0], frag[1]
        for ch in text:
            if ch == "\n":
                rows += _wrap_cells(cells, width, hang)
                cells = []
            else:
                cells.append((style, ch))
    if cells:
        rows += _wrap_cells(cells, width, hang)
    return rows


def _wrap_cells(cells: list[tuple[str, str]], width: int, hang: int) -> list[Row]:
    if not cells:
        return [[]]
    lead = next((i for i, c in enumerate(cells) if c[1] != " "), len(cells))
    indent = min(lead + hang, width // 2)
    tokens: list[tuple[bool, list[tuple[str, str]]]] = []
    for c in cells:
        space = c[1] == " "
        if tokens and tokens[-1][0] == space:
            tokens[-1][1].append(c)
        else:
            tokens.append((space, [c]))
    pad = [("", " ")] * indent
    rows: list[list[tuple[str, str]]] = []
    cur: list[tuple[str, str]] = []
    pending: list[tuple[str, str]] = []
    has_word = False
    for space, tok in tokens:
        if space:
            pending = tok if has_word or not rows else []
            continue
        while tok:
            if len(cur) + len(pending) + len(tok) <= width:
                cur += pending + tok
                pending, tok, has_word = [], [], True
                break
            room = width - len(cur) - len(pending)
            if has_word and (len(tok) <= width - indent or room < 8):
                rows.append(cur)  # the word goes on the next row
                cur, pending, has_word = list(pad), [], False
                continue
            cur += pending
            pending = []
            room = max(1, width - len(cur))
            text = "".join(ch for _, ch in tok[:room])
            cut = max((text.rfind(b) + 1 for b in _BREAK_AFTER), default=0)
            if cut < max(1, room // 3):
                cut = room
            rows.append(cur + tok[:cut])
            cur, tok = list(pad), tok[cut:]
    if has_word or not rows:
        rows.append(cur)
    return [_merge(r) for r in rows]


def _merge(cells: list[tuple[str, str]]) -> Row:
    out: Row = []
    for style, ch in cells:
        if out and out[-1][0] == style:
            out[-1] = (style, out[-1][1] + ch)
        else:
            out.append((style, ch))
    return out


def one_row(frags: Fragments, width: int) -> Row:
    """The fragments on one row of `width`: cut short with … when longer (line breaks become
    spaces)."""
    pieces = [(f[0], " ".join(f[1].split("\n"))) for f in frags]
    if sum(len(t) for _, t in pieces) <= width:
        return [p for p in pieces if p[1]]
    out: Row = []
    left = max(0, width - 1)
    for style, text in pieces:
        if left <= 0:
            break
        out.append((style, text[:left]))
        left -= len(text[:left])
    out.append((out[-1][0] if out else "", "…"))
    return out


def _at_step(x: DeviationView) -> str:
    return f" at step {x.step}" if x.step is not None else ""


def _rule(left: str, right: str, title: str, width: int) -> Row:
    inner = max(0, width - 2)
    t = f"| {title} |" if title else ""
    if len(t) + 2 > inner:
        t = ""
    lpad = (inner - len(t)) // 2
    return [("", left + "─" * lpad + t + "─" * (inner - lpad - len(t)) + right)]


def boxed(panels: list[tuple[str, list[Row]]], width: int) -> list[Row]:
    """Panels stacked in one box, each under its title; neighbours share a border."""
    out: list[Row] = []
    for i, (title, rows) in enumerate(panels):
        out.append(_rule("┌" if i == 0 else "├", "┐" if i == 0 else "┤", title, width))
        for r in rows:
            out.append([("", "│"), *r, ("", " " * max(0, width - 2 - row_width(r))), ("", "│")])
    if panels:
        out.append(_rule("└", "┘", "", width))
    return out


def _beside(left: list[Row], right: list[Row], lw: int) -> list[Row]:
    out: list[Row] = []
    for i in range(max(len(left), len(right))):
        lrow = left[i] if i < len(left) else []
        rrow = right[i] if i < len(right) else []
        out.append([*lrow, ("", " " * max(0, lw - row_width(lrow))), *rrow])
    return out


def _paginate(blocks: list[list[Row]], keep: list[bool], per_page: int) -> list[list[Row]] | None:
    """Blocks of rows on pages of `per_page` rows; a block marked keep is never split (None if
    one is taller than a page)."""
    pages: list[list[Row]] = [[]]
    for rows, whole in zip(blocks, keep, strict=True):
        if whole:
            if len(rows) > per_page:
                return None
            if len(pages[-1]) + len(rows) > per_page:
                pages.append([])
            pages[-1] += rows
            continue
        for r in rows:
            if len(pages[-1]) >= per_page:
                pages.append([])
            pages[-1].append(r)
    return pages


class _Drawn(UIControl):
    """A control whose rows are laid out for the width and height it is given."""

    def __init__(self, draw: Callable[[int, int], list[Row]], *, fill: bool) -> None:
        self.draw = draw
        self.fill = fill

    def create_content(self, width: int, height: int) -> UIContent:
        rows = self.draw(width, height)
        return UIContent(get_line=lambda i: rows[i] if i < len(rows) else [],
                         line_count=len(rows), show_cursor=False)

    def preferred_height(self, width: int, max_available_height: int, wrap_lines: bool,
                         get_line_prefix: Any) -> int | None:
        return None if self.fill else len(self.draw(width, max_available_height))

    def is_focusable(self) -> bool:
        return True


@dataclass
class _Prompt:
    """An input the officer is giving. With `submit`, a field typed into (Enter submits); with
    `choices`, a list to pick from (a number or the arrows, then Enter or Space); with `keys`, a
    menu of single keys. `signing` prompts take over the screen and page through `blocks`."""

    lines: list[str]
    label: str = ""
    secret: bool = False
    submit: Callable[[str], None] | None = None
    prefill: str = ""
    check: Callable[[str], str | None] | None = None  # why a typed value cannot be sent
    choices: list[tuple[str, str]] = field(default_factory=list)  # (value, text)
    pick: Callable[[str], None] | None = None
    keys: dict[str, Callable[[], None]] = field(default_factory=dict)
    signing: bool = False
    blocks: list[tuple[Fragments, bool, int]] = field(default_factory=list)  # (text, keep, hang)
    shown: list[tuple[Fragments, int]] = field(default_factory=list)  # under lines: (text, hang)
    page: int = 0
    pages: int = 1
    seen_all: bool = False  # the last page has been shown
    blocked: str | None = None  # why the passphrase is not taken (the terminal is too small)
    cursor: int = 0
    digits: str = ""


_UNSET: Any = object()


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
        shares: ShareKeeper | None = None,
        input: Input | None = None,
        output: Output | None = None,
    ) -> None:
        self.view = view
        self.seat = seat
        self.role = role
        self.on_command = on_command
        self.also = also  # (seat, role): the same person's other seats, acted for from here
        self.status = status  # one more line under the header (the link, the auditor's copy)
        self.clock = clock
        self.shares = shares  # this console's KEK share: opened, shown once; typed and sealed
        self.message = ""
        self._message_step: int | None = None  # a message is shown while its step is current
        self._prompt: _Prompt | None = None

        typing = Condition(lambda: self._prompt is not None and self._prompt.submit is not None)
        self.field = TextArea(
            multiline=False,
            password=Condition(lambda: bool(self._prompt and self._prompt.secret)),
            read_only=Condition(lambda: bool(self._prompt and self._prompt.blocked)),
            accept_handler=self._accept,
            prompt=lambda: [("class:you", self._field_label() + " ")],
        )
        self._body = Window(_Drawn(self._body_rows, fill=True))
        root = HSplit([
            self._body,
            ConditionalContainer(self.field, filter=typing),
            Window(_Drawn(self._footer_rows, fill=False), dont_extend_height=True),
        ])
        self.app: Application[None] = Application(
            layout=Layout(root, focused_element=self._body),
            key_bindings=self._bindings(),
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

    def notify(self, text: str, step: int | None = _UNSET) -> None:
        """Show feedback (the coordinator's refusal reason, for one) while `step` is current
        (by default the current step): it goes once that step ends."""
        self._on_screen_loop(lambda: self._say(text, step))

    def _say(self, text: str, step: int | None = _UNSET) -> None:
        self.message = text
        self._message_step = self._step_n() if step is _UNSET else step

    def _step_n(self) -> int | None:
        return self.view.step.n if self.view.step is not None else None

    def shown_message(self) -> str:
        """The message, unless the step it belongs to has ended."""
        return self.message if self._message_step == self._step_n() else ""

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
        remark = remark_for(self.view, self.seat, self.role)  # one person raises it once
        if remark is not None:
            out.append(remark)
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
    def _bindings(self) -> KeyBindings:
        kb = KeyBindings()
        prompting = Condition(lambda: self._prompt is not None)
        menu = Condition(lambda: self._prompt is not None and self._prompt.submit is None)
        for kind, key in KEYS.items():
            kb.add(key, filter=~prompting)(self._starter(kind))

        @kb.add("escape", filter=prompting)
        def _cancel(event: KeyPressEvent) -> None:
            self._close("cancelled")

        @kb.add("pagedown", filter=prompting)
        def _next_page(event: KeyPressEvent) -> None:
            if self._prompt is not None:
                self._prompt.page += 1

        @kb.add("pageup", filter=prompting)
        def _previous_page(event: KeyPressEvent) -> None:
            if self._prompt is not None:
                self._prompt.page = max(0, self._prompt.page - 1)

        @kb.add(Keys.Any, filter=menu)
        def _menu_key(event: KeyPressEvent) -> None:
            self._menu(event.data)

        @kb.add("up", filter=menu)
        def _up(event: KeyPressEvent) -> None:
            self._move(-1)

        @kb.add("down", filter=menu)
        def _down(event: KeyPressEvent) -> None:
            self._move(1)

        @kb.add("enter", filter=menu)
        def _enter(event: KeyPressEvent) -> None:
            self._menu(" ")

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
            self._say("")
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
            self._say(f"sent: acknowledge step {step.n} (not offered to you)")
            self.on_command({"type": "acknowledge", "seat": self.seat, "step": step.n})
            return
        if role is not None and role.observer:
            self._say("this console is read-only")
            return
        self._say(f"[{KEYS[kind]}] is not possible now")

    def _find(self, kind: str, command: dict[str, Any] | None = None) -> Action | None:
        for a in self.actions():
            if a.kind == kind and (command is None or a.command == command):
                return a
        return None

    def _begin(self, a: Action) -> None:
        if a.detail.get("share"):
            self._show_share(a)
        elif a.kind == "share":
            self._bring_share(a)
        elif not a.needs:
            self._send(a, {})
        elif a.kind == "approve":
            self._approve(a)
        elif a.kind == "signoff":
            self._signoff(a)
        elif a.kind == "secret":
            self._secret(a)
        elif a.kind == "signin":
            self._signin(a)
        elif a.kind == "admit":
            self._admit(a)
        elif a.kind == "record":
            self._record(a)
        elif a.kind == "refuse":
            self._open(_Prompt([a.label], "Reason:",
                               submit=lambda text: self._send(a, {"reason": text.strip()})))
        elif a.kind == "decide":
            self._decide(a)
        elif a.kind == "remark":
            self._remark(a)
        elif a.kind == "deviation":
            self._deviation(a)

    def _approve(self, a: Action) -> None:
        op = a.detail.get("operation", {})
        digest = str(a.command["digest"])
        seat = a.command["seat"]
        prompt = _Prompt(
            [], f"Passphrase of {seat}'s key (Enter approves, Esc cancels):", secret=True,
            signing=True, blocks=[
                ([("class:title", f"Approve step {a.command['step']} ({a.command['quorum']}) "
                                  f"as {seat}:"),
                  ("", " read the whole operation, its digest and its words; your passphrase "
                       "signs exactly this.")], True, 0),
                ([("", "\n".join(operation_lines(op)))], False, 4),
                ([("", f"digest {colon_hex(digest)}\nwords  {pgp_words(digest)}")], True, 7),
            ])
        prompt.submit = lambda text: self._send(a, {"passphrase": text}, again=prompt)
        self._open(prompt)

    def _signoff(self, a: Action) -> None:
        seat = a.command["seat"]
        prompt = _Prompt(
            [], f"Passphrase of {seat}'s key (Enter signs, Esc cancels):", secret=True,
            signing=True, blocks=[
                ([("class:title", "Sign this journal checkpoint:")], True, 0),
                ([("", str(a.command["checkpoint"]).rstrip("\n"))], True, 2),
            ])
        prompt.submit = lambda text: self._send(a, {"passphrase": text}, again=prompt)
        self._open(prompt)

    def _secret(self, a: Action) -> None:
        """A password typed twice, masked; sent only when both entries are the same."""
        lines = [a.label, "Type it twice. It is used for this operation only: never journaled, "
                 "never shown."]

        def typed(first: str) -> None:
            def confirmed(second: str) -> None:
                if second != first:
                    self._say("the two entries differ: nothing was sent. Type the password "
                              "again, twice.")
                    self._secret(a)
                    return
                self._send(a, {"value": first})

            self._open(_Prompt(lines, "Confirm password:", secret=True, submit=confirmed))

        self._open(_Prompt(lines, "Password:", secret=True, submit=typed))

    def _show_share(self, a: Action) -> None:
        """This holder's KEK share, opened from the box sealed to this console, on the whole
        screen (paged if it must be) to be written down; typing `written` confirms, and the
        coordinator then forgets the box. Esc leaves it for later."""
        box, kek_id = a.detail.get("box"), str(a.detail.get("kek_id"))
        if self.shares is None or not box:
            self._say("no KEK share for this console has arrived: ask the KGA")
            return
        try:
            words = self.shares.open(kek_id, str(box))
        except ShareError as e:
            self._say(str(e))
            return
        prompt = _Prompt(
            [], "Type written and Enter once it is written down and read back (Esc: later):",
            signing=True, check=lambda t: None if t.strip().lower() == "written" else
            "type the word written once every word is on paper (Esc: later)",
            blocks=[
                ([("class:title", f"Your share of backup KEK {kek_id} ({self.seat}):"),
                  ("", " write every word down, in order, and read it back. It is shown on "
                       "this console only, and only until you confirm.")], True, 0),
                ([("", "\n".join(share_rows(words)))], True, 0),
            ])
        prompt.submit = lambda _text: self._send(a, {})
        self._open(prompt)

    def _bring_share(self, a: Action) -> None:
        """The KSO types their share (masked); it is checked here (its checksum catches a word
        typed wrong) and sealed to the signer's share key before it is sent."""
        if self.shares is None:
            self._say("this console has no key to seal a share with")
            return
        keeper = self.shares

        def why(text: str) -> str | None:
            try:
                check_share(text)
            except ShareError as e:
                return str(e)
            return None

        def submit(text: str) -> None:
            try:
                box = keeper.seal(str(a.detail.get("share_key")), str(a.detail.get("kek_id")),
                                  text)
            except ShareError as e:
                self._say(str(e))
                return
            self._send(a, {"box": box})

        self._open(_Prompt([a.label, "Type the words of your share, separated by spaces. It "
                            "is sealed to the signer on this console; the coordinator cannot "
                            "read it."], "Share:", secret=True, submit=submit, check=why))

    def _record(self, a: Action) -> None:
        fmt = str(a.detail.get("format") or "text")
        prefill = ""
        if fmt == "datetime":
            prefill = time.strftime(DATETIME_FORMAT, time.gmtime(self.clock()))
            how = (f"Format: {DATETIME_SHAPE} (UTC). The console's clock is filled in: Enter "
                   "records it, or correct it first.")
        else:
            how = f"Format ({fmt}): {FORMATS.get(fmt, fmt)}."

        def check(text: str) -> str | None:
            if check_value(fmt, text) is not None:
                return None
            shape = f"type it as {DATETIME_SHAPE}" if fmt == "datetime" else FORMATS.get(fmt, "")
            return f"not a valid {fmt}: {shape}"

        def submit(text: str) -> None:
            if "passphrase" in a.needs:  # a custodian types the bag's serial, then signs for it
                self._seal(a, text)
            else:
                self._send(a, {"value": text.strip()})

        doc = self.view.transcript
        shown = []
        if doc is not None and a.command.get("step") == doc.confirm_step:
            shown = [([("", f"The printed transcript's digest (step {doc.step}, {doc.file}): "
                            "compare it with what was read aloud before you confirm.")], 4),
                     *_digest_fragments(doc)]
        self._open(_Prompt([a.label, how], "Value:", submit=submit, prefill=prefill, check=check,
                           shown=shown))

    def _decide(self, a: Action) -> None:
        """The administrator's decision, one key: r retry, a accept, x abort (then the reason)."""
        choices = list(a.detail.get("choices", []))
        step = a.command["step"]

        def reason(decision: str, what: str) -> Callable[[], None]:
            return lambda: self._open(_Prompt(
                [f"{what}: the reason is recorded with step {step}."], "Reason:",
                submit=lambda r: self._send(a, {"decision": decision, "reason": r.strip()})))

        keys = {"r": lambda: self._send(a, {"decision": "retry", "reason": ""})}
        lines = [f"Decide the exception at step {step}:", "  [r] retry: do it again"]
        if "accept" in choices:
            keys["a"] = reason("accept", "Accept the value as observed")
            lines.append("  [a] accept it as observed, with a reason")
        keys["x"] = reason("abort", "Abort the ceremony")
        lines += ["  [x] abort the ceremony, with a reason", "  [Esc] decide later"]
        self._open(_Prompt(lines, keys=keys))

    def _remark(self, a: Action) -> None:
        """One key for what it is (r a remark, d a deviation), then its one line of text."""
        limit = int(a.detail.get("limit") or 1000)

        def check(text: str) -> str | None:
            if len(text.strip()) > limit:
                return f"at most {limit} characters ({len(text.strip())} typed)"
            return None

        def text(kind: str, what: str) -> Callable[[], None]:
            return lambda: self._open(_Prompt(
                [f"Raise {what}: one line, journaled and shown on every console."],
                "Text:", check=check,
                submit=lambda t: self._send(a, {"kind": kind, "text": t.strip()})))

        self._open(_Prompt(
            [f"{a.label}:", "  [r] a remark: something the record should say",
             "  [d] a deviation from the script (the administrator then accepts or rejects it)",
             "  [Esc] cancel"],
            keys={"r": text("remark", "a remark"),
                  "d": text("deviation", "a deviation from the script")}))

    def _deviation(self, a: Action) -> None:
        """The administrator's decision on the oldest open deviation: a accept, r reject, each
        with a reason."""
        n = a.command["deviation"]
        limit = int(a.detail.get("limit") or 1000)

        def check(text: str) -> str | None:
            return (f"at most {limit} characters ({len(text.strip())} typed)"
                    if len(text.strip()) > limit else None)

        def reason(decision: str) -> Callable[[], None]:
            return lambda: self._open(_Prompt(
                [f"{decision.capitalize()} deviation {n}: the reason is journaled with it."],
                "Reason:", check=check,
                submit=lambda r: self._send(a, {"decision": decision, "reason": r.strip()})))

        at = f" at step {a.detail['step']}" if a.detail.get("step") is not None else ""
        self._open(_Prompt(
            [f"Deviation {n}, raised by {a.detail.get('seat')} ({a.detail.get('name')}){at}:",
             f"  {a.detail.get('text')}",
             "  [a] accept it, with a reason", "  [r] reject it, with a reason",
             "  [Esc] decide later"],
            keys={"a": reason("accept"), "r": reason("reject")}))

    def _seal(self, a: Action, typed: str) -> None:
        """The custodian's second input: the passphrase that signs for the bag as typed (at a
        seal, or at a hand-over from the seat that holds it)."""
        serial = typed.strip()
        giver = f" from {a.detail['from']}" if a.detail.get("from") else ""
        contents = "".join(f"\n  {c}" for c in a.detail.get("contents", []))
        prompt = _Prompt(
            [], f"Passphrase of {a.command['seat']}'s key (Enter signs, Esc cancels):",
            secret=True, signing=True, blocks=[
                ([("class:title", f"Take bag {a.detail.get('bag')} with serial {serial}{giver}, "
                                  "holding:"), ("", contents)], False, 2),
                ([("", "Your signature records that you hold it from now on.")], True, 0),
            ])
        prompt.submit = lambda secret: self._send(a, {"value": serial, "passphrase": secret},
                                                  again=prompt)
        self._open(prompt)

    def _signin(self, a: Action, typed: dict[str, str] | None = None,
                first: _Prompt | None = None) -> None:
        """Signing in for the person's seats: the passphrase of each seat in turn (each seat's
        own key signs the sign-in), sent once all are typed. A wrong one sends nothing and the
        passphrases are asked again from the first."""
        seats = [str(x) for x in a.command["seats"]]
        typed = dict(typed or {})
        seat = next(x for x in seats if x not in typed)
        me = self.view.participant(seat)
        who = f"{me.name} ({me.organisation})" if me is not None else seat
        count = f" ({len(typed) + 1} of {len(seats)})" if len(seats) > 1 else ""
        prompt = _Prompt(
            [], f"Passphrase of {seat}'s key{count} (Enter signs in, Esc cancels):",
            secret=True, signing=True, blocks=[
                ([("class:title", f"Sign in as {', '.join(seats)}: {who}")], True, 0),
                ([("", f"Ceremony {self.view.ceremony_id}. Each seat's passphrase unlocks its "
                       "key for this one signature; the journal keeps which key signed.")],
                 True, 2),
            ])
        start = first or prompt

        def submit(text: str) -> None:
            got = {**typed, seat: text}
            if len(got) < len(seats):
                self._signin(a, got, start)
                return
            inputs = ({"passphrase": text} if len(seats) == 1 else
                      {"passphrases": {x: got[x] for x in seats}})
            self._send(a, inputs, again=start)

        prompt.submit = submit
        self._open(prompt)

    def _admit(self, a: Action) -> None:
        """The administrator picks, from the witnesses and auditors not signed in, whose ID
        document they checked; then its type, its last digits, and their own passphrase."""
        items = []
        for seat in a.detail.get("choices", []):
            p = self.view.participant(seat)
            items.append((seat, f"{seat:<5} {p.name} ({p.role})" if p else seat))
        self._open(_Prompt(
            [a.label + ": check the person's government ID first.",
             "A number or ↑/↓ marks one; Enter or Space picks the one marked; Esc cancels."],
            choices=items, pick=lambda seat: self._id_document(a, seat)))

    def _id_document(self, a: Action, seat: str) -> None:
        """One key for the type of ID document checked."""
        p = self.view.participant(seat)
        who = f"{seat} ({p.name})" if p is not None else seat
        keys, lines = {}, [f"The ID document you checked for {who}:"]

        def chosen(doc: str) -> Callable[[], None]:
            return lambda: self._id_digits(a, seat, doc)

        for doc in a.detail.get("documents", []):
            key = _DOCUMENT_KEYS.get(doc, doc[:1])
            keys[key] = chosen(doc)
            lines.append(f"  [{key}] {_DOCUMENT_WORDS.get(doc, doc)}")
        self._open(_Prompt([*lines, "  [Esc] cancel"], keys=keys))

    def _id_digits(self, a: Action, seat: str, doc: str) -> None:
        """The document number's last digits: never the whole number."""
        most = int(a.detail.get("digits") or ID_DIGITS_MAX)

        def check(text: str) -> str | None:
            return id_digits_problem(text.strip().upper())

        self._open(_Prompt(
            [f"{_DOCUMENT_WORDS.get(doc, doc).capitalize()} of {seat}: type only the last "
             f"{most} digits (or letters) of its number, never the whole number."],
            "Last digits:", check=check,
            submit=lambda t: self._vouch(a, seat, doc, t.strip().upper())))

    def _vouch(self, a: Action, seat: str, doc: str, digits: str) -> None:
        """The administrator's passphrase: their key signs that they checked this document."""
        p = self.view.participant(seat)
        who = f"{p.name} ({p.organisation}), {p.role}" if p is not None else seat
        me = a.command["seat"]
        prompt = _Prompt(
            [], f"Passphrase of {me}'s key (Enter signs {seat} in, Esc cancels):", secret=True,
            signing=True, blocks=[
                ([("class:title", f"Sign in {seat}: {who}")], True, 0),
                ([("", f"You checked their {_DOCUMENT_WORDS.get(doc, doc)} ending {digits}. "
                       f"Your key signs that you did; the journal keeps the document's type "
                       "and these last digits, never the whole number.")], True, 2),
            ])
        prompt.submit = lambda text: self._send(
            a, {"seats": [seat], "id_document": doc, "id_digits": digits, "passphrase": text},
            again=prompt)
        self._open(prompt)

    def _menu(self, key: str) -> None:
        p = self._prompt
        if p is None:
            return
        if p.choices:
            if key.isdigit():
                p.digits = (p.digits + key)[-3:]
                for tail in (p.digits, key):
                    if tail and 1 <= int(tail) <= len(p.choices):
                        p.cursor = int(tail) - 1
                        p.digits = tail
                        break
                return
            if key in (" ", "\r", "\n") and p.pick is not None:
                value = p.choices[p.cursor][0]
                self._close()
                p.pick(value)
            return
        do = p.keys.get(key.lower())
        if do is not None:
            self._close()
            do()

    def _move(self, by: int) -> None:
        p = self._prompt
        if p is not None and p.choices:
            p.cursor = (p.cursor + by) % len(p.choices)
            p.digits = ""

    def _open(self, prompt: _Prompt) -> None:
        self._prompt = prompt
        if prompt.submit is not None:
            self.field.text = prompt.prefill
            self.field.buffer.cursor_position = len(prompt.prefill)
            self.app.layout.focus(self.field)
        else:
            self.app.layout.focus(self._body)

    def _close(self, message: str | None = None) -> None:
        self._prompt = None
        self.field.text = ""
        if message is not None:
            self._say(message)
        self.app.layout.focus(self._body)

    def _field_locked(self) -> bool:
        p = self._prompt
        return p is not None and p.signing and (p.blocked is not None or not p.seen_all)

    def _field_label(self) -> str:
        p = self._prompt
        if p is None:
            return ""
        if p.signing and p.blocked is not None:
            return "Passphrase: not taken (see above)"
        if p.signing and not p.seen_all:
            return "Passphrase taken once the last page is shown (PgDn):"
        return p.label

    def _accept(self, buffer: Any) -> bool:
        prompt = self._prompt
        text = buffer.text
        if prompt is None or prompt.submit is None:
            return False
        if self._field_locked():
            self._say(prompt.blocked or "PgDn to the last page first: the passphrase is taken "
                      "once everything it signs has been shown")
            return prompt.blocked is None  # kept (masked) until the last page has been shown
        if not text.strip():
            self._say("nothing typed (Esc cancels)")
            return False
        if prompt.check is not None and (problem := prompt.check(text)) is not None:
            self._say(problem)
            return True  # keep what was typed, to be corrected
        self._close()
        prompt.submit(text)
        return False  # clear the field: a passphrase never stays in a buffer

    def _send(self, a: Action, inputs: dict[str, Any], again: _Prompt | None = None) -> None:
        # the view may have changed since the key was pressed: offer only what is still offered
        if self._find(a.kind, a.command) is None:
            self._say(f"no longer possible: {a.label}")
            return
        self._say(f"sent: {a.label}")  # first: the answer may come back before we return
        try:
            self.on_command({**a.command, **inputs})
        except NotSent as e:
            self._say(str(e))
            if e.again and again is not None:
                self._open(again)

    # --- drawing ---------------------------------------------------------------------------------
    def _body_rows(self, width: int, height: int) -> list[Row]:
        p = self._prompt
        if p is not None and p.signing:
            return self._takeover(p, width, height)
        top = (wrap(self._header() + self._alerts(), width) + self._open_deviation_rows(width)
               + self._step_rows(width))
        bar = wrap(self._progress(), width)
        bottom = self._prompt_rows(p, width) if p is not None else []
        room = height - len(top) - len(bar) - len(bottom)
        doc = self._transcript_box(width, room, prompting=p is not None)
        panels = self._panels(width, room - len(doc))
        rows = top + bar + doc + panels
        if len(rows) + len(bottom) > height:  # not even the essentials fit
            keep = max(0, height - len(bottom) - 1)
            hidden = len(rows) - keep
            rows = rows[:keep] + [[("class:bad", f"… {hidden} more lines: enlarge the terminal")]]
        return rows + [[]] * (height - len(rows) - len(bottom)) + bottom

    def _footer_rows(self, width: int, height: int = 0) -> list[Row]:
        p = self._prompt
        if p is None:
            acts = self.actions()
            keys = "  ".join(f"[{a.key}] {a.kind}" for a in acts if a.kind != "remark")
            keys = (keys or "no actions") + "".join(
                f"  [{a.key}] {a.kind}" for a in acts if a.kind == "remark") + "  [ctrl-c] close"
        elif p.submit is None or p.blocked is not None:
            keys = "[Esc] cancel"
        else:
            keys = "[Enter] " + ("approve" if "approves" in p.label else "submit") + \
                "  [Esc] cancel" + ("  [PgDn] [PgUp] pages" if p.signing and p.pages > 1 else "")
        msg = self.shown_message()
        frags: Fragments = [("class:dim", keys)]
        if msg:
            frags += [("", "  | "), ("class:message", msg)]
        return wrap(frags, width, hang=2)

    def _header(self) -> Fragments:
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
                     "aborted": "CEREMONY ABORTED",
                     "halted": "HALTED: the coordinator cannot write its journal (see below)",
                     }.get(v.status, v.status.upper())
            out.append(("class:bad" if v.status != "completed" else "class:good", badge + "\n"))
        return out

    def _alerts(self) -> Fragments:
        out: Fragments = []
        absent = absent_actor(self.view)
        if absent:
            out.append(("class:bad", f"WAITING: {absent}\n"))
        status = self.status() if self.status is not None else ""
        if status:
            out.append(("", status + "\n"))
        refusals = self.view.cosigning.refusals  # a console refused to cosign the record
        if refusals:
            text = refusals[-1].text
            text = text if len(text) <= 160 else text[:159] + "…"
            more = f" ({len(refusals) - 1} more before: see the journal)" if len(refusals) > 1 \
                else ""
            out.append(("class:bad", f"RECORD DISPUTED: {text}{more}\n"))
        return out

    def _step_rows(self, width: int) -> list[Row]:
        v = self.view
        s = v.step
        if s is None:
            return wrap([("", "No current step.\n")] + self._you_fragments(), width)
        out: Fragments = [("class:title", f"Step {s.n}  [{s.actor}]  {s.action}\n")]
        if s.action == "quorum":  # the printed wording may name one officer: who is asked is below
            out += [("class:dim", "as printed: "), ("", f"{s.text}\n")]
        else:
            out.append(("", f"{s.text}\n"))
        if s.note:
            out.append(("class:dim", f"note: {s.note}\n"))
        rows = wrap(out, width, hang=2)
        doc = v.transcript
        if v.exception is not None:
            rows += self._exception_rows(width)
        elif doc is not None and s.action == "record" and s.n == doc.confirm_step:
            pass  # the transcript's box (or the prompt) shows the digest it must equal, whole
        elif s.observed is not None or s.expected is not None:
            rows += _compare_rows(s.observed, s.expected, width, "(not yet)", "-")
        return rows + wrap(self._waiting_fragments() + self._you_fragments(), width, hang=2)

    def _exception_rows(self, width: int) -> list[Row]:
        e = self.view.exception
        if e is None:
            return []
        if e.kind == "mismatch" and e.observed is not None and e.expected is not None:
            head = f"EXCEPTION at step {e.step} (mismatch): the value observed is not the record's"
        else:
            head = f"EXCEPTION at step {e.step} ({e.kind}): {e.reason}"
        rows = wrap([("class:bad", head + "\n")], width, hang=2)
        if e.observed is not None or e.expected is not None:
            rows += _compare_rows(e.observed, e.expected, width, "-", "-", style="class:bad")
        return rows

    def _waiting_fragments(self) -> Fragments:
        """Who the step waits for, people first; the coordinator's work that follows them is
        "then", not "waiting for"."""
        s = self.view.step
        if s is None:
            return []
        people = [a for a in s.asked if a.role]
        out: Fragments = []
        for a in people:
            out.append(("class:dim", self._waiting_for(a) + "\n"))
        for a in s.asked:
            if not a.role:
                out.append(("class:dim", (f"then {a.text}" if people else
                                          f"waiting for the coordinator: {a.text}") + "\n"))
        return out

    def _waiting_for(self, a: Any) -> str:
        if a.kind == "approve":
            q = next((q for q in self.view.quorums if q.quorum == a.detail.get("quorum")), None)
            if q is not None:
                who = " or ".join(q.waiting_for) or f"a {q.role} to sign in"
                either = f" (any {q.need} {q.role}s, in either order)" if q.need > 1 else ""
                return (f"waiting for {who}: {q.need - q.have} more {q.role} approval(s) of step "
                        f"{q.step}'s {q.operation.get('op', 'operation')}{either}")
        return f"waiting for the {a.role}: {a.text}"

    def _you_fragments(self) -> Fragments:
        """In bold: what is asked of this officer now, with the keys that do it."""
        acts = self.actions()
        role = self.view.role(self.role)
        signoff = next((a for a in acts if a.kind == "signoff"), None)
        if role is not None and role.observer and signoff is None:
            remark = next((a for a in acts if a.kind == "remark"), None)
            return [("class:dim", "You observe: this console is read-only." + (
                f" [{remark.key}] raises a remark or a deviation." if remark else "") + "\n")]
        asked = [a for a in acts if a.kind not in ("pause", "refuse", "admit", "remark")]
        if not asked:
            return [("class:dim", "Nothing is asked of you now.\n")]
        text = "; ".join(f"[{a.key}] {a.label}" for a in asked)
        return [("class:you", f"YOU: {text}"), ("", "\n")]

    def _progress(self) -> Fragments:
        v = self.view
        p = v.progress
        cur = v.step.n if v.step is not None else None
        if p is not None:
            late = f" — step {p.step}" if p.step is not None and p.step != cur else ""
            return [("class:bar", progress_bar(p.done, p.total)),
                    ("", f" {p.what} ({p.done}/{p.total}){late}\n")]
        s = v.step
        if s is None or v.status != "running" or absent_actor(v) is not None or \
                any(a.role for a in s.asked):
            return []
        working = [a for a in s.asked if a.kind == "execute" or (
            a.kind == "perform" and _reports_progress(a.detail.get("action")))]
        if not working:
            return []
        return [("class:bar", f"[{'·' * BAR_WIDTH}]    "),
                ("", f" working, no progress reported yet (step {working[0].step})\n")]

    # --- the printed transcript ------------------------------------------------------------------
    def _transcript_box(self, width: int, room: int, *, prompting: bool) -> list[Row]:
        """The printable transcript's digest in its own box on every console, from the step that
        wrote it to the end: its colon hex and every PGP word, always whole (a person is never
        asked to confirm what the screen does not show). Where the panels keep room for them,
        its file, whether it was confirmed and the PDF's digest too; else the file name goes
        into the box's title. While a prompt is open on a terminal too small for both, the box
        gives way to it whole (never cut: the prompt that confirms the digest shows it itself)
        and comes back when the prompt closes."""
        doc = self.view.transcript
        if doc is None:
            return []
        full = boxed([(TRANSCRIPT, self._transcript_rows(doc, width - 2, full=True))], width)
        if len(full) + TRANSCRIPT_FULL_ROOM <= room:
            return full
        title = f"{TRANSCRIPT}: {doc.file}"
        if len(title) + 6 > width:
            title = TRANSCRIPT
        compact = boxed([(title, self._transcript_rows(doc, width - 2, full=False))], width)
        if prompting and len(compact) > room:
            return []
        return compact

    def _transcript_rows(self, doc: DocumentView, width: int, *, full: bool) -> list[Row]:
        rows: list[Row] = []
        if full:
            if doc.confirm_step is None:
                state: tuple[str, str] = ("", "")
            elif doc.confirmed:
                state = ("class:good", f", confirmed at step {doc.confirm_step}")
            else:
                state = ("", f", read aloud and confirmed at step {doc.confirm_step}")
            rows += wrap([("", f"{doc.file} written at step {doc.step}"), state], width, hang=2)
        for frags, hang in _digest_fragments(doc, width):
            rows += wrap(frags, width, hang)
        if full and doc.pdf is not None:
            pdf = f"  sha256 {doc.pdf_sha256}" if doc.pdf_sha256 is not None else ""
            rows += wrap([("class:dim", f"PDF    {doc.pdf}{pdf}")], width, hang=7)
        return rows

    # --- the panels ------------------------------------------------------------------------------
    #: detail levels tried in turn until the panels fit: (quorum, participants, drives)
    LEVELS = (("full", "full", "full"), ("full", "short", "full"), ("full", "short", "short"),
              ("digest", "short", "short"), ("clock", "short", "short"),
              ("clock", "short", "alerts"))

    def _panels(self, width: int, room: int) -> list[Row]:
        if room < 3:
            return []
        wide = width >= WIDE
        for level in self.LEVELS:
            rows = self._panels_at(width, room, wide, *level)
            if rows is not None:
                return rows
        return []

    def _panels_at(self, width: int, room: int, wide: bool, ql: str, pl: str, dl: str
                   ) -> list[Row] | None:
        v = self.view
        if wide:
            lw = min(max(46, width * 2 // 5), width // 2)
            rw = width - lw
            left = [("Participants", self._participant_rows(lw - 2, pl))]
            right = [("Quorum", self._quorum_rows(rw - 2, ql) or
                      wrap([("class:dim", "no approvals asked for or in hand")], rw - 2))]
            drives = self._custody_rows(rw - 2, dl)
            if drives:
                right.append(("Drives and bags", drives))
            lh = sum(len(r) for _, r in left) + len(left) + 1
            rh = sum(len(r) for _, r in right) + len(right) + 1
            if lh < rh:
                left[-1][1].extend([[]] * (rh - lh))
            elif rh < lh:
                right[-1][1].extend([[]] * (lh - rh))
            block = _beside(boxed(left, lw), boxed(right, rw), lw)
            if len(block) > room:
                return None
            below: list[tuple[str, list[Row]]] = []
            notes = self._notes_fitting(width - 2, room - len(block) - 2)
            if notes:
                below.append((NOTES, notes))
            left_over = room - len(block) - 2 - sum(len(r) + 1 for _, r in below)
            journal = self._journal_rows(width - 2, left_over)
            if journal:
                journal += [[]] * (left_over - len(journal))  # the panel fills
                below.append(("Journal", journal))
            return block + (boxed(below, width) if below else [])
        panels: list[tuple[str, list[Row]]] = []
        if v.quorums:
            panels.append(("Quorum", self._quorum_rows(width - 2, ql)))
        panels.append(("Participants", self._participant_rows(width - 2, pl)))
        drives = self._custody_rows(width - 2, dl)
        if drives:
            panels.append(("Drives and bags", drives))
        used = sum(len(r) for _, r in panels) + len(panels) + 1
        if used > room:
            return None
        notes = self._notes_fitting(width - 2, room - used - 1)
        if notes:
            panels.append((NOTES, notes))
            used += len(notes) + 1
        journal = self._journal_rows(width - 2, room - used - 1)
        if journal:
            panels.append(("Journal", journal))
        return boxed(panels, width)

    def _quorum_rows(self, width: int, level: str) -> list[Row]:
        now = self.clock()
        rows: list[Row] = []
        quorums = self.view.quorums
        for i, q in enumerate(quorums):
            rows += wrap([("class:title", f"step {q.step} {q.operation.get('op')}: "),
                          ("", quorum_line(q, now) + "\n")], width, hang=2)
            if len(q.approved_by) == 1:
                rows += wrap([("", f"  approved by {q.approved_by[0]}\n")], width, hang=2)
            elif q.approved_by:
                who = ", ".join(f"{s} ({mmss(t - now)} left)"
                                for s, t in zip(q.approved_by, q.lapses, strict=False))
                rows += wrap([("", f"  approved by {who}\n")], width, hang=2)
            if any(x.digest == q.digest for x in quorums[i + 1:]):
                continue  # one operation under several quorums: shown once, after the last
            if level == "full":
                rows += wrap([("", f"  {operation_lines(q.operation)[0]}\n")], width, hang=2)
            if level in ("full", "digest"):
                rows += wrap([("class:dim", f"  digest {colon_hex(q.digest)}\n")], width, hang=7)
        return rows

    def _participant_rows(self, width: int, level: str) -> list[Row]:
        ps = self.view.participants
        if level == "full":
            out: Fragments = []
            for p in ps:
                if not p.signed_in:
                    out.append(("class:dim", f"{p.seat:<5} {p.name}: not signed in\n"))
                elif p.connected:
                    out.append(("", f"{p.seat:<5} {p.name}: signed in, connected\n"))
                else:
                    out.append(("class:bad", f"{p.seat:<5} {p.name}: signed in, DISCONNECTED\n"))
            return wrap(out, width, hang=6)
        signed = [p for p in ps if p.signed_in]
        gone = [p for p in signed if not p.connected]
        out = [("", f"{len(signed)} of {len(ps)} seats signed in, "),
               ("class:bad", f"{len(gone)} DISCONNECTED\n") if gone else
               ("", "all connected\n" if signed else "\n")]
        for p in gone:
            out.append(("class:bad", f"{p.seat:<5} {p.name}: signed in, DISCONNECTED\n"))
        waiting = [p.seat for p in ps if not p.signed_in]
        if waiting:
            out.append(("class:dim", f"not signed in: {', '.join(waiting)}\n"))
        return wrap(out, width, hang=2)

    def _custody_rows(self, width: int, level: str) -> list[Row]:
        v = self.view
        out: Fragments = []
        for loose in v.loose_drives:
            name = " ".join(w for w in (loose.vendor, loose.model) if w)
            out.append(("class:bad", f"in the port, no label: {name} serial "
                                     f"{loose.serial or '(none)'}\n"))
        if level == "full":
            for d in v.drives:
                state = "plugged in" if d.seen else "not plugged in"
                serial = d.serial or (f"expected {d.expected_serial}" if d.expected_serial
                                      else "serial not yet read")
                out.append(("", f"drive {d.label}: {serial}, {state}\n"))
            for b in v.bags:
                if b.serial is None:
                    out.append(("class:dim", f"bag {b.label}: not sealed\n"))
                else:
                    out.append(("", f"bag {b.label} {b.serial}: held by {b.custodian_name} "
                                    f"({b.custodian})\n"))
            return wrap(out or [("class:dim", "none\n")], width, hang=2)
        if level == "short":
            plugged = [f"{d.label} ({d.serial})" if d.serial else d.label
                       for d in v.drives if d.seen]
            out.append(("", f"plugged in: {', '.join(plugged)}\n" if plugged
                        else "no drive plugged in\n"))
            sealed = [f"{b.label} ({b.custodian})" for b in v.bags if b.serial is not None]
            if sealed:
                out.append(("", f"bags sealed, held by: {', '.join(sealed)}\n"))
        return wrap(out, width, hang=2)

    def _open_deviation_rows(self, width: int) -> list[Row]:
        """Open deviations, oldest first, one row each (cut short with … when longer): alerts
        on every console until the administrator decides them. Past OPEN_DEVIATIONS_SHOWN the
        last row counts the rest."""
        pending = [x for x in self.view.deviations if x.open]
        shown = pending if len(pending) <= OPEN_DEVIATIONS_SHOWN else \
            pending[:OPEN_DEVIATIONS_SHOWN - 1]
        rows = [one_row([("class:bad", f"OPEN DEVIATION {x.n}"),
                         ("", f" — {x.seat}{_at_step(x)}: {x.text}")], width) for x in shown]
        if len(shown) < len(pending):
            rows.append(one_row([("class:bad", f"… and {len(pending) - len(shown)} more open "
                                               "deviations, decided oldest first")], width))
        return rows

    def _note_rows(self, width: int) -> list[Row]:
        """Remarks and decided deviations, oldest first, one row each (cut short with … when
        longer; the journal holds every word): a deviation's outcome first."""
        rows: list[Row] = []
        for x in self.view.deviations:
            if x.open:
                continue  # an alert under the header
            if x.kind != "deviation":
                rows.append(one_row([("", f"#{x.n} remark — {x.seat}{_at_step(x)}: {x.text}")],
                                    width))
                continue
            verdict = {"accept": "ACCEPTED", "reject": "REJECTED"}.get(
                str(x.decision), str(x.decision).upper())
            rows.append(one_row([
                ("class:good" if x.decision == "accept" else "class:bad",
                 f"#{x.n} deviation {verdict}"),
                ("", f" by {x.decided_by}: {x.reason} — raised by {x.seat}{_at_step(x)}: "
                     f"{x.text}")], width))
        return rows

    def _notes_fitting(self, width: int, room: int) -> list[Row]:
        """The newest remarks and decided deviations that fit in `room` rows, leaving the
        journal half of what is left once there are more than three; a first row counts those
        left out."""
        rows = self._note_rows(width)
        fit = min(len(rows), room, max(3, room // 2))
        if fit <= 0:
            return []
        if fit == len(rows):
            return rows
        earlier = len(rows) - fit + 1
        return [one_row([("class:dim", f"… {earlier} earlier (in the journal)")], width),
                *rows[len(rows) - fit + 1:]]

    def _journal_rows(self, width: int, room: int) -> list[Row]:
        if room < 1:
            return []
        entries = []
        for j in self.view.journal:
            stamp = time.strftime("%H:%M:%S", time.gmtime(j.at))
            line = f"{j.seq:5d} {stamp} {j.text}"
            lead = len(line) - len(line.lstrip())
            entries.append(wrap([("", line)], width, hang=15 - lead))  # under the text
        if not entries:
            return wrap([("class:dim", "empty")], width)
        shown: list[Row] = []
        for e in reversed(entries):
            if len(shown) + len(e) > room:
                break
            shown = e + shown
        return shown

    # --- prompts ---------------------------------------------------------------------------------
    def _prompt_rows(self, p: _Prompt, width: int) -> list[Row]:
        rows: list[Row] = []
        for line in p.lines:
            rows += wrap([("", line)], width, hang=4)
        for frags, hang in p.shown:
            rows += wrap(frags, width, hang)
        for i, (_, text) in enumerate(p.choices):
            mark, style = (">", "class:you") if i == p.cursor else (" ", "")
            rows += wrap([(style, f"{mark} {i + 1}) {text}")], width, hang=6)
        return rows

    def _takeover(self, p: _Prompt, width: int, height: int) -> list[Row]:
        """A signing prompt on the whole screen: the header, the step and what is asked, then
        what is signed, a page at a time; the passphrase is taken once the last page was shown,
        and never on a terminal smaller than SIGN_MIN."""
        head = wrap(self._header() + self._alerts(), width)
        s = self.view.step
        if s is not None:
            head += wrap([("class:title", f"Step {s.n}  [{s.actor}]  {s.action}\n")]
                         + self._you_fragments(), width, hang=2)
        blocks = [wrap(text, width, hang) for text, _, hang in p.blocks]
        keep = [k for _, k, _ in p.blocks]
        marker_rows = 2 if width < 90 else 1
        per_page = height - len(head) - marker_rows
        term = (width, height + 1 + len(self._footer_rows(width)))
        pages = _paginate(blocks, keep, per_page) if per_page >= 3 else None
        small = term[0] < SIGN_MIN[0] or term[1] < SIGN_MIN[1]
        if small or pages is None:
            size = f"This terminal is {term[0]}x{term[1]}"
            p.blocked = (f"{size}, smaller than the {SIGN_MIN[0]}x{SIGN_MIN[1]} a signature needs"
                         if small else f"{size}: too small to show the digest and its words on "
                         "one page") + (": the passphrase is not taken, since you could not see "
                                        "all you would sign. Enlarge the terminal, or Esc. [A10]")
            p.seen_all = False
            why = wrap([("class:bad", p.blocked)], width)
            body = [r for b in blocks for r in b][:max(0, height - len(head) - len(why))]
            rows = head + body
            return rows + [[]] * max(0, height - len(rows) - len(why)) + why
        p.blocked = None
        p.pages = len(pages)
        p.page = min(p.page, len(pages) - 1)
        if p.page == len(pages) - 1:
            p.seen_all = True
        if len(pages) == 1:
            marker = "All of it is shown above."
        elif p.page < len(pages) - 1:
            marker = (f"page {p.page + 1} of {len(pages)} — PgDn: next page (the passphrase is "
                      f"taken once page {len(pages)} has been shown)")
        else:
            marker = f"page {p.page + 1} of {len(pages)} (end) — PgUp: back"
        rows = head + pages[p.page]
        marked = wrap([("class:title", marker)], width)[-marker_rows:]
        return rows + [[]] * (height - len(rows) - len(marked)) + marked


def _compare_rows(observed: str | None, expected: str | None, width: int, none_observed: str,
                  none_expected: str, style: str = "") -> list[Row]:
    """`observed:` over `record:`, each once, cut at the same places so that they line up, and
    under the first character that differs a `^`."""
    a = observed if observed is not None else none_observed
    b = expected if expected is not None else none_expected
    labels = ("observed: ", "record:   ")
    room = max(8, width - len(labels[0]))
    differs = None
    if observed is not None and expected is not None and observed != expected:
        differs = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                       min(len(a), len(b)))
    rows: list[Row] = []
    for start in range(0, max(len(a), len(b), 1), room):
        pad = " " * len(labels[0])
        for label, text in zip(labels, (a, b), strict=True):
            chunk = text[start:start + room]
            if chunk or start == 0:
                rows.append([(style, (label if start == 0 else pad) + chunk)])
        if differs is not None and start <= differs < start + room:
            rows.append([(style, pad + " " * (differs - start) + "^"),
                         ("class:dim", f" differs from here (character {differs + 1})")])
    return rows


def _digest_fragments(doc: DocumentView, width: int | None = None
                      ) -> list[tuple[Fragments, int]]:
    """The transcript's digest as officers read it aloud: `sha256` and its colon hex, `words`
    and its 32 PGP words, each with the hang that keeps its rows under it. Where the colon hex
    does not fit one row of `width` (or no width is given: a prompt), it is cut in two halves
    of 16 bytes, the first ending in its colon, so that it reads the same on every console."""
    hexes = doc.sha256
    if len(hexes) == 95 and (width is None or 7 + len(hexes) > width):
        hexes = f"{hexes[:48]}\n{' ' * 7}{hexes[48:]}"
    return [([("", "sha256 "), ("class:title", hexes)], 7),
            ([("", "words  "), ("class:title", doc.words)], 7)]


def _reports_progress(action: object) -> bool:
    """Whether a step of `action` reports progress (its row in ceremony.script.step_kinds)."""
    kind = STEP_KINDS.get(action) if isinstance(action, str) else None
    return kind is not None and kind.progress
