"""The shim's quorum rule (signer_shim.authority), pure: every way a quorum can be wrong is
refused with a reason, and a good one names who approved. Plus the authority file's strictness
and the request journal's fold."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signer_shim.authority import Authority, QuorumRefused, check_quorum
from signer_shim.config import ConfigError
from signer_shim.request_journal import RequestJournal, check_serial
from tests.shim_helpers import approve, as_dicts, cast_authority

NOW = 1_800_000_000.0
PURGE = {"op": "purge", "token": "t", "delete": ["00" * 16]}
BACKUP = {"op": "backup", "token": "t", "file": "key-backup-2026-11-27.tar.gz"}


def check(op: dict[str, object], approvals: list[dict[str, object]], *,
          used: dict[str, str] | None = None, key: str = "k1"):  # type: ignore[no-untyped-def]
    return check_quorum(cast_authority(), op, approvals, now=NOW, used_nonces=used or {},
                        request_key=key)


def test_a_good_quorum_names_its_approvers() -> None:
    v = check(BACKUP, as_dicts(approve(BACKUP, "kso1", "kso2", "dso1", now=NOW)))
    assert v.step == 43 and len(v.nonces) == 3
    assert v.approvers == ("Dee (DSO)", "Kai (KSO)", "Kim (KSO)")


def refused(op: dict[str, object], approvals: list[dict[str, object]], match: str,
            **kw: object) -> None:
    with pytest.raises(QuorumRefused, match=match):
        check(op, approvals, **kw)  # type: ignore[arg-type]


def test_too_few() -> None:
    refused(BACKUP, as_dicts(approve(BACKUP, "kso1", "dso1", now=NOW)),
            r"needs 2 distinct KSO approval\(s\), has 1")
    refused(BACKUP, as_dicts(approve(BACKUP, "kso1", "kso2", now=NOW)), "DSO")
    refused(PURGE, [], "none were sent")


def test_the_same_officer_twice_counts_once_and_is_refused() -> None:
    twice = as_dicts(approve(BACKUP, "kso1", "kso1", "dso1", now=NOW))
    refused(BACKUP, twice, "approved twice")


def test_a_forged_signature() -> None:
    [a] = as_dicts(approve(PURGE, "sa1", now=NOW))
    a["signature"] = base64.b64encode(b"\0" * 64).decode()
    refused(PURGE, [a], "signature does not verify")


def test_a_key_not_on_the_roster() -> None:
    stranger = Ed25519PrivateKey.generate()
    refused(PURGE, as_dicts(approve(PURGE, "sa1", now=NOW, signer=stranger)),
            "not on this signer's roster")


def test_an_approval_resigned_by_another_key_for_a_rostered_name() -> None:
    [a] = as_dicts(approve(PURGE, "sa1", now=NOW, signer=Ed25519PrivateKey.generate()))
    [b] = as_dicts(approve(PURGE, "sa1", now=NOW))
    a["key"] = b["key"]  # claims to be sa1, signed by someone else
    refused(PURGE, [a], "signature does not verify")


def test_expired_and_overlong() -> None:
    refused(PURGE, as_dicts(approve(PURGE, "sa1", now=NOW - 600, expires_in=300)), "expired")
    refused(PURGE, as_dicts(approve(PURGE, "sa1", now=NOW, expires_in=7200)), "longer")


def test_cross_step_and_wrong_operation() -> None:
    refused(PURGE, as_dicts(approve(PURGE, "sa1", now=NOW, step=33)),
            "for step 33; this signer runs purge only at step 31")
    other = {**PURGE, "delete": ["11" * 16]}
    refused(PURGE, as_dicts(approve(other, "sa1", now=NOW, step=31)), "different operation")
    mixed = as_dicts(approve(PURGE, "sa1", now=NOW)) + as_dicts(
        approve(PURGE, "sa2", now=NOW, step=33))
    refused(PURGE, mixed, "different steps")


def test_another_ceremony_or_script() -> None:
    refused(PURGE, as_dicts(approve(PURGE, "sa1", now=NOW, ceremony="other")), "ceremony")
    refused(PURGE, as_dicts(approve(PURGE, "sa1", now=NOW, script_sha256="cd" * 32)),
            "another version of the script")


def test_an_officer_of_a_role_the_rule_does_not_ask_for() -> None:
    refused(PURGE, as_dicts(approve(PURGE, "sa1", "w1", now=NOW)), "Wes is W")


def test_an_operation_this_signer_does_not_run() -> None:
    refused({"op": "restore"}, [], "accepts no 'restore'")


def test_a_spent_nonce_is_a_replay_unless_it_is_the_same_request() -> None:
    approvals = as_dicts(approve(PURGE, "sa1", now=NOW))
    used = {approvals[0]["nonce"]: "k1"}
    assert check(PURGE, approvals, used=used, key="k1").approvers == ("Sam (SA)",)
    refused(PURGE, approvals, "already used", used=used, key="k2")


def test_malformed_approvals_are_refused_not_crashed_on() -> None:
    refused(PURGE, [{"step": 31}], "malformed")
    [a] = as_dicts(approve(PURGE, "sa1", now=NOW))
    refused(PURGE, [{**a, "nonce": "XYZ"}], "nonce")


# -- the authority file ------------------------------------------------------------------------


def test_the_authority_file_round_trips(tmp_path: Path) -> None:
    a = cast_authority()
    (tmp_path / "a.toml").write_text(a.to_toml())
    assert Authority.load(tmp_path / "a.toml") == a


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (lambda t: t.replace("[ceremony]", "[ceremony]\ncolour = 1"), "ceremony.colour"),
        (lambda t: t.replace('script_sha256 = "' + "ab" * 32, 'script_sha256 = "xyz'),
         "ceremony.script_sha256"),
        (lambda t: t.replace("m = 2", "m = 0"), "operations[2].quorums[0].m"),
        (lambda t: t.replace('op = "purge"', 'op = "format"'), "operations[0].op"),
        (lambda t: t.replace("step = 31", 'step = "31"'), "operations[0].step"),
        (lambda t: t.replace('key = "ed25519:', 'key = "rsa:', 1), "officers[0].key"),
        (lambda t: t + "[extra]\n", "unknown key extra"),
        (lambda t: t.replace("[ceremony]", "[ceremony"), "a.toml"),
    ],
)
def test_a_bad_authority_file_names_the_key(tmp_path: Path, change, names: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.toml").write_text(change(cast_authority().to_toml()))
    with pytest.raises(ConfigError, match="a.toml") as e:
        Authority.load(tmp_path / "a.toml")
    assert names in str(e.value)


def test_a_key_listed_twice_is_an_error(tmp_path: Path) -> None:
    a = cast_authority()
    first = next(iter(a.officers.values()))
    twice = dataclasses.replace(a, officers={**a.officers, "x": first})
    (tmp_path / "a.toml").write_text(twice.to_toml())
    with pytest.raises(ConfigError, match="listed twice"):
        Authority.load(tmp_path / "a.toml")


# -- the request journal -----------------------------------------------------------------------


def test_the_request_journal_remembers_nonces_and_results_across_opening(tmp_path: Path) -> None:
    j = RequestJournal(tmp_path / "requests.jsonl")
    j.booted()
    j.received("k1", method="execute", request="r", op="purge", digest="d", step=31,
               nonces=("n1", "n2"), approvers=("Sam",))
    j.started("k1")
    j.finished("k1", {"deleted": []})
    j.refused("k2", "too few", "d")
    again = RequestJournal(tmp_path / "requests.jsonl")
    assert again.nonces == {"n1": "k1", "n2": "k1"}
    assert again.requests["k1"].result == {"deleted": []}
    assert "k2" not in again.requests
    assert check_serial(again.entries()) == []


def test_a_torn_last_line_is_skipped_and_cut_on_the_next_append(tmp_path: Path) -> None:
    p = tmp_path / "requests.jsonl"
    j = RequestJournal(p)
    j.received("k1", method="execute", request="r", op="purge", digest="d", step=31,
               nonces=("n1",), approvers=("Sam",))
    with p.open("ab") as f:
        f.write(b'{"event":"started","ke')
    j2 = RequestJournal(p)
    assert not j2.requests["k1"].started
    j2.started("k1")
    assert [e["event"] for e in RequestJournal(p).entries()] == ["received", "started"]


def test_interleaving_is_detected() -> None:
    entries = [{"event": "started", "key": "a"}, {"event": "started", "key": "b"},
               {"event": "finished", "key": "a"}, {"event": "finished", "key": "b"}]
    assert len(check_serial(entries)) >= 2
    crashed = [{"event": "started", "key": "a"}, {"event": "boot"},
               {"event": "started", "key": "b"}, {"event": "finished", "key": "b"}]
    assert check_serial(crashed) == []
