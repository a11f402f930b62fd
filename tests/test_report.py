"""`keyrite report` (coordinator/report/): a ceremony's printable report from its verified journal.

The 2026-12-07 rehearsal journal of the bundled ceremony is reported and the PDF read back with
poppler (pdftotext, pdftoppm): every drive and bag serial, the three key counts, the final
checkpoint's root and every officer's name must be in it. The facts are also checked on their
own, on that journal and on copies of its records changed to raise exceptions. A journal that
does not verify gets no report (exit 1); one that cannot be read is bad input (exit 2). Officers
renamed in Polish, Greek and Cyrillic are printed as written (DejaVu, embedded), or replaced as
the standard fonts must be on a machine without the font files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from reportlab.platypus import KeepTogether, Paragraph, Table

from ceremony.digests import colon_hex, pgp_words
from coordinator.journal import generate_key, verifier_key
from coordinator.report.facts import Facts, facts_of, key_fingerprint
from coordinator.report.fonts import DEJAVU, STANDARD, chosen, load
from coordinator.report.pdf import WIDTH, _Story, report_pdf
from keyrite import cli, exits

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
JOURNAL = DATA / "rehearsal-journal-2026-12-07.jsonl"
KEY = (DATA / "rehearsal-journal-2026-12-07.key").read_text().strip()
RECORDS = [(e["seq"], e["record"]) for e in map(json.loads, JOURNAL.read_text().splitlines())]
FINAL_ROOT = ("74:5b:95:b9:12:e8:f5:0e:45:b3:99:1d:68:9e:0b:10:94:03:88:d2:7b:d8:35:fe:37:cb:f7:"
              "bc:d4:73:d7:c0")
#: what the rehearsal read off its drives and bags (the journal's own values)
DRIVE_SERIALS = ("1E65936B0F88272097609F90", "0FFC0507297A1ECE56E72F42",
                 "49C276828F37D16664253CEC", "C08B5F1E1A8A6708D8CD3340",
                 "8045C2DD84D8759B5C36C01C", "443317C4298C7FDA813B2AED")
BAG_SERIALS = ("3654806", "3294204", "3914157", "3324038", "3026184")

needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None,
                                   reason="poppler-utils (pdftotext) is not installed: "
                                   "dev/setup.sh installs it")


def _text(pdf: Path, *options: str) -> str:
    return subprocess.run(["pdftotext", *options, str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.pdf"
    assert cli.main(["report", str(JOURNAL), "--key", KEY, "-o", str(out)]) == exits.OK
    return out


# --- the facts -----------------------------------------------------------------------------------
def test_the_facts_of_the_rehearsal() -> None:
    f = facts_of(RECORDS)
    assert (f.ceremony, f.status, f.rehearsal, f.at_step) == (
        "second-key-generation", "completed", True, None)
    assert f.script_sha256 == RECORDS[0][1]["script"]["sha256"]
    assert f.final is not None and (f.final.size, f.final.seq) == (164, 164)
    assert f.final.root_colon == FINAL_ROOT
    assert f.final.root_words == pgp_words(FINAL_ROOT.replace(":", ""))
    assert len(f.checkpoints) == 15
    assert [(s.seat, s.size) for s in f.signoffs] == [("KGA", 160)]
    # sign-in sheet: every seat, with its key's fingerprint from the genesis roster
    officers = {o["seat"]: o for o in RECORDS[0][1]["roster"]["officers"]}
    assert {s.seat for s in f.signins} == set(officers)
    for s in f.signins:
        assert s.fingerprint == key_fingerprint(officers[s.seat]["signing_key"])
        assert s.identity == "government ID checked by the KGA"
    # keys: counts before and after the purge and after generation, and which keys
    k = f.keys
    assert (k.before_purge, k.after_purge, k.after_generation) == (6, 4, 10)
    assert k.purged == ("21ddad6bc665f820ba112396cb2c691e", "6f3aa418c47d2e145f02fa972794b554")
    assert len(k.generated) == 6 and k.listed == ((32, 4), (34, 10))
    assert sorted(x for b in k.batches for x in b["locators"]) == sorted(k.generated)
    # approvals: the SA's two and the backup's three, each used by its operation
    assert [(a.quorum, a.seat, a.step, a.outcome) for a in f.approvals] == [
        ("purge", "SA", 31, "used"), ("generate", "SA", 33, "used"),
        ("keystore-backup", "KSO1", 43, "used"), ("keystore-backup", "KSO2", 43, "used"),
        ("device-backup", "DSO1", 43, "used")]
    # custody: every bag sealed, its serial, contents and custodian
    bags = {b.label: b for b in f.bags}
    assert {b.serial for b in f.bags} == set(BAG_SERIALS)
    assert (bags["master-copy"].custodian, bags["master-copy"].custodian_name) == (
        "KSO1", "Officer C")
    assert bags["master-copy"].contents[0] == (
        "flash drive Master Copy (master-copy), serial 0FFC0507297A1ECE56E72F42")
    assert all(len(b.chain) == 1 and b.chain[0].kind == "seal" for b in f.bags)
    drives = {d.label: d for d in f.drives}
    assert {d.read for d in f.drives} == set(DRIVE_SERIALS)
    assert drives["wellington"].recorded == drives["wellington"].read
    assert drives["wellington"].bag == "wellington"
    assert [b.sha256 for b in f.backups] == [
        "f29b85333caf650bfb310a76212adf5422f2148add9d4ba4c800dd5dccb66c3c"]
    assert f.backups[0].observed == colon_hex(f.backups[0].sha256)
    # every step done, in order, each verify with its expected value beside what was observed
    assert [s.n for s in f.steps] == list(range(1, 133))
    assert {s.outcome for s in f.steps} == {"done"}
    verify = {s.n: s for s in f.steps if s.action == "verify"}
    assert verify[30].expected == "6" and verify[30].observed == ("6",)
    assert verify[16].expected == RECORDS[0][1]["previous"]["livecd_sha256"]
    assert f.steps[0].by == "KGA (Administrator A)" and verify[16].by == "coordinator"
    assert f.exceptions == () and f.refusals == 0
    # the timeline: each section's estimate beside the time it took
    assert [s.title for s in f.sections][:2] == ["Initial preparation", "Laptop setup"]
    assert sum(s.planned for s in f.sections) == 6000 and f.planned == 6300  # + preliminaries
    assert all(s.actual is not None and s.actual < 5 for s in f.sections)
    assert [p.name for p in f.participants] == [
        "Administrator A", "Sysadmin B", "Officer C", "Officer D", "Officer E", "Officer F",
        "Officer G", "Witness H", "Auditor I"]


def test_a_seats_key_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    key = RECORDS[0][1]["roster"]["officers"][0]["signing_key"]
    raw = base64.b64decode(key.removeprefix("ed25519:"))
    blob = b"".join(len(x).to_bytes(4, "big") + x for x in (b"ssh-ed25519", raw))
    pub = tmp_path / "k.pub"
    pub.write_text(f"ssh-ed25519 {base64.b64encode(blob).decode()} kga\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True,
                         check=True).stdout
    assert out.split()[1] == key_fingerprint(key)


def _event(seq_at: dict[str, Any], **event: Any) -> dict[str, Any]:
    return {"type": "event", "at": seq_at["at"], "step": seq_at["step"],
            "event": {"at": seq_at["at"], **event}}


def _changed(changes: dict[int, list[dict[str, Any]]], until: int | None = None
             ) -> list[tuple[int, dict[str, Any]]]:
    """The rehearsal's records with some replaced (each by a list of records), renumbered."""
    out: list[dict[str, Any]] = []
    for seq, r in RECORDS[:until]:
        out += changes.get(seq, [r])
    return list(enumerate(out))


