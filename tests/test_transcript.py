"""The printable transcript (coordinator/transcript.py): the journal as paged text, and the same
pages as a PDF. Run on the 2026-12-07 rehearsal journal of the bundled ceremony, and on records
made up for what that journal does not hold (the room's records, refusals, hostile text, names
and a remark in Polish, Greek and Cyrillic, which the PDF draws as written)."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reportlab.pdfbase.pdfmetrics import stringWidth

from ceremony.digests import colon_hex
from ceremony.script.load import bundled_script_path, load_script, load_script_text
from coordinator.report.fonts import chosen
from coordinator.transcript import (
    _A4,
    _FONT,
    PAGE_LINES,
    WIDTH,
    describe_drive,
    pages,
    render,
    transcript_pdf,
    transcript_pdf_apart,
)
from keyrite.exits import Failure
from tests.test_report import NAMES, needs_dejavu, renamed

DATA = Path(__file__).resolve().parent / "data"
JOURNAL = DATA / "rehearsal-journal-2026-12-07.jsonl"
RECORDS = [(e["seq"], e["record"]) for e in map(json.loads, JOURNAL.read_text().splitlines())]
SCRIPT = load_script_text(RECORDS[0][1]["script"]["text"])


def _body(text: str) -> str:
    """The transcript without its page headers, whitespace collapsed: what a reader reads."""
    lines = [line for page in pages(text) for line in page.split("\n")[3:]]
    return " ".join(" ".join(lines).split())


@pytest.fixture(scope="module")
def text() -> str:
    return render(SCRIPT, RECORDS)


def test_every_step_is_printed_whole_the_longest_included(text: str) -> None:
    seed = load_script(bundled_script_path())
    longest = max(seed.steps, key=lambda s: len(s.text))
    assert len(longest.text) > WIDTH  # it must wrap to be whole (the old transcript cut at 70)
    assert " ".join(longest.text.split()) in _body(render(seed, RECORDS[:1]))
    body = _body(text)
    for step in SCRIPT.steps:
        assert f"STEP {step.n} {step.actor} {step.action}" in body
        assert " ".join(step.text.split()) in body, step.n
    for section in SCRIPT.sections:
        assert f"SECTION: {section.title}" in body


def test_every_line_fits_and_every_page_has_its_header(text: str) -> None:
    got = pages(text)
    assert len(got) == text.count("\f") + 1 > 5
    for n, page in enumerate(got, start=1):
        lines = page.split("\n")
        assert len(lines) <= PAGE_LINES
        assert lines[0].startswith("second-key-generation  transcript  2026-12-07  REHEARSAL")
        assert lines[0].endswith(f"page {n} of {len(got)}")
        assert lines[1] == "=" * WIDTH
        assert all(len(line) <= WIDTH for line in lines)
    assert text.endswith("---- end of transcript ----\n")


def test_every_entry_is_printed_in_journal_order_with_its_time(text: str) -> None:
    seqs = [int(m.group(1)) for m in re.finditer(r"^ *(\d+)  \d\d:\d\d:\d\dZ  ", text, re.M)]
    assert seqs == [seq for seq, _ in RECORDS]


def test_checkpoints_carry_their_tree_size_and_whole_root(text: str) -> None:
    lines = text.split("\n")
    checkpoints = [r for _, r in RECORDS if r["type"] == "checkpoint"]
    assert len(checkpoints) == 15
    for cp in checkpoints:
        _, size, root64 = cp["note"].split("\n")[:3]
        root = colon_hex(base64.b64decode(root64).hex())
        assert f"CHECKPOINT of entries 0 to {int(size) - 1}: tree size {size}, root" in text
        assert any(line.strip() == root for line in lines), root  # on one line, whole
    # the KGA's sign-off shows which checkpoint was signed
    assert "the signed CHECKPOINT of entries 0 to 159: tree size 160" in text


def test_values_and_operations_are_printed(text: str) -> None:
    body = _body(text)
    for serial in ("1E65936B0F88272097609F90", "0FFC0507297A1ECE56E72F42", "3654806",
                   "3026184"):
        assert serial in body
    # the purge's key IDs, the generation's batches, every approval's operation digest
    assert ("delete 2 keys: 21ddad6bc665f820ba112396cb2c691e 6f3aa418c47d2e145f02fa972794b554"
            in body)
    assert "policy default ZSK RSA/2048: 4 keys:" in body
    assert body.count("approves operation df73342170eef34a... for step 43") == 3
    assert "DSO3 reads bag serial 3654806 and signs for bag wellington (sealed)" in body
    assert "listing: 15 lines, kept whole in the journal" in body
    assert "Officer C (Registry) signs in as KSO1, DSO1 (ID checked)" in body


def _room_records() -> list[tuple[int, dict[str, Any]]]:
    at = 1796657636.0
    return [
        (0, RECORDS[0][1]),
        (1, {"type": "coordinator", "at": at, "step": 1, "what": "started"}),
        (2, {"type": "pause", "at": at + 1, "seat": "KGA", "step": 1}),
        (3, {"type": "resume", "at": at + 2, "seat": "KGA", "step": 1}),
        (4, {"type": "secret", "at": at + 3, "seat": "SA", "step": 43, "name": "device-backup",
             "purpose": "backup"}),
        (5, {"type": "expired", "at": at + 4, "seat": "KSO1", "quorum": "keystore-backup",
             "step": 43, "key": "ed25519:AAAA", "nonce": "00" * 16}),
        (6, {"type": "presence", "at": at + 5, "person": "p-kso2", "seats": ["KSO2"],
             "connected": False}),
        (7, {"type": "drive", "at": at + 6, "step": 19, "event": "refused", "serial": "X1",
             "vendor": "Kingston", "model": "DT", "device": "/dev/sdb", "label": "keygen-log",
             "reason": "drive keygen-log expects serial Y2; wrong drive"}),
        (8, {"type": "refused", "at": at + 7, "step": 19, "console": "WI1",
             "command": "acknowledge", "reason": "step 19 is for the KGA"}),
        (9, {"type": "event", "at": at + 8, "step": 19, "event": {
            "event": "Remark", "at": at + 8, "seat": "WI1", "kind": "deviation",
            "text": "bag 3's seal damaged"}}),
    ]


def test_the_rooms_records_are_printed_and_no_password_ever_is() -> None:
    records = _room_records()
    # a record that somehow held a password would still not print it
    records.append((10, {"type": "secret", "at": 0, "seat": "SA", "password": "hunter2"}))
    body = _body(render(SCRIPT, records))
    assert "coordinator started" in body
    assert "KGA PAUSED the ceremony" in body and "KGA RESUMED the ceremony" in body
    assert ("SA typed the device-backup password for the backup at step 43 (it matched its "
            "verifier; the password is never journaled)") in body
    assert "KSO1's approval (keystore-backup, for step 43) LAPSED" in body
    assert "console of KSO2 (p-kso2) GONE" in body
    assert describe_drive(records[7][1]) in body
    assert "REFUSED WI1 acknowledge: step 19 is for the KGA" in body
    assert "WI1 raises a DEVIATION: bag 3's seal damaged" in body
    assert "hunter2" not in body
    # steps 1-19 were reached; the rest are printed after, as not reached
    assert "STEPS THIS JOURNAL DOES NOT REACH (113)" in body
    assert body.index("STEP 19 ") < body.index("NOT REACH") < body.index("STEP 20 ")


def test_hostile_text_cannot_move_the_page_or_break_the_render() -> None:
    at = 1796657636.0
    records = [RECORDS[0], (1, {"type": "event", "at": at, "step": 19, "event": {
        "event": "Record", "at": at, "seat": "KGA", "value": "A\fB\x1b[2JC" + "Z" * 300}}),
        (2, {"type": "event", "at": at, "step": 19, "event": {"event": "Record"}}),  # malformed
        (3, {"type": "no-such-type", "at": "yesterday"}),
        (4, {"type": "checkpoint", "at": "x", "note": "not a note"})]
    text = render(SCRIPT, records)
    assert text.count("\f") == len(pages(text)) - 1
    assert "A\\x0cB\\x1b[2JC" in text
    assert "\x1b" not in text
    assert all(len(line) <= WIDTH for line in text.replace("\f", "\n").split("\n"))
    assert "Z" * 80 in text  # a word wider than the page is split, never cut
    assert sum(line.count("Z") for line in text.split("\n")) >= 300
    assert "entry of type 'no-such-type'" in text
    assert "CHECKPOINT (unreadable note, printed as journaled)" in text


def test_the_transcript_module_loads_no_pdf_library() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, coordinator.transcript; "
                          "print('reportlab' in sys.modules)"], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False"


needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None,
                                   reason="poppler-utils (pdftotext) is not installed: "
                                   "dev/setup.sh installs it")


@needs_poppler
def test_the_pdf_has_one_page_per_text_page_and_the_same_text(text: str,
                                                              tmp_path: Path) -> None:
    pdf = transcript_pdf(text)
    assert pdf == transcript_pdf(text)  # deterministic: its digest can be recomputed
    path = tmp_path / "t.pdf"
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    n = len(pages(text))
    assert re.search(rf"^Pages:\s+{n}$", info.stdout, re.M)
    assert re.search(r"^Page size:\s+595\.\d+ x 841\.\d+ pts \(A4\)", info.stdout, re.M)
    got = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                         text=True, check=True).stdout
    assert [p.split("\n")[0].split()[-4:] for p in got.split("\f") if p.strip()] == [
        ["page", str(i), "of", str(n)] for i in range(1, n + 1)]
    flat = " ".join(got.split())
    assert "74:5b:95:b9:12:e8:f5:0e:45:b3:99:1d:68:9e:0b:10:94:03:88:d2:7b:d8:35:fe:37:cb:f7:bc" \
           ":d4:73:d7:c0" in flat
    assert " ".join(max(SCRIPT.steps, key=lambda s: len(s.text)).text.split()) in flat


@needs_poppler
def test_every_line_is_drawn_inside_letter_and_a4(text: str, tmp_path: Path) -> None:
    path = tmp_path / "t.pdf"
    path.write_bytes(transcript_pdf(text))
    box = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True,
                         text=True, check=True).stdout
    words = [tuple(float(x) for x in m.groups()) for m in re.finditer(
        r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)"', box)]
    assert words
    # from the top-left corner: inside A4's width less margins and Letter's height (792 pt),
    # top-aligned, with room to spare for a printer's margin
    assert min(w[0] for w in words) >= 30 and max(w[2] for w in words) <= 595 - 30
    assert min(w[1] for w in words) >= 30 and max(w[3] for w in words) <= 792 - 30


@needs_poppler
def test_a_page_wider_than_the_paper_is_drawn_smaller_not_cut(tmp_path: Path) -> None:
    long = "W" * 150 + " end"
    path = tmp_path / "t.pdf"
    path.write_bytes(transcript_pdf(f"header\n{long}\n\fsecond page\n"))
    got = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                         check=True).stdout
    assert long in got and "second page" in got
    assert got.count("\f") == 2


def _notes_in(text: str) -> list[str]:
    """The signed notes the transcript prints, typed back as a reader would: lines under the
    label, a continued line joined to the one above it with one space."""
    lines = [line for page in pages(text) for line in page.split("\n")[3:]]
    notes = []
    for i, line in enumerate(lines):
        if not line.strip().startswith("signed note (a line continued below"):
            continue
        note: list[str] = []
        for nxt in lines[i + 1:]:
            if nxt.startswith("      ") and note:
                note[-1] += " " + nxt.strip()
            elif nxt.startswith("    ") and not nxt.startswith("     "):
                note.append(nxt[4:])
            elif not nxt and (not note or note[-1]):
                note.append("")
            else:
                break
        notes.append("\n".join(note).rstrip("\n") + "\n")
    return notes


def test_each_checkpoints_signed_note_is_printed_to_be_checked_against_the_journal(
        text: str, tmp_path: Path) -> None:
    """A checkpoint kept apart from the journal is the printed one: typed back into a file, it
    is what `keyrite verify --checkpoint` checks a copy of the journal against."""
    notes = _notes_in(text)
    assert notes == [r["note"] for _, r in RECORDS if r["type"] == "checkpoint"]
    key = (DATA / "rehearsal-journal-2026-12-07.key").read_text().strip()
    kept = tmp_path / "kept.checkpoint"
    kept.write_text(notes[-1])
    out = subprocess.run([sys.executable, "-m", "keyrite.cli", "verify", str(JOURNAL), "--key",
                          key, "--checkpoint", str(kept)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "holds" in out.stdout


# --- names beyond Latin-1 in the PDF (the fonts: coordinator/report/fonts.py) --------------------
#: A remark in Polish, Greek and Cyrillic.
REMARK = "Łukasz Żółć: plomba nienaruszona; Ιωάννα: συμφωνώ; Дмитрий: всё верно"


def unicode_text() -> str:
    """The rehearsal's transcript with three officers renamed (NAMES) and REMARK at the end."""
    at = RECORDS[-1][1]["at"]
    remark = {"type": "event", "at": at, "step": 132, "event": {
        "event": "Remark", "at": at, "seat": "KSO2", "kind": "remark", "text": REMARK}}
    return render(SCRIPT, [*renamed(RECORDS), (len(RECORDS), remark)])


