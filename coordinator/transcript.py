"""The printable transcript: the journal rendered for people, the paper copy the seed printed.

The seed ran `script` for the whole ceremony and printed the log with `enscript -G -U 2`: plain
monospaced text on numbered pages, each under a header. This is that printout for the journal.
`render` is pure (journal records in, text out) and `transcript_pdf` lays the same pages out as a
PDF, one PDF page per text page, so the file on the drive, its digest and the sheets on the table
are one document.

What it holds, in journal order: a header (ceremony, script and its SHA-256, the journal's origin
and key, the roster and the previous ceremony's record from the genesis entry), then every entry:
events with who did what and the value, refusals, the room's records (pause, resume, a password
typed — who and for what, never the password —, a lapsed approval, a console gone or back, USB
drives plugged, removed or refused, the coordinator starting), and checkpoints with their tree
size and root as colon hex. Each step's whole instruction is printed, wrapped and never cut,
when the ceremony reaches it; steps the journal never reached follow at the end, so the printout
is always the whole script beside what happened.

Why text pages and not a free-flowing document: the digest the KGA types at step 118 is of this
file, and an auditor rereads the same lines on paper and on screen. Pages are `PAGE_LINES` lines
of at most `WIDTH` columns, their header included, separated by form feeds (as enscript's were);
a value is never cut: a line too long is wrapped, and a token wider than the text column (a
colon-hex digest) is moved left until it fits whole. Control characters in journal text (a form
feed typed into a value would fake a page) are printed escaped.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import io
import json
import re
import time
import unicodedata
from collections.abc import Iterable
from typing import Any

from ceremony.digests import colon_hex, operation_digest
from ceremony.previous import held_of
from ceremony.records import operation_typed_for
from ceremony.script.model import Script, Step

#: Columns of a page (8.5 pt monospaced fills A4's width less margins and fits Letter).
WIDTH = 100
#: Lines of a page, its header included: enscript's 66.
PAGE_LINES = 66
#: The page header: a title line with "page N of M", a rule, a blank line.
HEADER_LINES = 3
#: Where an entry's text starts: "  seq  HH:MM:SSZ  " (a seq of up to five digits).
_TEXT_COLUMN = 18
_DETAIL = " " * (_TEXT_COLUMN + 2)


# --- one line per event, shared with the consoles' journal panel (coordinator.live.tail) --------
def describe_event(e: dict[str, Any]) -> str:
    """One line for a journaled event (`{step}` is left for the caller to fill in)."""
    kind = e.get("event")
    if kind == "SignIn":
        return (f"{e['name']} ({e['organisation']}) signs in as {', '.join(e['seats'])}"
                + (" (ID checked)" if e.get("id_checked") else ""))
    if kind == "Acknowledge":
        return f"{e['seat']} confirms step {{step}}"
    if kind == "Record":
        return f"{e['seat']} records {e['value']}"
    if kind == "Approve":
        a = e["approval"]
        return f"{e['seat']} approves operation {a['operation'][:16]}... for step {a['step']}"
    if kind == "RefuseApproval":
        return f"{e['seat']} refuses {e['quorum']}: {e['reason']}"
    if kind == "Decide":
        why = f": {e['reason']}" if e.get("reason") else ""
        return f"{e['seat']} decides {e['decision']}{why}"
    if kind == "SignOff":
        return f"{e['seat']} signs off the checkpoint"
    if kind == "Observed":
        return f"machine observes {e['value']}"
    if kind == "OperationPlanned":
        op = e["operation"]
        return f"signer plans {op.get('op')} ({_op_summary(op)})"
    if kind == "OperationStarted":
        return f"operation {e['digest'][:16]}... started"
    if kind == "Performed":
        return "done: " + _result_summary(e.get("result", {}))
    if kind == "PerformFailed":
        return f"FAILED: {e['error']}"
    if kind == "Remark":
        what = "raises a DEVIATION" if e.get("kind") == "deviation" else "remarks"
        return f"{e['seat']} {what}: {e['text']}"
    if kind == "DecideDeviation":
        return f"{e['seat']} decides {e['decision']} on deviation {e['deviation']}: {e['reason']}"
    return str(kind)


def describe_drive(record: dict[str, Any]) -> str:
    """A USB drive plugged in, removed or refused, as the journal recorded it."""
    what = {"present": "drive present at start", "plugged": "drive plugged in",
            "removed": "DRIVE REMOVED", "refused": "DRIVE REFUSED"}.get(
        str(record.get("event")), f"drive {record.get('event')}")
    who = " ".join(str(record[k]) for k in ("vendor", "model") if record.get(k))
    line = f"{what}: {who} serial {record.get('serial') or '(none)'}".replace(":  ", ": ")
    if record.get("label"):
        line += f" ({record['label']})"
    if record.get("reason"):
        line += f": {record['reason']}"
    return line


def _op_summary(op: dict[str, Any]) -> str:
    if op.get("op") == "purge":
        return f"{len(op.get('delete', []))} dead keys"
    if op.get("op") == "generate":
        count = sum(b.get("count", 0) for b in op.get("batches", []))
        return f"{count} keys for {op.get('duration')}"
    if op.get("op") == "restore":
        return f"{len(op.get('keys', []))} keys from {op.get('file')}"
    return str(op.get("file", ""))


def _result_summary(r: dict[str, Any]) -> str:
    keep = {k: v for k, v in r.items()
            if isinstance(v, str | int | float | bool) and k != "listing"}
    return ", ".join(f"{k}={v}" for k, v in sorted(keep.items())) or "ok"


# --- the transcript ------------------------------------------------------------------------------
def render(script: Script, records: Iterable[tuple[int, dict[str, Any]]]) -> str:
    """Text of the transcript from (seq, journal record) pairs: pages of at most `PAGE_LINES`
    lines of at most `WIDTH` columns, separated by form feeds, each under a header naming the
    ceremony and "page N of M". Never raises on a record it cannot read: it prints it raw."""
    entries = list(records)
    genesis = next((r for _, r in entries if r.get("type") == "genesis"), {})
    body = _Body()
    _front(body, script, genesis, entries)
    steps = _Steps(script, body)
    day = ""
    for seq, rec in entries:
        at = _seconds(rec.get("at"))
        where = _step_of(rec)
        if where is not None:
            steps.reach(where)
        when = _day(at)
        if when and when != day:
            day = when
            body.blank()
            body.line(f"---- {day} (times are UTC) ----")
        try:
            text, details = _describe(rec, script)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            text, details = f"entry of type {rec.get('type')!r} (printed as journaled)", [
                _raw(rec)]
        start = len(body.lines)
        body.entry(seq, at, text)
        for d in details:
            if isinstance(d, _Verbatim):
                body.verbatim(d)
            else:
                body.detail(d)
        body.together(start)
    steps.rest()
    body.blank()
    body.line("---- end of transcript ----")
    return _paginate(body, _title(script, genesis))


def pages(text: str) -> list[str]:
    """The pages of a transcript, each its lines joined by newlines (no form feed)."""
    return [p.removesuffix("\n") for p in text.split("\f")]


class _Body:
    """The transcript's lines before they are paged; every line at most WIDTH columns. A line
    marked `keep` stays on the page of the line after it (a heading with what it heads)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.keep: set[int] = set()

    def _add(self, lines: list[str], keep: bool = False) -> None:
        if keep:
            self.keep.update(range(len(self.lines), len(self.lines) + len(lines)))
        self.lines += lines

    def blank(self) -> None:
        """One blank line (never two); after a heading it stays with the heading."""
        if self.lines and self.lines[-1]:
            self._add([""], keep=len(self.lines) - 1 in self.keep)

    def together(self, start: int) -> None:
        """Keep the lines from `start` to the last on one page (an entry and its values)."""
        self.keep.update(range(start, len(self.lines) - 1))

    def line(self, text: str, indent: int = 0, hang: int | None = None,
             keep: bool = False) -> None:
        """`text` wrapped: its first line indented `indent`, the rest `hang` (default the same);
        each paragraph (newline) of `text` starts a line of its own."""
        hang = indent if hang is None else hang
        for i, para in enumerate(_printable(text).split("\n")):
            first = " " * (indent if i == 0 else hang)
            self._add(_wrap(para, first, " " * hang) if para.strip() else [""], keep)

    def entry(self, seq: int, at: float | None, text: str) -> None:
        clock = time.strftime("%H:%M:%S", time.gmtime(at)) + "Z" if at is not None else "-" * 9
        prefix = f"{seq:5d}  {clock}  "
        self._add(_wrap(_printable(text).replace("\n", " "), prefix, " " * _TEXT_COLUMN))

    def detail(self, text: str) -> None:
        self._add(_wrap(_printable(text).replace("\n", " "), _DETAIL, _DETAIL))

    def verbatim(self, text: str) -> None:
        """One line as written, at a small indent so a signed note's lines fit; a line that
        does not goes on below at its one space (the signature line's), never cut."""
        line = _printable(text)
        self._add(_wrap(line, "    ", "      ") if line.strip() else [""])

    def field(self, name: str, value: str) -> None:
        """`name` in a column of 16, then `value`."""
        self._add(_wrap(_printable(value).replace("\n", " "), f"{name:<15} ", " " * 16))


