"""A registry's ceremonies in a chain: the bundled annual audit continues from a key generation,
opens the offsite bags it left against its custody record, reads their drives back and reseals
them for the same custodians. Rehearsed for real (SoftHSM2 token, folder drives), with the
earlier key generation rehearsed first when no --previous is given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYRITE = [sys.executable, "-m", "keyrite.cli"]
AUDIT = ROOT / "ceremony" / "scripts" / "annual-audit.toml"
RESTORE = ROOT / "ceremony" / "scripts" / "standby-restore.toml"
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
OFFSITE = ("wellington", "albany", "auckland")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEYRITE, *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("chain") / "audit"
    p = _run("rehearse", str(AUDIT), "--workdir", str(work), "--fixture", "small", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "rehearsing the bundled key generation first" in p.stderr
    return work, json.loads(p.stdout)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Key generation, then the standby restore from its master copy, then the audit after the
    restore: each rehearsal continues from the one before's journal (and signer box)."""
    root = tmp_path_factory.mktemp("chain3")
    out: dict[str, tuple[Path, dict]] = {}
    before: tuple[Path, dict] | None = None
    for name, script in (("generate", None), ("restore", RESTORE), ("audit", AUDIT)):
        work = root / name
        args = ["rehearse", *([str(script)] if script else []), "--workdir", str(work),
                "--fixture", "small", "--json"]
        if before is not None:
            args += ["--previous", str(before[0] / "journal.jsonl"),
                     "--previous-key", before[1]["checkpoint_key"]]
        p = _run(*args)
        assert p.returncode == 0, (name, p.stderr[-3000:])
        out[name] = before = (work, json.loads(p.stdout))
    return out


def _private_keys(token: dict) -> list[str]:
    """The private keys' IDs on a rehearsal's token, as pkcs11-tool lists them."""
    p = subprocess.run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", token["label"],
                        "--login", "--pin", token["user_pin"], "-O", "--type", "privkey"],
                       capture_output=True, text=True, timeout=60,
                       env={"SOFTHSM2_CONF": token["softhsm2_conf"], "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    return sorted(line.split(":", 1)[1].strip() for line in p.stdout.splitlines()
                  if line.strip().startswith("ID:"))


def test_the_standby_restored_from_the_master_copy_holds_the_primarys_keys(
        chain: dict[str, tuple[Path, dict]]) -> None:
    g, (rest, r) = chain["generate"][1], chain["restore"]
    primary, standby = _private_keys(g["token"]), _private_keys(r["token"])
    assert primary and standby == primary
    assert g["token"]["softhsm2_conf"] != r["token"]["softhsm2_conf"]  # another token
    lines = [json.loads(x)["record"] for x in (rest / "journal.jsonl").read_text().splitlines()]
    listed = [x["event"]["result"]["count"] for x in lines if x["type"] == "event"
              and x["event"].get("event") == "Performed" and x["step"] == 7]
    assert listed == [0]  # empty before the restore
    observed = {x["step"]: x["event"]["value"] for x in lines if x["type"] == "event"
                and x["event"].get("event") == "Observed"}
    facts = r["previous"]["record"]
    assert (observed[14], observed[15]) == (facts["hsm_fingerprint"], facts["key_count"])
    # the backup on the Master Copy is the one the key generation wrote (its recorded digest)
    assert observed[11].replace(":", "") == facts["backup_sha256"].replace(":", "")
    approvals = [(x["step"], x["event"]["seat"]) for x in lines if x["type"] == "event"
                 and x["event"].get("event") == "Approve"]
    # two KSOs, then a DSO who is neither (DSO1 is KSO1's holder in the seed's cast)
    assert approvals == [(12, "KSO1"), (12, "KSO2"), (13, "DSO2")]
    bag = _custody(rest / "journal.jsonl")["master-copy"]
    assert [h["kind"] for h in bag["chain"]] == ["unseal", "seal"] and bag["custodian"] == "KSO1"



def test_a_password_typed_for_a_restore_is_printed_as_such() -> None:
    """The journal records a password its operation's actor typed with the purpose "backup";
    the transcript names the operation by its step: the restore, or the backup."""
    from ceremony.script.load import load_script
    from coordinator.transcript import _describe

    restore = load_script(RESTORE)
    secret = {"type": "secret", "at": 0.0, "seat": "SA", "name": "device-backup",
              "purpose": "backup", "step": 13}
    text, _ = _describe(secret, restore)
    assert text.startswith("SA typed the device-backup password for the restore at step 13")
    seed = load_script(ROOT / "ceremony" / "scripts" / "second-key-generation.toml")
    backup = next(s.n for s in seed.steps if s.action == "hsm.backup")
    text, _ = _describe({**secret, "step": backup}, seed)
    assert text.startswith(f"SA typed the device-backup password for the backup at step {backup}")
    text, _ = _describe({**secret, "step": 999}, seed)  # no such step: still printed
    assert "password for the backup at step 999" in text