def test_a_retried_and_an_accepted_mismatch_are_reported_with_the_kgas_decisions(
        tmp_path: Path) -> None:
    livecd, role = RECORDS[26][1], RECORDS[42][1]
    wrong = "00" + livecd["event"]["value"][2:]
    records = _changed({
        26: [_event(livecd, event="Observed", step=16, value=wrong),
             _event(livecd, event="Decide", seat="KGA", decision="retry", reason=""),
             livecd],
        42: [_event(role, event="Observed", step=29, value="active"),
             _event(role, event="Decide", seat="KGA", decision="accept",
                    reason="the standby was promoted last week; checked with the registry")],
    })
    f = facts_of(records)
    assert f.status == "completed"
    assert [(x.step, x.kind, x.decision, x.by) for x in f.exceptions] == [
        (16, "mismatch", "retry", "KGA (Administrator A)"),
        (29, "mismatch", "accept", "KGA (Administrator A)")]
    assert f.exceptions[0].observed == wrong
    assert f.exceptions[1].why == "the standby was promoted last week; checked with the registry"
    steps = {s.n: s for s in f.steps}
    assert steps[16].outcome == "done after 1 retry"
    assert steps[16].observed == (wrong, livecd["event"]["value"])
    assert steps[29].outcome == "accepted with a reason" and steps[29].value == "active"
    if shutil.which("pdftotext") is None:
        return
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(report_pdf(f))
    flat = " ".join(_text(pdf).split())
    assert "the standby was promoted last week; checked with the registry" in flat
    assert "retry by KGA (Administrator A)" in flat and "accept by KGA (Administrator A)" in flat