def _wrap(text: str, first: str, hang: str, width: int = WIDTH) -> list[str]:
    """Words of `text` filled into lines of `width`, the spaces between them kept as written:
    the first line starts with `first`, the others with `hang`. A word wider than the room after
    `hang` is moved left until it fits whole on a line of its own; only a word wider than the
    page is split (never cut)."""
    lines: list[str] = []
    cur, filled = first, False
    for token in re.findall(r" *\S+", text):
        word = token.lstrip(" ")
        piece = token if filled else word
        if len(cur) + len(piece) <= width:
            cur, filled = cur + piece, True
            continue
        if filled or cur.strip():
            lines.append(cur.rstrip())
        lead = hang if len(hang) + len(word) <= width else " " * max(0, width - len(word))
        while len(lead) + len(word) > width:  # wider than the page: split, never cut
            room = width - len(lead)
            lines.append(lead + word[:room])
            word = word[room:]
        cur, filled = lead + word, True
    lines.append(cur.rstrip())
    return lines


def _printable(text: str) -> str:
    """`text` with tabs as spaces and every other control character escaped (a form feed or a
    terminal escape in a journaled value must not move the printed page)."""
    out = []
    for ch in str(text).expandtabs(4):
        if ch == "\n":
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _paginate(body: _Body, title: str) -> str:
    """The lines as pages under their header. A page does not end on a heading (a line marked
    keep moves to the next page with what it heads, up to half a page) nor begin with a blank."""
    per_page = PAGE_LINES - HEADER_LINES
    lines, chunks, i = body.lines, [], 0
    while i < len(lines):
        while i < len(lines) and not lines[i] and chunks:
            i += 1
        end = min(i + per_page, len(lines))
        if end < len(lines):
            j = end
            while j > i + per_page // 2 and j - 1 in body.keep:
                j -= 1
            end = j if j > i + per_page // 2 else end
        if i < end:
            chunks.append(lines[i:end])
        i = end
    chunks = chunks or [[]]
    total = len(chunks)
    out = []
    for n, chunk in enumerate(chunks, start=1):
        right = f"page {n} of {total}"
        left = title[: WIDTH - len(right) - 2]
        head = [f"{left}{' ' * (WIDTH - len(left) - len(right))}{right}", "=" * WIDTH, ""]
        out.append("\n".join(head + chunk) + "\n")
    return "\f".join(out)