def _pdf_words(path: Path) -> list[tuple[str, float, float]]:
    """Each word pdftotext finds: its text, left and right edge (pt from the left)."""
    box = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True,
                         text=True, check=True).stdout
    return [(html.unescape(m.group(3)), float(m.group(1)), float(m.group(2))) for m in
            re.finditer(r'xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)<',
                        box)]


@needs_poppler
@needs_dejavu
def test_names_beyond_latin1_are_drawn_as_written(tmp_path: Path) -> None:
    text = unicode_text()
    pdf = transcript_pdf(text)
    assert pdf == transcript_pdf(text)
    path = tmp_path / "t.pdf"
    path.write_bytes(pdf)
    got = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                         text=True, check=True).stdout
    flat = " ".join(got.split())
    for name in NAMES.values():
        assert f"{name} (" in flat, name  # in the roster and at sign-in
    assert f"{NAMES['Officer C']} (Registry) signs in as KSO1, DSO1" in flat
    assert f"KSO2 remarks: {REMARK}" in flat
    # every line of the first page drawn (blank lines at its foot are not text to pdftotext)
    assert len(got.split("\f")[0].rstrip("\n").split("\n")) == \
        len(pages(text)[0].rstrip("\n").split("\n"))
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True,
                           check=True).stdout.splitlines()[2:]
    assert [line.split()[0].split("+")[1] for line in fonts] == ["DejaVuSansMono"]
    assert fonts[0].split()[-5:-2] == ["yes", "yes", "yes"]  # embedded, subset, ToUnicode