def test_an_aborted_ceremony_is_reported_as_aborted() -> None:
    livecd = RECORDS[26][1]
    records = _changed({26: [
        _event(livecd, event="Observed", step=16, value="00" * 32),
        _event(livecd, event="Decide", seat="KGA", decision="abort",
               reason="the live CD is not the one on record")]}, until=27)
    f = facts_of(records)
    assert (f.status, f.at_step) == ("aborted", 16)
    steps = {s.n: s for s in f.steps}
    assert steps[16].outcome == "ABORTED here"
    assert steps[17].outcome == steps[132].outcome == "not reached"
    assert f.exceptions[0].decision == "abort"
    assert f.keys.before_purge is None and f.bags[0].serial is None
    assert report_pdf(f).startswith(b"%PDF")


def test_a_journal_whose_events_do_not_replay_is_a_failure() -> None:
    records = [r for r in RECORDS if r[0] != 12]  # the KGA never completes step 3
    with pytest.raises(exits.Failure, match="does not replay"):
        facts_of(records)
    with pytest.raises(exits.BadInput, match="genesis"):
        facts_of(RECORDS[1:])


def test_the_pdf_is_the_same_for_the_same_facts() -> None:
    f = facts_of(RECORDS)
    assert report_pdf(f) == report_pdf(replace(f))


# --- the command and its PDF ---------------------------------------------------------------------
@needs_poppler
def test_the_report_carries_every_serial_count_root_and_name(report: Path) -> None:
    text = _text(report, "-layout")
    flat = " ".join(text.split())
    for serial in DRIVE_SERIALS + BAG_SERIALS:
        assert serial in flat, serial
    assert re.search(r"Before the purge\s+6\n", text)
    assert re.search(r"After the purge\s+4\n", text)
    assert re.search(r"After generation\s+10\n", text)
    assert re.search(r"Before the purge\s+After the purge\s+After generation.*\n\s*6\s+4\s+10\s",
                     text)
    assert FINAL_ROOT in text  # on one line, whole
    assert pgp_words(FINAL_ROOT.replace(":", "")).split()[0] in flat
    for officer in RECORDS[0][1]["roster"]["officers"]:
        assert officer["name"] in flat
    for heading in ("Sign-in sheet", "Checks: expected beside observed", "HSM keys",
                    "Approvals", "Backups and custody", "Flash drives",
                    "Tamper-evident bags and who holds them",
                    "Exceptions and the administrator's decisions",
                    "Timeline: planned beside actual", "Every step", "Signed checkpoints",
                    "Signatures"):
        assert heading in text, heading
    assert "REHEARSAL" in text and "with the given key" in flat