def _title(script: Script, genesis: dict[str, Any]) -> str:
    c = script.ceremony
    day = str(genesis.get("at", ""))[:10]
    rehearsal = "  REHEARSAL" if genesis.get("rehearsal") else ""
    return f"{c.id}  transcript  {day}{rehearsal}".rstrip()


def _front(body: _Body, script: Script, genesis: dict[str, Any],
           entries: list[tuple[int, dict[str, Any]]]) -> None:
    c = script.ceremony
    body.line(f"{c.title.upper()}: TRANSCRIPT OF THE CEREMONY JOURNAL")
    if genesis.get("rehearsal"):
        body.line("A REHEARSAL: no production key was generated, backed up or sealed.")
    body.blank()
    body.field("ceremony", f"{c.id}, script version {c.version}")
    if c.continues:
        body.field("continues", c.continues)
    body.field("script", str((genesis.get("script") or {}).get("name") or script.path))
    body.field("script sha256", colon_hex(script.sha256))
    journal = genesis.get("journal") or {}
    if journal.get("origin"):
        body.field("journal", str(journal["origin"]))
    if journal.get("vkey"):
        body.field("verifier key", str(journal["vkey"]))
    if genesis.get("at"):
        body.field("opened", str(genesis["at"]).replace("T", " "))
    if entries:
        body.field("entries", f"{entries[0][0]} to {entries[-1][0]} ({len(entries)} entries)")
    if c.estimated:
        body.field("estimated", _minutes(c.estimated.seconds))
    officers = (genesis.get("roster") or {}).get("officers") or []
    if officers:
        body.blank()
        body.line("Roster (enrolled seats):")
        for o in officers:
            if isinstance(o, dict):
                body.line(f"{o.get('seat', '?'):<6} {o.get('role', '?'):<4} {o.get('name', '?')} "
                          f"({o.get('organisation', '?')})  key {o.get('signing_key', '?')}",
                          indent=2, hang=14)
    if script.quorums:  # who may approve what: the rules the approvals below are held to
        body.blank()
        body.line("Quorums:")
        for q in script.quorums.values():
            rule = [f"{q.m} different {q.role}s" if q.m > 1 else f"one {q.role}",
                    f"for step {q.authorizes}",
                    f"each approval valid {_minutes(q.expires.seconds)}"]
            if q.seats:
                rule.append(f"only {', '.join(q.seats)}")
            if q.distinct_from:
                rule.append("nobody who did step " + ", ".join(map(str, q.distinct_from)))
            body.line(f"{q.id}: {'; '.join(rule)}", indent=2, hang=4)
    previous = genesis.get("previous") or {}
    if previous:
        body.blank()
        body.line(f"The previous ceremony's record{f' ({c.continues})' if c.continues else ''}:")
        for k, v in previous.items():
            if k != "custody":
                body.line(f"{k}: {v}", indent=2, hang=4)
        for held in held_of(previous):  # the bags it left held, which unseal steps open
            body.line(held.describe(), indent=2, hang=4)
    body.blank()
    body.line("How to read it: one entry of the journal per line, in journal order: its number "
              "(seq), the time (UTC) and what happened; indented lines under an entry give the "
              "values it carries. Each step's whole instruction is printed when the ceremony "
              "reaches it, under its section. A checkpoint signs every entry before it: its "
              "tree size and root (colon hex) are those `keyrite verify` checks.")