def test_every_character_drawn_is_one_column_and_a_full_line_fits_the_paper() -> None:
    fonts = chosen()
    for ch in "0MW= .:" + "".join(NAMES.values()) + REMARK:
        if fonts.drawable(ch) == ch:
            assert stringWidth(ch, fonts.mono, 1) == fonts.advance, ch
    # WIDTH columns at full size inside A4's width less 36 pt a side (Letter is wider)
    assert fonts.advance * _FONT * WIDTH <= _A4[0] - 2 * 36


@needs_poppler
def test_a_full_line_in_any_script_is_drawn_at_full_size_inside_the_page(tmp_path: Path) -> None:
    page = "\n".join(["header", "Д" * WIDTH, "Ω" * WIDTH, "ł" * WIDTH, "x" * WIDTH])
    path = tmp_path / "t.pdf"
    path.write_bytes(transcript_pdf(page))
    fonts = chosen()
    lines = [w for w in _pdf_words(path) if len(w[0]) == WIDTH]
    assert [w[0] for w in lines] == [fonts.drawable(x * WIDTH) for x in "ДΩłx"]
    for _, left, right in lines:
        assert right - left == pytest.approx(fonts.advance * _FONT * WIDTH, abs=1)
        assert left >= 30 and right <= _A4[0] - 30