@needs_poppler
def test_the_report_is_a4_paged_and_every_page_is_drawn(report: Path, tmp_path: Path) -> None:
    info = subprocess.run(["pdfinfo", str(report)], capture_output=True, text=True,
                          check=True).stdout
    assert re.search(r"^Page size:\s+595\.\d+ x 841\.\d+ pts \(A4\)", info, re.M)
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))  # type: ignore[union-attr]
    assert 8 <= pages <= 30
    footers = re.findall(r"page (\d+) of (\d+)", _text(report))
    assert footers == [(str(n), str(pages)) for n in range(1, pages + 1)]
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(report), str(tmp_path / "p")],
                   check=True)
    images = sorted(tmp_path.glob("p-*.png"))
    assert len(images) == pages
    from PIL import Image

    for image in images:
        with Image.open(image) as im:
            grey = im.convert("L")
            w, h = grey.size
            assert grey.getextrema()[0] < 80, image  # something is printed on every page
            # nothing drawn below Letter's height (792 of 842 pt), top-aligned
            bottom = grey.crop((0, int(h * 780 / 842), w, h))
            assert bottom.getextrema()[0] > 200, image
            colours = im.convert("RGB").getcolors(maxcolors=1 << 16) or []
            assert all(max(c) - min(c) < 40 for _, c in colours), image  # black and white


@needs_poppler
def test_the_bundled_ceremony_report_has_its_qr_code(report: Path, tmp_path: Path) -> None:
    if shutil.which("zbarimg") is None:
        pytest.skip("zbarimg is not installed: the QR code is not read back")
    subprocess.run(["pdftoppm", "-r", "150", "-f", "1", "-l", "1", "-png", str(report),
                    str(tmp_path / "cover")], check=True)
    [cover] = tmp_path.glob("cover*.png")
    out = subprocess.run(["zbarimg", "-q", "--raw", str(cover)], capture_output=True,
                         text=True, check=True).stdout
    assert out == RECORDS[-1][1]["note"] + "\n"  # the signed note, byte for byte


def test_a_journal_changed_by_one_byte_gets_no_report(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    data = bytearray(JOURNAL.read_bytes())
    at = data.index(b"49C276828F37D16664253CEC")
    data[at] = ord("5")
    bad = tmp_path / "j.jsonl"
    bad.write_bytes(bytes(data))
    out = tmp_path / "r.pdf"
    assert cli.main(["report", str(bad), "--key", KEY, "-o", str(out)]) == exits.FAILED
    err = capsys.readouterr().err
    assert "does not hold" in err and "Traceback" not in err
    assert not out.exists()
    # without --key too: the links alone show it
    assert cli.main(["report", str(bad), "-o", str(out)]) == exits.FAILED
    assert not out.exists()


def test_another_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = verifier_key("someone-else", generate_key())
    out = tmp_path / "r.pdf"
    assert cli.main(["report", str(JOURNAL), "--key", other, "-o", str(out)]) == exits.FAILED
    assert "another key" in capsys.readouterr().err and not out.exists()
    assert cli.main(["report", str(JOURNAL), "--key", "not a key", "-o", str(out)]) == \
        exits.BAD_INPUT


@pytest.mark.parametrize("content", [None, b"", b"not a journal\n", "directory"])
def test_a_missing_or_unreadable_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         content: bytes | str | None) -> None:
    journal = tmp_path / "j.jsonl"
    if content == "directory":
        journal.mkdir()
    elif isinstance(content, bytes):
        journal.write_bytes(content)
    out = tmp_path / "r.pdf"
    code = cli.main(["report", str(journal), "-o", str(out)])
    err = capsys.readouterr().err
    # a file that is not there or is not a file: bad input; one that is not a journal: it
    # does not verify
    assert code == (exits.BAD_INPUT if content in (None, "directory") else exits.FAILED), err
    assert "Traceback" not in err and err.startswith("keyrite report: ")
    assert not out.exists()