class _Steps:
    """Prints each step's whole instruction, in script order, as the journal reaches it."""

    def __init__(self, script: Script, body: _Body) -> None:
        self.script = script
        self.body = body
        self.order = {s.n: i for i, s in enumerate(script.steps)}
        self.shown = -1
        self.section: str | None = None

    def reach(self, n: int) -> None:
        i = self.order.get(n)
        if i is None or i <= self.shown:
            return
        for step in self.script.steps[self.shown + 1:i + 1]:
            self._step(step)
        self.shown = i

    def rest(self) -> None:
        left = self.script.steps[self.shown + 1:]
        if not left:
            return
        self.body.blank()
        self.body.line("=" * WIDTH)
        self.body.line(f"STEPS THIS JOURNAL DOES NOT REACH ({len(left)}): the ceremony had not "
                       "come to them when this transcript was made, or it stopped before them.")
        self.section = None
        for step in left:
            self._step(step)
        self.shown = len(self.script.steps) - 1

    def _step(self, step: Step) -> None:
        b = self.body
        if step.section != self.section:
            self.section = step.section
            sec = next(s for s in self.script.sections if s.title == step.section)
            b.blank()
            b.line("=" * WIDTH, keep=True)
            b.line(f"SECTION: {sec.title}  (estimated {_minutes(sec.estimated.seconds)})",
                   keep=True)
            if sec.note:
                b.line(sec.note, indent=2, keep=True)
            b.line("=" * WIDTH, keep=True)
        b.blank()
        b.line(f"STEP {step.n}  {step.actor}  {step.action}{_params(step)}", hang=4, keep=True)
        b.line(step.text, indent=4, keep=True)
        if step.note:
            b.line(f"Note: {step.note}", indent=4, hang=10, keep=True)


def _step_or_none(script: Script, n: int) -> Step | None:
    try:
        return script.step(n)
    except KeyError:
        return None


