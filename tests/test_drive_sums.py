"""Every file keyrite writes to a drive gets `NAME.sha256sum` beside it, so a `drive.verify`
step can check any drive keyrite wrote: the Key Gen Log's case, a drive holding only the journal
copy and the transcript (no backup), once failed with "no .sha256sum file on the drive". A copy
of a whole drive carries the sums with the files (never doubled); a byte flipped in the copied
journal stops the ceremony at the check, naming the file."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ceremony.machine import decisions as d
from coordinator.ceremony_world import CeremonyWorld
from coordinator.drives import sha256_file, with_sums
from coordinator.folder_drives import FolderDrives
from keyrite import cli
from tests.rehearsal_helpers import rehearse_json

SCRIPT = Path(__file__).parent / "scripts" / "log-sums.toml"


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    work = tmp_path_factory.mktemp("sums") / "r"
    code, summary, err = rehearse_json(work, str(SCRIPT), "--fixture", "small")
    assert code == 0, err
    return work, summary


def test_a_log_drive_with_only_the_journal_and_transcript_passes_drive_verify(
        rehearsed: tuple[Path, dict[str, Any]]) -> None:
    work, summary = rehearsed
    assert summary["status"] == "completed" and summary["steps_completed"] == 18
    assert all(x["verified"] for x in summary["drives"])
    for label in ("log", "copy"):
        files = work / "drives" / label / "files"
        names = sorted(p.name for p in files.iterdir())
        data = [n for n in names if not n.endswith(".sha256sum")]
        # each file has exactly its own sum beside it: the copy of the whole drive took the
        # sums along rather than summing them again
        assert names == sorted(data + [f"{n}.sha256sum" for n in data]), names
        assert [n.split("-")[0].split(".")[0] for n in data] == ["journal", "transcript",
                                                                 "transcript"]
        if shutil.which("sha256sum"):  # coreutils agrees, with nothing of keyrite's
            check = subprocess.run(["sha256sum", "-c", *[f"{n}.sha256sum" for n in data]],
                                   cwd=files, capture_output=True, text=True, timeout=60)
            assert check.returncode == 0, check.stdout + check.stderr
    log, copy = work / "drives" / "log" / "files", work / "drives" / "copy" / "files"
    assert {p.name: p.read_bytes() for p in log.iterdir()} == {
        p.name: p.read_bytes() for p in copy.iterdir()}
    records = [json.loads(x)["record"] for x in (work / "journal.jsonl").read_text().splitlines()]
    checked = {r["step"]: r["event"]["result"] for r in records if r["type"] == "event"
               and r["event"].get("event") == "Performed" and r["step"] in (8, 13)}
    for n in (8, 13):
        assert checked[n]["ok"], checked[n]
        assert sorted(line.split(":")[0] for line in checked[n]["checked"]) == sorted(
            p.name for p in log.iterdir() if not p.name.endswith(".sha256sum"))
    copied = {r["step"]: r["event"]["result"]["files"] for r in records if r["type"] == "event"
              and r["event"].get("event") == "Performed" and r["step"] in (6, 12)}
    assert [f["name"] for f in copied[6]] == ["journal.jsonl", "journal.jsonl.sha256sum"]
    assert len(copied[12]) == 6  # the whole log drive, sums once each


def test_a_byte_flipped_in_the_copied_journal_fails_drive_verify_naming_it(
        rehearsed: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """On the world's own drive.verify (what the rehearsal and the live coordinator both run):
    the rehearsed log drive checks, then the same drive with one byte of its journal flipped
    does not, and says which file."""
    work, _ = rehearsed
    shutil.copytree(work / "drives", tmp_path / "drives")
    for label in ("log", "copy"):  # each drive names its own folder: now the copy's
        info = tmp_path / "drives" / label / ".drive"
        info.write_text(info.read_text().replace(str(work / "drives"), str(tmp_path / "drives")))
    world = CeremonyWorld(None, None, FolderDrives(tmp_path / "drives"),  # type: ignore[arg-type]
                          Path("/nonexistent"), Path("/nonexistent"), list, {})
    verify = d.Perform(step=8, action="drive.verify", params={"drive": "log"})
    assert world.perform(verify, lambda *a: None)["ok"]
    journal = tmp_path / "drives" / "log" / "files" / "journal.jsonl"
    data = bytearray(journal.read_bytes())
    data[len(data) // 2] ^= 0x01
    journal.write_bytes(bytes(data))
    result = world.perform(verify, lambda *a: None)
    assert not result["ok"]
    assert "journal.jsonl: FAILED" in str(result["detail"]), result
    assert "transcript" in str(result["detail"])  # the others still said OK


def test_the_rehearsal_stops_at_the_check_when_the_copied_journal_is_damaged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The whole ceremony: the drive damages the journal after it was written and read back
    (flash that loses a bit later); step 8, `drive.verify`, stops the rehearsal naming it."""
    copy = FolderDrives.copy

    def damaging(self: FolderDrives, label: str, files: Any, progress: Any = None) -> Any:
        out = copy(self, label, files, progress)
        target = Path(self.info(label).path) / "journal.jsonl"
        if label == "log" and any(f["name"] == "journal.jsonl" for f in out):
            data = bytearray(target.read_bytes())
            data[-10] ^= 0x01
            target.write_bytes(bytes(data))
        return out

    monkeypatch.setattr(FolderDrives, "copy", damaging)
    code = cli.main(["rehearse", str(SCRIPT), "--workdir", str(tmp_path / "r"),
                     "--fixture", "small"])
    out = capsys.readouterr()
    assert code == 1, out.out + out.err
    said = out.out + out.err
    assert "drive log failed its check" in said, said[-3000:]
    assert "journal.jsonl: FAILED" in said
    assert "no .sha256sum file" not in said


def test_sums_are_added_once_and_never_summed() -> None:
    batch = with_sums([("b.tar.gz", b"backup"), ("b.tar.gz.sha256sum", b"x  b.tar.gz\n"),
                       ("journal.jsonl", b"{}\n")])
    assert [n for n, _ in batch] == ["b.tar.gz", "b.tar.gz.sha256sum", "journal.jsonl",
                                     "journal.jsonl.sha256sum"]
    assert batch[1][1] == b"x  b.tar.gz\n"  # the signer's own sum, kept as it wrote it
    assert batch[3][1] == (b"ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"
                           b"  journal.jsonl\n")


def test_sha256_file_reads_a_file_of_many_buffers_whole(tmp_path: Path) -> None:
    """sha256_file reads into one 64 KiB buffer: every byte of a file several buffers long
    and not a whole number of them is hashed, an empty file too."""
    data = bytes(range(256)) * 1000 + b"tail"
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "e").write_bytes(b"")
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "e") == hashlib.sha256(b"").hexdigest()
