"""The ceremony report laid out for print: A4, black on white, readable on Letter.

`report_pdf(facts)` turns what `facts.facts_of` read from the journal into pages with reportlab's
platypus. Nothing here decides anything about the ceremony: every figure is a field of `Facts`.

Choices:
- Everything drawn stays inside the part of an A4 page that US Letter also has (Letter is wider
  but 50 pt shorter), so the same file prints whole on either paper, scaled or not.
- Black and white only (rules, no shading): it photocopies, and the seed's copies were
  photocopies (step 132).
- DejaVu Sans and Sans Mono, embedded, so every name is drawn as written ("Łukasz Żółć",
  "Ιωάννα", "Дмитрий"); the PDF standard fonts (Helvetica, Courier, Latin-1 only) where the font
  files are missing. `fonts.py` chooses them and says what is drawn of a character they lack.
  The same facts give the same bytes (reportlab's invariant mode) with the same font files.
- Digests are colon hex in the monospaced font, broken after 16 bytes where a column is
  narrow; the final checkpoint's root is printed on one line, with its PGP words and a QR code
  of the signed note.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfgen import canvas
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from ceremony.digests import colon_hex
from coordinator.publish import PublicKey
from coordinator.report.facts import Facts, StepFact
from coordinator.report.fonts import chosen

#: The fonts this process draws with (DejaVu, or the standard fonts without it).
FONTS = chosen()

PAGE_W, PAGE_H = A4
#: US Letter's height: nothing is drawn lower than this from the top, less a margin.
_LETTER_H = 792.0
MARGIN_X = 50.0
TOP = 72.0  # from the top edge to the frame
BOTTOM = PAGE_H - (_LETTER_H - 50.0)  # the frame ends 50 pt above Letter's bottom edge
WIDTH = PAGE_W - 2 * MARGIN_X

_BLACK = colors.black
_BASE = ParagraphStyle("base", fontName=FONTS.sans, fontSize=9, leading=11.5,
                       textColor=_BLACK, alignment=TA_LEFT)
_SMALL = ParagraphStyle("small", parent=_BASE, fontSize=7.5, leading=9.2)
_CELL = ParagraphStyle("cell", parent=_BASE, fontSize=7.5, leading=9)
_CELL_B = ParagraphStyle("cellb", parent=_CELL, fontName=FONTS.bold)
_MONO = ParagraphStyle("mono", parent=_CELL, fontName=FONTS.mono, fontSize=7.2, leading=8.8)
_H1 = ParagraphStyle("h1", parent=_BASE, fontName=FONTS.bold, fontSize=20, leading=24,
                     spaceAfter=6)
_H2 = ParagraphStyle("h2", parent=_BASE, fontName=FONTS.bold, fontSize=13, leading=16,
                     spaceBefore=10, spaceAfter=5)
_H3 = ParagraphStyle("h3", parent=_BASE, fontName=FONTS.bold, fontSize=10, leading=13,
                     spaceBefore=6, spaceAfter=3)
_BIG = ParagraphStyle("big", parent=_BASE, fontName=FONTS.bold, fontSize=12, leading=15)


def report_pdf(facts: Facts) -> bytes:
    """The report as PDF bytes."""
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=MARGIN_X, rightMargin=MARGIN_X, topMargin=TOP,
        bottomMargin=BOTTOM, title=_drawable(f"Ceremony report: {facts.title} ({facts.ceremony})"),
        author="keyrite", creator="keyrite report", invariant=1,
        initialFontName=FONTS.sans)  # else every page names Helvetica, though it draws none
    story = _Story(facts).build()
    doc.build(story, canvasmaker=_canvas_for(facts))
    return buf.getvalue()


def _canvas_for(facts: Facts) -> type[canvas.Canvas]:
    """A canvas that knows the page count when it draws each page's header and footer."""
    left = _drawable(f"{facts.title}: ceremony report")
    mark = "REHEARSAL" if facts.rehearsal else ""
    foot = _drawable(f"{facts.ceremony}  {facts.opened[:10]}")

    class _Numbered(canvas.Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 (reportlab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for n, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self._furniture(n, total)
                super().showPage()
            super().save()

        def _furniture(self, n: int, total: int) -> None:
            self.setStrokeColor(_BLACK)
            self.setFillColor(_BLACK)
            self.setLineWidth(0.5)
            y_top = PAGE_H - 50
            self.setFont(FONTS.sans, 8)
            self.drawString(MARGIN_X, y_top, left)
            if mark:
                self.setFont(FONTS.bold, 9)
                self.drawRightString(PAGE_W - MARGIN_X, y_top, mark)
            self.line(MARGIN_X, y_top - 4, PAGE_W - MARGIN_X, y_top - 4)
            y_foot = BOTTOM - 16
            self.line(MARGIN_X, y_foot + 9, PAGE_W - MARGIN_X, y_foot + 9)
            self.setFont(FONTS.sans, 8)
            self.drawString(MARGIN_X, y_foot, foot)
            self.drawRightString(PAGE_W - MARGIN_X, y_foot, f"page {n} of {total}")

    return _Numbered


# --- text helpers --------------------------------------------------------------------------------
def _drawable(text: Any) -> str:
    """What the fonts draw of `text` (every character with DejaVu; Latin-1 without it)."""
    return FONTS.drawable(text)


def _t(text: Any) -> str:
    """Text for a Paragraph: drawable and XML-escaped."""
    return escape(_drawable(text))


def _p(text: Any, style: ParagraphStyle = _CELL) -> Paragraph:
    return Paragraph(_t(text), style)


def _mono(text: Any, style: ParagraphStyle = _MONO) -> Paragraph:
    return Paragraph(_t(text), style)


def _chars(width: float, size: float = 7.2) -> int:
    """Monospaced characters of `size` that fit a table column `width` wide (less its
    padding)."""
    return max(1, int((width - 6) / (FONTS.advance * size)))


def _hex(hexdigest: str | None, width: float = WIDTH) -> Paragraph:
    """A digest as colon hex in a column `width` wide: 16, 8 or 4 bytes a line, whichever is
    the most that fits, so every line breaks after a whole group."""
    if not hexdigest:
        return _p("")
    h = hexdigest.replace(":", "").lower()
    per_line = next((b for b in (32, 16, 8, 4, 2) if 3 * b <= _chars(width)), 1)  # ":" ends a line
    parts = [colon_hex(h[i:i + 2 * per_line]) for i in range(0, len(h), 2 * per_line)]
    # a space before each break: reportlab takes "a<br/>b" with no space for one word, and
    # splits that word where it likes
    return Paragraph(": <br/>".join(escape(x) for x in parts), _MONO)


def _breakable(text: str, width: float) -> Paragraph:
    """A long token (a base64 signature, a fingerprint) broken to fit a column `width` wide."""
    lines = -(-len(text) // _chars(width))
    every = max(1, -(-len(text) // max(1, lines)))  # lines of even length
    chunks = [text[i:i + every] for i in range(0, len(text), every)] or [""]
    return Paragraph(" <br/>".join(_t(c) for c in chunks), _MONO)


def _when(at: float | None, day: str = "") -> str:
    """HH:MM:SS UTC, with the date when it is not the ceremony's day."""
    if at is None:
        return ""
    d = time.strftime("%Y-%m-%d", time.gmtime(at))
    clock = time.strftime("%H:%M:%S", time.gmtime(at))
    return clock if d == day else f"{d} {clock}"


def _took(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return "<1 s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _table(rows: Sequence[Sequence[Any]], widths: Sequence[float], header: bool = True,
           extra: Sequence[tuple[Any, ...]] = (), joined: Sequence[int] = ()) -> Table:
    """A table ruled in black: a heavier rule under the header, thin rules between rows but
    under the rows in `joined` (which belong with the row after them)."""
    cells = [[c if isinstance(c, Flowable | list) else
              _p(c, _CELL_B if header and i == 0 else _CELL)
              for c in row] for i, row in enumerate(rows)]
    t = Table(cells, colWidths=list(widths), repeatRows=1 if header else 0)
    style: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTNAME", (0, 0), (-1, -1), FONTS.sans),  # a plain cell's (Helvetica otherwise)
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ("LINEABOVE", (0, 0), (-1, 0), 0.8, _BLACK),
    ]
    style += [("LINEBELOW", (0, r), (-1, r), 0.25, _BLACK)
              for r in range(len(rows)) if r not in set(joined)]
    if header:
        style.append(("LINEBELOW", (0, 0), (-1, 0), 0.8, _BLACK))
    t.setStyle(TableStyle(style + list(extra)))
    return t


def _pairs(rows: Sequence[tuple[str, Any]], key_width: float = 120) -> Table:
    """A two-column table of labels and values, without a header."""
    return _table([[_p(k, _CELL_B), v if isinstance(v, Flowable | list) else _p(v)]
                   for k, v in rows],
                  [key_width, WIDTH - key_width], header=False)


# --- the story -----------------------------------------------------------------------------------
class _Story:
    def __init__(self, facts: Facts) -> None:
        self.f = facts
        self.day = facts.opened[:10]
        self.out: list[Flowable] = []

    def build(self) -> list[Flowable]:
        self._cover()
        self.out.append(PageBreak())
        self._signins()
        self._checks()
        self._keys()
        self._approvals()
        self._custody()
        self._exceptions()
        self._timeline()
        self._steps()
        self._checkpoints()
        self._signatures()
        return self.out

    def h2(self, text: str) -> None:
        self.out += [CondPageBreak(90), Paragraph(_t(text), _H2)]

    def h3(self, text: str) -> None:
        self.out += [CondPageBreak(60), Paragraph(_t(text), _H3)]

    def para(self, text: str, style: ParagraphStyle = _BASE) -> None:
        self.out.append(Paragraph(_t(text), style))

    def gap(self, h: float = 6) -> None:
        self.out.append(Spacer(1, h))

    # the cover: what the ceremony was, how it ended, and the checkpoint that seals the record
    def _cover(self) -> None:
        f = self.f
        self.out.append(Paragraph("Key ceremony report", _H1))
        self.out.append(Paragraph(_t(f"{f.title} ({f.ceremony}), script version {f.version}"),
                                  _BIG))
        self.gap(6)
        if f.rehearsal:
            box = _table([[_p("REHEARSAL. This journal records a rehearsal: no production key "
                              "was generated, backed up or sealed by it.", _CELL_B)]],
                         [WIDTH], header=False,
                         extra=[("BOX", (0, 0), (-1, -1), 1.2, _BLACK)])
            self.out += [box, Spacer(1, 8)]
        status = {"completed": "completed: every step done",
                  "aborted": f"ABORTED at step {f.at_step}",
                  "exception": f"STOPPED at step {f.at_step}: an exception awaits a decision",
                  "running": f"NOT FINISHED: the journal ends at step {f.at_step}"}.get(
            f.status, f.status)
        rows: list[tuple[str, Any]] = [
            ("Ceremony", f"{f.ceremony}: {f.title}"
             + (f", continuing {f.continues}" if f.continues else "")),
            ("Script", f"{f.script_name}, version {f.version}"),
            ("Script SHA-256", _hex(f.script_sha256, WIDTH - 120)),
            ("Date", f"{self.day} (all times UTC)"),
            ("Outcome", status),
            ("Began / last entry", f"{_when(f.started, self.day)} / {_when(f.ended, self.day)}"),
            ("Time taken", _took(_span(f.started, f.ended))
             + (f" (the script estimates {_took(f.planned)})" if f.planned else "")),
            ("Participants", f"{len(f.participants)} people in {len(f.signins)} seats"),
        ]
        v = f.verification
        if v is not None:
            trust = ("with the given key" if v.trust == "given" else
                     "with the key its own first entry announces (no key was given: this shows "
                     "the journal is intact, not who wrote it)")
            rows += [("Journal", v.journal),
                     ("Verified", f"{v.entries} entries, {v.checkpoints} signed checkpoints, "
                      f"{trust}: {', '.join(v.keys)}")]
        if f.origin:
            rows.append(("Journal origin", f.origin))
        self.out.append(_pairs(rows))
        k = f.keys
        self.h3("HSM keys")
        self.out.append(_table(
            [["Before the purge", "After the purge", "After generation", "Purged", "Generated"],
             [_n(k.before_purge), _n(k.after_purge), _n(k.after_generation), str(len(k.purged)),
              str(len(k.generated))]], [WIDTH / 5] * 5))
        self._final()

    def _final(self) -> None:
        f = self.f
        cp = f.final
        heading = Paragraph("The journal's final checkpoint", _H3)
        if cp is None:
            self.out += [heading, _p("The journal holds no checkpoint: nothing in it is signed.",
                                     _BASE)]
            return
        head = [Paragraph(_t(f"Tree size {cp.size}: it signs entries 0 to {cp.size - 1} "
                             f"(its own entry is {cp.seq}), at {cp.at.replace('T', ' ')}."),
                          _BASE),
                Spacer(1, 4),
                Paragraph("Root (SHA-256, colon hex):", _CELL_B),
                Paragraph(escape(cp.root_colon), ParagraphStyle(
                    "root", parent=_MONO, fontSize=8, leading=10))]
        text: list[Flowable] = [
            Paragraph("Root as PGP words, for reading aloud:", _CELL_B),
            Paragraph(_t(cp.root_words), _CELL),
            Spacer(1, 4),
            Paragraph(_t(f"Signed by {', '.join(cp.signers) or 'no key'}. "
                         "The QR code holds the whole signed note."), _SMALL)]
        for s in f.signoffs:
            match = ("the same checkpoint" if s.root == cp.root and s.size == cp.size else
                     f"the checkpoint of tree size {s.size}, root "
                     f"{colon_hex(s.root) if s.root else '?'}")
            text.append(Paragraph(_t(f"{s.seat} ({s.name}) signed off {match} at "
                                     f"{_when(s.at, self.day)}."), _SMALL))
        qr_size = 110.0
        qr = QrCodeWidget(cp.note, barLevel="M")  # the note's UTF-8, as signed
        x0, y0, x1, y1 = qr.getBounds()
        drawing = Drawing(qr_size, qr_size,
                          transform=[qr_size / (x1 - x0), 0, 0, qr_size / (y1 - y0), 0, 0],
                          initialFontName=FONTS.sans)  # it draws no text; else Helvetica
        drawing.add(qr)
        box = _table([[head, ""], [text, drawing]], [WIDTH - qr_size - 10, qr_size + 10],
                     header=False,
                     extra=[("SPAN", (0, 0), (-1, 0)),
                            ("LINEBELOW", (0, 0), (-1, -1), 0, colors.white),
                            ("BOX", (0, 0), (-1, -1), 0.8, _BLACK)])
        self.out.append(KeepTogether([heading, box]))
        bags = [b for b in f.bags if b.serial]
        if bags:
            self.h3("Sealed bags")
            self.out.append(_table(
                [["Bag", "Serial", "Held by"]]
                + [[b.title, _mono(b.serial), f"{b.custodian_name} ("
                    f"{', '.join(x for x in (b.custodian, b.organisation) if x)})"]
                   for b in bags], [190, 70, WIDTH - 260]))

    def _signins(self) -> None:
        f = self.f
        self.h2("Sign-in sheet")
        self.para("Each seat as it signed in, with how the person's identity was checked and "
                  "the fingerprint of the seat's enrolled signing key (SHA-256 of the key in "
                  "SSH form, as ssh-keygen -l prints it).", _SMALL)
        self.gap(3)
        self.out.append(_table(
            [["Seat", "Role", "Name", "Organisation", "Signed in", "Identity", "Key fingerprint"]]
            + [[s.seat, s.role, s.name, s.organisation, _when(s.at, self.day), s.identity,
                _breakable(s.fingerprint, WIDTH - 352)] for s in f.signins],
            [32, 28, 70, 70, 42, 110, WIDTH - 352]))
        if f.previous:
            self.h3("The previous ceremony's record this one continues from")
            self.out.append(_pairs([(k, _value(v, WIDTH - 120)) for k, v in f.previous.items()]))

    def _checks(self) -> None:
        checks = [s for s in self.f.steps if s.action == "verify" and s.observed]
        if not checks:
            return
        self.h2("Checks: expected beside observed")
        self.para("Every verify step: the value the record says, and what the coordinator "
                  "observed itself (never typed). A mismatch stops the ceremony until the "
                  "administrator decides.", _SMALL)
        self.gap(3)
        rows: list[list[Any]] = [["Step", "Check", "Expected", "Observed", "Outcome"]]
        for s in checks:
            rows.append([str(s.n), s.text, _value(s.expected, 140),
                         _values(s.observed, 140), s.outcome])
        self.out.append(_table(rows, [26, 130, 140, 140, WIDTH - 436]))

    def _keys(self) -> None:
        k = self.f.keys
        self.h2("HSM keys")
        rows: list[tuple[str, Any]] = [
            ("Before the purge", _n(k.before_purge)),
            ("After the purge", _n(k.after_purge)),
            ("After generation", _n(k.after_generation)),
        ]
        rows += [(f"Listed at step {n}", str(c)) for n, c in k.listed]
        if k.fingerprint:
            rows.append(("HSM fingerprint", _mono(k.fingerprint)))
        self.out.append(_pairs(rows))
        self.h3(f"Keys purged ({len(k.purged)})")
        self.out.append(_ids(k.purged))
        self.h3(f"Keys generated ({len(k.generated)})")
        made = set(k.generated)
        for b in k.batches:
            ids = [x for x in b.get("locators", []) if x in made]
            self.para(f"Policy {b.get('policy')}, {b.get('role')} {b.get('algorithm')}: "
                      f"{len(ids)} keys", _SMALL)
            self.out.append(_ids(ids))
        planned = {x for b in k.batches for x in b.get("locators", [])}
        unplanned = [x for x in k.generated if x not in planned]
        if unplanned:
            self.para(f"Not in the plan ({len(unplanned)}):", _SMALL)
            self.out.append(_ids(unplanned))
        self._published(k.public_keys)

    def _published(self, keys: Sequence[PublicKey]) -> None:
        """The public keys the journal records for the new keys, one line each: locator, role
        and zone where the key manager knew them, and the SHA-256 of the SubjectPublicKeyInfo
        DER (what `sha256sum` gives over `openssl pkey -pubin -outform DER` of its PEM)."""
        self.h3(f"Public keys published ({len(keys)})")
        if not keys:
            self.para("The generation results carry no public key.", _SMALL)
            return
        rrs = sum(1 for x in keys if x.publishes_rrs)
        self.para("Written to the Key Gen Log drive beside the journal as public-keys.pem"
                  + (f"; {rrs} with a role and zone also as DNSKEY (dnskey.txt) and, for "
                     "KSKs, DS SHA-256 (ds.txt)" if rrs else "")
                  + "; `keyrite keys JOURNAL` prints them again. Each key's locator, then the "
                  "SHA-256 of its public key (SubjectPublicKeyInfo DER):", _SMALL)
        lines = [f"{x.locator}  {x.sha256}"
                 + (f"  {x.role} {x.zone}" if x.publishes_rrs else "") for x in keys]
        self.out.append(Paragraph(" <br/>".join(escape(x) for x in lines), _MONO))

    def _approvals(self) -> None:
        f = self.f
        self.h2("Approvals")
        if not f.approvals:
            self.para("No approval was given.")
            return
        self.para("Each officer's signed approval of one exact operation: the operation's "
                  "SHA-256, the officer's key fingerprint, and whether the operation used it.",
                  _SMALL)
        self.gap(3)
        w = [70, 42, 66, 40, 110, 119, WIDTH - 447]
        self.out.append(_table(
            [["Quorum", "For step", "Officer", "Time", "Operation SHA-256", "Key fingerprint",
              "Outcome"]]
            + [[a.quorum, Paragraph(f"{a.step} <br/>{_t(a.op)}", _CELL),
                f"{a.name} ({a.seat})", _when(a.at, self.day), _hex(a.operation, w[4]),
                _breakable(a.fingerprint, w[5]), a.outcome]
               for a in f.approvals], w))

    def _custody(self) -> None:
        f = self.f
        self.h2("Backups and custody")
        if f.backups:
            self.h3("Backups written by the signer")
            self.out.append(_table(
                [["Step", "File", "Bytes", "SHA-256 as written", "Checked at the verify step"]]
                + [[str(b.step), b.file, _n(b.size), _hex(b.sha256, 150),
                    _hex(b.observed, WIDTH - 343) if b.observed else "not checked"]
                   for b in f.backups],
                [28, 120, 45, 150, WIDTH - 343]))
        if f.transcripts:
            self.h3("Transcripts")
            self.out.append(_table(
                [["Step", "File", "Bytes", "SHA-256"]]
                + [[str(n), t.name, _n(t.size), _hex(t.sha256, WIDTH - 228)]
                   for n, t in f.transcripts],
                [28, 150, 50, WIDTH - 228]))
        self.h3("Flash drives")
        for d in f.drives:
            rows: list[tuple[str, Any]] = [
                ("Drive", f"{d.title} ({d.label})"
                 + (f", {' '.join(x for x in (d.vendor, d.model) if x)}"
                    if d.vendor or d.model else "")),
                ("Serial recorded", _mono(d.recorded or "not recorded")),
                ("Serial read", _mono(d.read or "never read")),
            ]
            for n, x in d.files:
                rows.append((f"Copied at step {n}", [
                    _p(f"{x.name}, {_n(x.size)} bytes, SHA-256:"), _hex(x.sha256, WIDTH - 110)]))
            rows += [(f"Read back at step {n}", c) for n, c in d.checks]
            rows.append(("Sealed in bag", d.bag or "none"))
            self.out += [KeepTogether(_pairs(rows, 110)), Spacer(1, 5)]
        self.h3("Tamper-evident bags and who holds them")
        for b in f.bags:
            head = f"{b.title} ({b.label})"
            if b.serial is None:
                self.out.append(_pairs([(head, "not sealed")]))
                continue
            rows2: list[tuple[str, Any]] = [
                ("Bag", head), ("Serial", _mono(b.serial)),
                ("Contents", "; ".join(b.contents)),
                ("Held by", f"{b.custodian_name} ("
                            f"{', '.join(x for x in (b.custodian, b.organisation) if x)}) since "
                            f"{b.since or _when(b.at, self.day)}"),
            ]
            for h in b.chain:
                what = ("sealed, taken by" if h.kind == "seal" else
                        f"handed over by {h.giver_name} ({h.giver}) to")
                rows2.append((f"Step {h.step}, {_when(h.at, self.day)}",
                              f"{what} {h.taker_name} ({h.taker}), who signed for it"
                              + ("" if h.signature else " (NO signature)")))
            self.out += [KeepTogether(_pairs(rows2, 110)), Spacer(1, 5)]

    def _exceptions(self) -> None:
        f = self.f
        self.h2("Exceptions and the administrator's decisions")
        if not f.exceptions:
            self.para("None: no check failed and no operation failed.")
        else:
            self.out.append(_table(
                [["Step", "Raised", "What happened", "Observed / expected", "Decision",
                  "Reason written"]]
                + [[str(x.step), _when(x.at, self.day), f"{x.kind}: {x.reason}",
                    [_value(x.observed, 120), _p("expected:"), _value(x.expected, 120)]
                    if x.observed or x.expected else "-",
                    f"{x.decision or 'OPEN'}" + (f" by {x.by} at {_when(x.decided, self.day)}"
                                                 if x.by else ""),
                    x.why or ""] for x in f.exceptions],
                [26, 40, 120, 120, 80, WIDTH - 386]))
        self.h3("The room: pauses, passwords, lapses, consoles, drives, refusals")
        if not f.room:
            self.para("Nothing: no pause, password record, lapsed approval, console change, "
                      f"drive notice or refusal was journaled ({f.refusals} refusals).", _SMALL)
            return
        self.out.append(_table(
            [["Entry", "Time", "Kind", "What"]]
            + [[str(r.seq), _when(r.at, self.day), r.kind, r.text] for r in f.room],
            [34, 50, 55, WIDTH - 139]))

    def _timeline(self) -> None:
        f = self.f
        self.h2("Timeline: planned beside actual")
        self.para("Each section's estimate from the script beside the time it took. The planned "
                  "start adds the estimates of the sections before it to the ceremony's first "
                  "entry.", _SMALL)
        self.gap(3)
        rows: list[list[Any]] = [["Section", "Steps", "Planned start", "Planned", "Started",
                                  "Ended", "Took"]]
        for s in f.sections:
            rows.append([s.title, f"{s.steps[0]}-{s.steps[1]}", _when(s.planned_start, self.day),
                         _took(s.planned), _when(s.started, self.day), _when(s.ended, self.day),
                         _took(s.actual)])
        total = _span(f.started, f.ended)
        rows.append([_p("Whole ceremony", _CELL_B), "", _when(f.started, self.day),
                     _took(f.planned), _when(f.started, self.day), _when(f.ended, self.day),
                     _took(total)])
        self.out.append(_table(rows, [150, 45, 65, 55, 65, 65, WIDTH - 445]))

    def _steps(self) -> None:
        f = self.f
        self.out.append(PageBreak())
        self.h2("Every step")
        self.para("In script order: who completed it and when, how long it took from the moment "
                  "it became the current step, its outcome, and what it recorded; a verify "
                  "step shows the expected value beside what was observed.", _SMALL)
        self.gap(3)
        widths = [26, 30, 212, 89, 40, 34, WIDTH - 431]
        rows: list[list[Any]] = [["Step", "Actor", "Instruction", "Done by", "Time", "Took",
                                  "Outcome"]]
        extra: list[tuple[Any, ...]] = []
        joined: list[int] = []
        section = None
        for s in f.steps:
            if s.section != section:
                section = s.section
                rows.append([_p(section, _CELL_B), "", "", "", "", "", ""])
                r = len(rows) - 1
                extra += [("SPAN", (0, r), (-1, r)), ("LINEABOVE", (0, r), (-1, r), 0.8, _BLACK)]
            rows.append([str(s.n), s.actor, _p(f"{s.text} [{s.action}]"), s.by,
                         _when(s.completed, self.day), _took(s.duration), s.outcome])
            detail = _step_values(s)
            if detail:
                joined.append(len(rows) - 1)
                rows.append(["", "", detail, "", "", "", ""])
                r = len(rows) - 1
                extra += [("SPAN", (2, r), (-1, r)), ("TOPPADDING", (0, r), (-1, r), 0)]
        self.out.append(_table(rows, widths, extra=extra, joined=joined))

    def _checkpoints(self) -> None:
        f = self.f
        self.h2("Signed checkpoints")
        self.para("Every checkpoint in the journal: the entries it signs (its tree size) and "
                  "its root. keyrite verify checks each against the entries before it.", _SMALL)
        self.gap(3)
        self.out.append(_table(
            [["Entry", "Time", "Size", "Root (SHA-256, colon hex)"]]
            + [[str(c.seq), c.at[11:19], str(c.size),
                Paragraph(escape(c.root_colon), ParagraphStyle("r", parent=_MONO, fontSize=6.3,
                                                               leading=8))]
               for c in f.checkpoints],
            [34, 44, 34, WIDTH - 112]))

    def _signatures(self) -> None:
        f = self.f
        self.out.append(PageBreak())
        self.h2("Signatures")
        cp = f.final
        self.para("By signing, each participant confirms they were present and that this report "
                  "agrees with what they saw"
                  + (f"; the journal it was made from ends with the checkpoint of tree size "
                     f"{cp.size}, root {cp.root_colon[:23]}... (in full on the cover)."
                     if cp else "."), _SMALL)
        self.gap(8)
        rows: list[list[Any]] = [["Name", "Seats", "Organisation", "Signature", "Date"]]
        for p in f.participants:
            rows.append([p.name, ", ".join(p.seats), p.organisation, "", ""])
        t = _table(rows, [100, 60, 95, WIDTH - 315, 60],
                   extra=[("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white]),
                          ("TOPPADDING", (0, 1), (-1, -1), 14),
                          ("BOTTOMPADDING", (0, 1), (-1, -1), 14)])
        self.out.append(t)


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def _n(v: int | None) -> str:
    return "-" if v is None else str(v)


def _ids(ids: Sequence[str]) -> Flowable:
    """Key IDs four to a line, monospaced."""
    if not ids:
        return _p("none")
    lines = ["  ".join(ids[i:i + 4]) for i in range(0, len(ids), 4)]
    return Paragraph(" <br/>".join(escape(x) for x in lines), _MONO)


def _is_hex_digest(v: str) -> bool:
    h = v.replace(":", "")
    return len(h) == 64 and all(c in "0123456789abcdefABCDEF" for c in h)


def _value(v: str | None, width: float) -> Flowable:
    if not v:
        return _p("-")
    return _hex(v, width) if _is_hex_digest(v) else _breakable(v, width)


def _values(vs: Sequence[str], width: float) -> Flowable:
    """Observations, each in turn (a retried check was observed more than once)."""
    if not vs:
        return _p("-")
    if len(vs) == 1:
        return _value(vs[0], width)
    return [_value(v, width) for v in vs]


def _step_values(s: StepFact) -> Paragraph | None:
    """The line under a step: what it recorded, a verify's expected and observed, notes."""
    bits = []
    if s.action == "verify":
        bits.append(f"<b>expected</b> <font face='{FONTS.mono}'>{_t(s.expected or '-')}</font>")
        for i, o in enumerate(s.observed):
            label = "observed" if i == 0 else "observed again"
            bits.append(f"<b>{label}</b> <font face='{FONTS.mono}'>{_t(o)}</font>")
    elif s.value is not None:
        bits.append(f"<b>value</b> <font face='{FONTS.mono}'>{_t(s.value)}</font>")
    bits += [_t(n) for n in s.notes if n.split(": ", 1)[-1] != s.value]
    if not bits:
        return None
    return Paragraph(" <br/>".join(bits), _SMALL)