def _params(step: Step) -> str:
    """What a step is wired to, beside its action: what it observes, records, moves or seals."""
    bits: list[str] = []
    if step.observe:
        bits.append(f"observes {step.observe}")
    if step.expect or step.value:
        bits.append(f"expects {step.expect or step.value}")
    if step.format:
        bits.append(f"format {step.format}")
    if step.drive:
        bits.append(f"drive {step.drive}")
    if step.source:
        bits.append(f"from {step.source}")
    if step.bag:
        bits.append(f"bag {step.bag}")
    if step.contents:
        bits.append(f"contents {', '.join(step.contents)}")
    if step.quorum:
        bits.append(f"quorum {', '.join(step.quorum)}")
    if step.duration:
        bits.append(f"for {step.duration}")
    if step.equals is not None:
        bits.append(f"must equal step {step.equals}")
    if step.file:
        bits.append(f"file {step.file}")
    if step.password:
        bits.append(f"password {step.password}")
    if step.seat:
        bits.append(f"only {step.seat}")
    if step.distinct_from:
        bits.append(f"not whoever did step {', '.join(map(str, step.distinct_from))}")
    if step.cosigners:
        bits.append(f"cosigned by {', '.join(step.cosigners)}")
    return f" ({'; '.join(bits)})" if bits else ""


def _step_of(rec: dict[str, Any]) -> int | None:
    """The step current when a record was written (an expired approval names the step it was
    for, not the current one, and moves nothing)."""
    if rec.get("type") in ("event", "refused", "drive", "pause", "resume", "coordinator"):
        n = rec.get("step")
        return n if isinstance(n, int) and not isinstance(n, bool) else None
    return None


def _describe(rec: dict[str, Any], script: Script) -> tuple[str, list[str]]:
    """An entry's line and the lines of values under it."""
    t = rec.get("type")
    if t == "genesis":
        roster = (rec.get("roster") or {}).get("officers") or []
        return (f"journal opened for ceremony {rec.get('ceremony')} ({rec.get('title')}), "
                f"{len(roster)} seats enrolled; script, roster and previous record as above", [])
    if t == "event":
        e = rec["event"]
        step = rec.get("step")
        line = describe_event(e).replace("{step}", str(step if step is not None else ""))
        if e.get("event") == "Performed":  # long values on lines of their own, not mid-word
            r = e.get("result") or {}
            short = {k: v for k, v in r.items() if isinstance(v, str | int | float | bool)
                     and k != "listing" and len(str(v)) <= 40}
            line = "done: " + (", ".join(f"{k}={v}" for k, v in sorted(short.items())) or "ok")
        elif e.get("event") == "Acknowledge" and isinstance(step, int) and \
                getattr(_step_or_none(script, step), "action", None) == "kek.share":
            line = (f"{e['seat']} wrote down their share of the backup KEK (handed over sealed "
                    "to their console; the share is never journaled)")
        elif e.get("event") == "Record" and isinstance(step, int):
            taken = _step_or_none(script, step)
            if taken is not None and taken.action in ("seal", "handover"):
                line = (f"{e['seat']} reads bag serial {e['value']} and signs for bag "
                        f"{taken.bag}" + (" (sealed)" if taken.action == "seal" else
                                          " (handed over)"))
        return line, _event_details(e)
    if t == "refused":
        event = rec.get("event") if isinstance(rec.get("event"), dict) else {}
        who = rec.get("console") or event.get("seat") or "coordinator"
        what = rec.get("command") or event.get("event") or "command"
        return f"REFUSED {who} {what}: {rec.get('reason')}", []
    if t == "checkpoint":
        text, details = _checkpoint(str(rec["note"]))
        return (text, details) if "unreadable" in text else (text, _note(str(rec["note"])))
    if t in ("pause", "resume"):
        return (f"{rec['seat']} {'PAUSED' if t == 'pause' else 'RESUMED'} the ceremony", [])
    if t == "secret":
        purpose = {"backup": f"the {operation_typed_for(script, rec.get('step'))}",
                   "drill": "the restore drill"}.get(str(rec.get("purpose")),
                                                     str(rec.get("purpose")))
        return (f"{rec['seat']} typed the {rec['name']} password for {purpose} at step "
                f"{rec['step']} (it matched its verifier; the password is never journaled)", [])
    if t == "share":
        return (f"{rec['seat']} brought their KEK share for the {rec.get('purpose')} at step "
                f"{rec['step']} (sealed on their console to the signer; never journaled)", [])
    if t == "expired":
        return (f"{rec['seat']}'s approval ({rec['quorum']}, for step {rec['step']}) LAPSED "
                "before its operation started", [f"key {rec['key']}, nonce {rec['nonce']}"])
    if t == "presence":
        state = "back" if rec.get("connected") else "GONE"
        return (f"console of {', '.join(rec.get('seats', []))} ({rec.get('person')}) {state}", [])
    if t == "drive":
        details = [f"device {rec['device']}"] if rec.get("device") else []
        return describe_drive(rec), details
    if t == "coordinator":
        return f"coordinator {rec.get('what')}", []
    if t == "cosignature":
        return (f"{rec.get('seat')} cosigned the checkpoint of {rec.get('size')} entries",
                [f"root {rec.get('root')}", f"{rec.get('signature')}"])
    if t == "document":
        return (f"{rec.get('what')} written: {rec.get('file')}", [f"SHA-256 {rec.get('sha256')}"])
    return f"entry of type {t!r}", [_raw(rec)]