def test_the_report_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.pdf"
    out.write_bytes(b"earlier")
    assert cli.main(["report", str(JOURNAL), "-o", str(out)]) == exits.BAD_INPUT
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"earlier"
    assert cli.main(["report", str(JOURNAL), "-o", str(tmp_path / "no" / "r.pdf")]) == \
        exits.BAD_INPUT


def test_report_is_a_keyrite_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "report" in capsys.readouterr().out
    assert cli.main(["report", "--help"]) == 0
    assert "exit codes: 0 the report was written" in " ".join(capsys.readouterr().out.split())


# --- names beyond Latin-1: the fonts (coordinator/report/fonts.py) -------------------------------
#: Three officers' names in Polish, Greek and Cyrillic, in place of the rehearsal's own.
NAMES = {"Officer C": "Łukasz Żółć", "Officer D": "Ιωάννα Παπαδοπούλου",
         "Officer E": "Дмитрий Иванов"}
#: A reason the KGA writes, in all three.
REASON = "Zażółć gęślą jaźń; Ιωάννα: το σήμα είναι σωστό; Дмитрий: подтверждаю"

needs_dejavu = pytest.mark.skipif(not chosen().embedded,
                                  reason="fonts-dejavu-core is not installed: dev/setup.sh "
                                  "installs it")