def test_the_audit_after_the_restore_opens_the_key_generations_bags(
        chain: dict[str, tuple[Path, dict]]) -> None:
    """The restore never touched the offsite bags: its record carries them on, and the audit
    after it opens each against the key generation's serial, on the standby's HSM."""
    before = _custody(chain["generate"][0] / "journal.jsonl")
    work, summary = chain["audit"]
    assert summary["status"] == "completed"
    after = _custody(work / "journal.jsonl")
    for bag in OFFSITE:
        opened = after[bag]["chain"][0]
        assert (opened["kind"], opened["serial"]) == ("unseal", before[bag]["serial"])
    assert summary["token"]["softhsm2_conf"].startswith(str(work))


def _custody(journal: Path) -> dict:
    p = _run("custody", str(journal), "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["bags"]


def test_the_audit_opens_each_offsite_bag_the_key_generation_left_and_reseals_it(
        audit: tuple[Path, dict]) -> None:
    work, summary = audit
    assert summary["status"] == "completed"
    assert summary["previous"]["ceremony"] == "second-key-generation"
    before = _custody(work / "earlier" / "journal.jsonl")
    after = _custody(work / "journal.jsonl")
    for bag in OFFSITE:
        was, now = before[bag], after[bag]
        opened, sealed = now["chain"]
        assert (opened["kind"], opened["serial"], opened["previous"]) == (
            "unseal", was["serial"], True)
        assert opened["from_name"] == was["name"]  # the custodian brought it back...
        assert (sealed["kind"], sealed["to_name"]) == ("seal", was["name"])  # ...and took it
        assert sealed["to"] == was["custodian"]  # at the seat the script names for the bag
        assert sealed["verified"] and now["serial"] != was["serial"]  # a new bag, signed for
        # the same drive, as the key generation read it
        assert now["contents"][0] == was["contents"][0]


def test_the_audit_checks_the_signer_and_its_record_is_cosigned(audit: tuple[Path, dict]) -> None:
    work, summary = audit
    lines = [json.loads(x)["record"] for x in (work / "journal.jsonl").read_text().splitlines()]
    observed = {e["event"]["step"]: e["event"]["value"] for e in lines
                if e["type"] == "event" and e["event"].get("event") == "Observed"}
    record = summary["previous"]["record"]  # what the key generation left, read from its journal
    assert observed[7] == record["hsm_fingerprint"]  # the same HSM...
    assert observed[8] == record["key_count"]  # ...with nothing changed on it
    checked = [e["event"]["result"] for e in lines if e["type"] == "event"
               and e["event"].get("event") == "Performed" and e["step"] in (11, 18, 25)]
    assert [len(r["checked"]) for r in checked] == [1, 1, 1]  # each backup read back, whole
    # ...and each is the backup the key generation wrote: carried through the restore's record
    assert record["backup_sha256"] and [observed[n].replace(":", "") for n in (12, 19, 26)] == \
        [record["backup_sha256"].replace(":", "")] * 3
    p = _run("verify", str(work / "journal.jsonl"), "--cosigned-by", "KGA,SA,DSO,SAU")
    assert p.returncode == 0, p.stdout + p.stderr
    copy = work / "drives" / "audit-log" / "files" / "journal.jsonl"
    assert _run("verify", str(copy), "--cosigned-by", "KGA,SA,DSO,SAU").returncode == 0


def test_staging_the_audit_alone_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """Its coordinator would refuse to start on a made-up record that holds no bag: say so at
    staging, not after "staged"."""
    p = _run("stage", str(AUDIT), "--workdir", str(tmp_path / "s"))
    assert p.returncode == 2
    assert "opens bags an earlier ceremony sealed (wellington, albany, auckland)" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "s").exists()


def _doc_example(tmp_path: Path) -> Path:
    import re
    text = (ROOT / "docs" / "script-format.md").read_text()
    body = text[text.index("## Complete example"):]
    m = re.search(r"```toml\n(.*?)```", body, re.S)
    assert m
    path = tmp_path / "example.toml"
    path.write_text(m.group(1))
    return path