def _event_details(e: dict[str, Any]) -> list[str]:
    kind = e.get("event")
    if kind == "Approve":
        a = e["approval"]
        return [f"operation sha256 {colon_hex(str(a['operation']))}",
                f"expires {_iso(a['expires'])}, nonce {a['nonce']}", f"key {a['key']}"]
    if kind == "OperationPlanned":
        return _plan_details(e["operation"])
    if kind == "OperationStarted":
        return [f"operation sha256 {colon_hex(str(e['digest']))}"]
    if kind == "Performed":
        return _result_details(e.get("result") or {})
    if kind == "SignOff":
        text, details = _checkpoint(str(e["checkpoint"]))
        return [f"the signed {text}", *details]
    if kind == "Record" and e.get("signature"):
        return [f"signed for with {e['seat']}'s key: {e['signature']}"]
    return []


def _plan_details(op: dict[str, Any]) -> list[str]:
    out = [f"operation sha256 {colon_hex(operation_digest(op))}"]
    if op.get("op") == "purge":
        out.append(f"delete {len(op.get('delete', []))} keys: {' '.join(op.get('delete', []))}")
    elif op.get("op") == "generate":
        for b in op.get("batches", []):
            out.append(f"policy {b.get('policy')} {b.get('role')} {b.get('algorithm')}: "
                       f"{b.get('count')} keys: {' '.join(b.get('locators', []))}")
    elif op.get("op") == "restore":
        out += [f"key {k.get('locator')} {k.get('type')} public key sha256 "
                f"{k.get('public_key_sha256')}" for k in op.get("keys", [])]
    for k, v in sorted(op.items()):
        if k not in ("op", "delete", "batches") and isinstance(v, str | int | float | bool):
            out.append(f"{k} {v}")
    return out


def _result_details(r: dict[str, Any]) -> list[str]:
    out = []
    for k, v in sorted(r.items()):
        if isinstance(v, str | int | float | bool) and k != "listing" and len(str(v)) > 40:
            out.append(f"{k} {v}")
        elif k == "listing" and isinstance(v, str):
            out.append(f"listing: {len(v.splitlines())} lines, kept whole in the journal")
        elif k == "public_keys" and isinstance(v, list):
            out.append(f"public keys ({len(v)}): kept whole in the journal, published as "
                       "public-keys.pem (`keyrite keys`)")
        elif k == "files" and isinstance(v, list):
            for f in v:
                if isinstance(f, dict):
                    out.append(f"file {f.get('name')}, {f.get('size')} bytes, sha256 "
                               f"{colon_hex(str(f.get('sha256', '')))}")
        elif isinstance(v, list):
            out.append(f"{k} ({len(v)}): {' '.join(str(x) for x in v)}")
        elif isinstance(v, dict):
            out.append(f"{k}: " + ", ".join(f"{a}={b}" for a, b in sorted(v.items())))
    return out


def _checkpoint(note: str) -> tuple[str, list[str]]:
    """A checkpoint's line: the entries it covers, its tree size, its root as colon hex, and
    whose signature it carries."""
    lines = note.split("\n")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True).hex()
    except (IndexError, ValueError, binascii.Error):
        return "CHECKPOINT (unreadable note, printed as journaled)", [note]
    signers = [s.split(" ")[1] for s in lines[4:] if s.startswith("\u2014 ") and " " in s[2:]]
    return (f"CHECKPOINT of entries 0 to {size - 1}: tree size {size}, root {colon_hex(root)}",
            [f"origin {lines[0]}"] + [f"signed by {s}" for s in signers])


def _note(note: str) -> list[str]:
    """A checkpoint's signed note as written, to be typed back into a file for `keyrite verify
    --checkpoint` (a checkpoint kept apart from the journal, docs/journal.md)."""
    return [_NOTE_LABEL] + [_Verbatim(x) for x in note.removesuffix("\n").split("\n")]


class _Verbatim(str):
    """A line printed as written (a signed note's), never reflowed into its neighbours."""