def renamed(records: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """`records` with each of NAMES's people renamed wherever a name is recorded (the genesis
    roster, the sign-ins): a sign-in signs the person's id, not the name."""
    def swap(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return NAMES.get(v, v) if isinstance(v, str) else v
    return [(seq, swap(r)) for seq, r in records]


def unicode_facts() -> Facts:
    """The rehearsal with NAMES signed in and a mismatch the KGA accepts, saying REASON."""
    role = RECORDS[42][1]
    facts = facts_of(renamed(_changed({42: [
        _event(role, event="Observed", step=29, value="active"),
        _event(role, event="Decide", seat="KGA", decision="accept", reason=REASON)]})))
    assert [p.name for p in facts.participants][2:5] == list(NAMES.values())
    return facts


def test_the_fonts_draw_each_character_or_say_so() -> None:
    # the fallback: Latin-1, a letter without its accent where it has one, else "?", one for one
    assert STANDARD.drawable("Łukasz Żółć") == "?ukasz Zó?c"
    assert STANDARD.drawable("Дмитрий") == "?" * 7 and STANDARD.drawable("café") == "café"
    fonts = chosen()
    if not fonts.embedded:
        pytest.skip("fonts-dejavu-core is not installed: dev/setup.sh installs it")
    for name in (*NAMES.values(), REASON):
        assert fonts.drawable(name) == name
    assert fonts.drawable("Anna 李") == "Anna ?"  # DejaVu has no CJK: never a blank glyph
    assert fonts.drawable("a\tb\nc\x1b") == "a\tb\nc?"


def test_fonts_missing_or_unreadable_fall_back_to_the_standard_ones(tmp_path: Path) -> None:
    assert load(tmp_path / "none") is STANDARD
    for file in DEJAVU.values():
        (tmp_path / file).write_bytes(b"not a font")
    assert load(tmp_path) is STANDARD


@needs_poppler
@needs_dejavu
def test_names_beyond_latin1_are_printed_as_written(tmp_path: Path) -> None:
    f = unicode_facts()
    pdf = report_pdf(f)
    assert pdf == report_pdf(replace(f))  # still the same bytes for the same facts
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    flat = " ".join(_text(path).split())
    for name in NAMES.values():
        assert name in flat, name
    assert f"{NAMES['Officer C']} (KSO1, Registry)" in flat  # custody: who holds a bag
    assert REASON in flat
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True,
                           check=True).stdout.splitlines()[2:]
    # only the embedded DejaVu subsets: no standard font is named, even unused
    assert sorted(line.split()[0].split("+")[1] for line in fonts) == sorted(DEJAVU)
    assert all(line.split()[-5:-2] == ["yes", "yes", "yes"] for line in fonts), fonts


@needs_dejavu
def test_the_report_is_the_same_bytes_in_another_process() -> None:
    here = hashlib.sha256(report_pdf(unicode_facts())).hexdigest()
    there = subprocess.run(
        [sys.executable, "-c", "import hashlib; from tests.test_report import unicode_facts; "
         "from coordinator.report.pdf import report_pdf; "
         "print(hashlib.sha256(report_pdf(unicode_facts())).hexdigest())"],
        capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert there == here


def words_too_wide(facts: Facts) -> list[tuple[str, float, float]]:
    """Each paragraph of the report whose longest word is wider than its column (less padding):
    its text, that word's width and the room. Reads reportlab's Table after wrapping (its cells,
    widths and spans)."""
    too_wide = []

    def walk(x: Any, room: float) -> None:
        if isinstance(x, list | tuple):  # a cell of flowables is a tuple once in a Table
            for y in x:
                walk(y, room)
        elif isinstance(x, KeepTogether):
            walk(x._content, room)
        elif isinstance(x, Table):
            x.wrap(room, 1e6)
            spans = getattr(x, "_spanRanges", None) or {}  # only a table with spans has it
            for r, row in enumerate(x._cellvalues):
                for c, cell in enumerate(row):
                    span = spans.get((c, r), (c, r, c, r))
                    if span is not None:
                        walk(cell, sum(x._colWidths[span[0]:span[2] + 1]) - 6)  # padding 3+3
        elif isinstance(x, Paragraph) and x.minWidth() > room + 0.01:
            too_wide.append((x.text, x.minWidth(), room))

    walk(_Story(facts).build(), WIDTH)
    return too_wide


def test_no_word_is_wider_than_its_column() -> None:
    """The fonts' widths differ (DejaVu Sans is wider than Helvetica): every column still holds
    its longest word, in the rehearsal and with the names beyond Latin-1 (the standard fonts'
    report is checked in the test after this one)."""
    assert words_too_wide(facts_of(RECORDS)) == []
    assert words_too_wide(unicode_facts()) == []


def test_without_the_font_files_the_report_is_made_with_the_standard_fonts(
        tmp_path: Path) -> None:
    """One path for a machine without fonts-dejavu-core: Helvetica and Courier, Latin-1, the
    rest replaced, every word in its column, and still a report (run in a process of its own:
    fonts are chosen once)."""
    path = tmp_path / "r.pdf"
    subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "import coordinator.report.fonts as fonts; fonts.FONT_DIR = Path(sys.argv[1]); "
         "from tests.test_report import unicode_facts; "
         "from coordinator.report.pdf import FONTS, report_pdf; assert not FONTS.embedded; "
         "from tests.test_report import RECORDS, facts_of, words_too_wide; "
         "assert words_too_wide(facts_of(RECORDS)) == words_too_wide(unicode_facts()) == []; "
         "Path(sys.argv[2]).write_bytes(report_pdf(unicode_facts()))",
         str(tmp_path / "no-fonts"), str(path)], check=True, cwd=ROOT)
    assert path.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        return
    flat = " ".join(_text(path).split())
    assert "?ukasz Zó?c (KSO1, Registry)" in flat and "??????? ??????" in flat
    assert NAMES["Officer C"] not in flat
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True,
                           check=True).stdout.splitlines()[2:]
    assert sorted(line.split()[0] for line in fonts) == ["Courier", "Helvetica",
                                                         "Helvetica-Bold"]