def test_the_documented_example_rehearses_as_written(tmp_path: Path) -> None:
    """docs/script-format.md's complete example: its signer pinned by the previous record, its
    cast and record derived from it, it rehearses end to end with nothing bent."""
    example = _doc_example(tmp_path)
    p = _run("rehearse", str(example), "--workdir", str(tmp_path / "r"), "--fixture", "small",
             "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)
    assert summary["status"] == "completed" and "previous" not in summary
    bag = _custody(tmp_path / "r" / "journal.jsonl")["master-bag"]
    assert [h["kind"] for h in bag["chain"]] == ["seal", "handover"]


def test_a_literal_host_key_cannot_be_rehearsed_and_says_what_to_write(tmp_path: Path) -> None:
    text = _doc_example(tmp_path).read_text().replace(
        'host_key = "previous.signer_host_key"',
        'host_key = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"')
    script = tmp_path / "literal.toml"
    script.write_text(text)
    p = _run("rehearse", str(script), "--workdir", str(tmp_path / "r"), "--fixture", "small")
    assert p.returncode == 2, p.stderr
    assert "signer standby pins the literal host key SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARL" \
        in p.stderr and 'host_key = "previous.signer_host_key"' in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "r").exists()


def test_script_check_against_the_journal_it_continues(audit: tuple[Path, dict],
                                                      tmp_path: Path) -> None:
    """`keyrite script check --previous`: the facts and the bags a script needs, looked up in
    the journal of the ceremony it continues, before anyone is in the room."""
    work, _ = audit
    earlier = work / "earlier" / "journal.jsonl"
    genesis = json.loads(earlier.read_text().splitlines()[0])["record"]
    key = genesis["journal"]["vkey"]  # the key it announces: ours, we made it
    good = _run("script", "check", str(AUDIT), "--previous", str(earlier), "--previous-key", key)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("annual-audit v1:")
    # the audit's journal: its own bags, and the key generation's it never opened, carried on
    audited = work / "journal.jsonl"
    audit_key = json.loads(audited.read_text().splitlines()[0])["record"]["journal"]["vkey"]
    other = tmp_path / "other-audit.toml"  # an audit of a bag nobody sealed
    other.write_text(AUDIT.read_text().replace('wellington"', 'lisbon"'))
    bad = _run("script", "check", str(other), "--previous", str(audited),
               "--previous-key", audit_key)
    assert bad.returncode == 2
    assert "step 9 unseals bag lisbon, which" in bad.stderr
    assert "did not leave held (held: albany, auckland, audit-log, keygen-log, master-copy, " \
        "wellington)" in bad.stderr
    example = _doc_example(tmp_path)  # the docs' example, needing a fact no record holds
    text = example.read_text()
    assert 'previous = ["livecd_sha256", ' in text
    example.write_text(text.replace('previous = ["livecd_sha256", ',
                                    'previous = ["livecd_sha256", "ksk_published", '))
    missing = _run("script", "check", str(example), "--previous", str(audited),
                   "--previous-key", audit_key)
    assert missing.returncode == 2
    assert "[ceremony] previous names ksk_published, which" in missing.stderr
    assert "livecd_sha256" not in missing.stderr  # carried on from the key generation


def test_values_typed_from_papers_rehearse(tmp_path: Path) -> None:
    """A record checked against the previous record (`expect`) and a digest typed from a paper
    the rehearsal has no copy of: the scripted officer types what the papers say, a valid
    digest, never "noted"."""
    text = (ROOT / "tests" / "scripts" / "no-signer.toml").read_text()
    text = text.replace('previous = ["livecd_sha256", "last_audit"]',
                        'previous = ["livecd_sha256", "last_audit", "log_bag_serial"]')
    steps = '''
[[sections.steps]]
n = 90
actor = "KGA"
action = "record"
format = "bag-serial"
expect = "previous.log_bag_serial"
text = "KGA reads the serial of last year's log bag off its tab, taped to last year's script."

[[sections.steps]]
n = 91
actor = "KGA"
action = "record"
format = "sha256"
text = "KGA copies the digest printed on last year's transcript."
'''
    script = tmp_path / "papers.toml"
    script.write_text(text.rstrip() + "\n" + steps)
    p = _run("rehearse", str(script), "--workdir", str(tmp_path / "r"), "--fixture", "small",
             "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [json.loads(x)["record"] for x in (tmp_path / "r" / "journal.jsonl").read_text()
             .splitlines()]
    typed = {r["step"]: r["event"]["value"] for r in lines
             if r["type"] == "event" and r["event"].get("event") == "Record"}
    previous = lines[0]["previous"]
    assert typed[90] == previous["log_bag_serial"]
    assert len(typed[91]) == 64 and typed[91] != "noted"