def test_without_the_font_files_the_pdf_is_courier_with_the_rest_replaced(
        tmp_path: Path) -> None:
    """The fallback, in a process of its own (fonts are chosen once): Courier, Latin-1, a letter
    without its accent or '?', one for one, so the pages are the same lines."""
    path = tmp_path / "t.pdf"
    subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "import coordinator.report.fonts as fonts; fonts.FONT_DIR = Path(sys.argv[1]); "
         "from tests.test_transcript import unicode_text; "
         "from coordinator.transcript import transcript_pdf; "
         "Path(sys.argv[2]).write_bytes(transcript_pdf(unicode_text()))",
         str(tmp_path / "no-fonts"), str(path)], check=True,
        cwd=Path(__file__).resolve().parent.parent)
    assert path.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        return
    got = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                         text=True, check=True).stdout
    flat = " ".join(got.split())
    assert "?ukasz Zó?c (Registry) signs in as KSO1, DSO1" in flat
    assert "KSO2 remarks: ?ukasz Zó?c: plomba nienaruszona; ??????: ???????; ???????: ???" in flat
    assert NAMES["Officer C"] not in flat
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True,
                           check=True).stdout.splitlines()[2:]
    assert [line.split()[0] for line in fonts] == ["Courier"]


def test_the_coordinators_pdf_made_apart_is_the_same_pdf(text: str, monkeypatch) -> None:
    """The live coordinator makes the PDF in a child process (reportlab and the font stay out
    of it): the same bytes; a child that cannot make it is a Failure that says so."""
    assert transcript_pdf_apart(text) == transcript_pdf(text)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(Failure, match="the transcript's PDF could not be made"):
        transcript_pdf_apart(text)