_NOTE_LABEL = "signed note (a line continued below joins it with one space):"


#: Fields never printed, even from a record that should not hold them.
_WITHHELD = ("password", "passphrase", "pin")


def _raw(rec: Any) -> str:
    """A record as journaled, for one the transcript cannot describe; a field named like a
    password is withheld (no record type has one, and none may reach paper)."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: "(withheld)" if any(w in str(k).lower() for w in _WITHHELD) else clean(x)
                    for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(rec), ensure_ascii=False, sort_keys=True, default=str)


def _seconds(at: Any) -> float | None:
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        return float(at)
    if isinstance(at, str):
        try:
            return float(calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            return None
    return None


def _day(at: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at)) if at is not None else ""


def _iso(at: Any) -> str:
    s = _seconds(at)
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(s)) if s is not None else str(at)


def _minutes(seconds: int) -> str:
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h {m} min" if h else f"{m} min"


# --- the same pages as a PDF ---------------------------------------------------------------------
#: A4 in points; what is drawn stays inside US Letter's height too (792 pt), top-aligned or
#: centred, so either paper prints every line.
_A4 = (595.28, 841.89)
_TOP = 58.0  # from the top edge to the first line's baseline
_FONT = 8.5
_LEADING = 10.6


def transcript_pdf(text: str) -> bytes:
    """The paged text as a PDF: one page per text page, monospaced, A4, laid out to print whole
    on Letter as well. A page wider or longer than `WIDTH` x `PAGE_LINES` is drawn smaller rather
    than cut. The font is DejaVu Sans Mono, embedded, so every character of a name is drawn; on
    a machine without it, Courier (Latin-1 only), as `coordinator.report.fonts` chooses and
    says. Deterministic: the same text gives the same bytes (reportlab's invariant mode) with the
    same font file, so a PDF's digest can be recomputed from the transcript."""
    # only here: the transcript itself stays pure
    from reportlab.pdfgen import canvas

    from coordinator.report.fonts import chosen

    fonts = chosen()
    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=_A4, invariant=1, pageCompression=1,
                        initialFontName=fonts.mono)
    first = " ".join(pages(text)[0].split("\n", 1)[0].split()) if text else ""
    pdf.setTitle(fonts.drawable(re.sub(r"\s*page \d+ of \d+$", "", first)) or "transcript")
    pdf.setCreator("keyrite")
    usable_w = _A4[0] - 2 * 36
    usable_h = 792 - _TOP - 36
    column = fonts.advance  # one character's width at 1 pt: every glyph of the font has it
    for page in pages(text):
        lines = page.split("\n")
        cols = max((len(x) for x in lines), default=0)
        size = min(_FONT, usable_w / (column * max(cols, 1)),
                   usable_h / (len(lines) * _LEADING / _FONT))
        leading = size * _LEADING / _FONT
        left = (_A4[0] - column * size * max(cols, WIDTH if size == _FONT else cols)) / 2
        y = _A4[1] - _TOP
        pdf.setFont(fonts.mono, size)
        for line in lines:
            pdf.drawString(left, y, fonts.drawable(line))
            y -= leading
        pdf.showPage()
    pdf.save()
    return buf.getvalue()


def transcript_pdf_apart(text: str, timeout: float = 600.0) -> bytes:
    """`transcript_pdf` made in a child process of this interpreter, for the live coordinator:
    reportlab and the embedded font cost some 12 MB that a process keeps once it has loaded
    them (the registered font, the modules), and the coordinator runs the whole ceremony on.
    The child runs this very code with this font, so the bytes are `transcript_pdf(text)`'s."""
    import os
    import subprocess
    import sys

    from keyrite.exits import Failure

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        done = subprocess.run([sys.executable, "-m", "coordinator.transcript"],
                              input=text.encode("utf-8", "surrogatepass"), capture_output=True,
                              env=env, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failure(f"the transcript's PDF could not be made: {e}") from None
    if done.returncode != 0 or not done.stdout.startswith(b"%PDF"):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise Failure(f"the transcript's PDF could not be made (exit {done.returncode}): "
                      f"{tail[0]}")
    return done.stdout


if __name__ == "__main__":  # transcript_pdf_apart's child: the text on stdin, the PDF on stdout
    import sys

    sys.stdout.buffer.write(transcript_pdf(sys.stdin.buffer.read().decode("utf-8",
                                                                          "surrogatepass")))
