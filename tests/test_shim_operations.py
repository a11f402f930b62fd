"""State-changing operations through a real shim over real SSH, on a real SoftHSM2 token:
quorum refusals leave the HSM untouched (also for a replay after a restart), a repeated key gets
the recorded answer, two clients never interleave at the HSM, and a SIGKILL during generate
followed by a retry leaves exactly the planned keys."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from ceremony.durations import MONTH
from coordinator.shim_client import HostKeyMismatch, QuorumRefused, ShimClient
from signer_shim.interface import PolicyKeys, SignerError
from signer_shim.request_journal import RequestJournal, check_serial
from staging.fixture import RehearsalToken
from staging.standup import ShimFiles, ShimProcess, write_shim_files
from tests.conftest import EC_POLICIES
from tests.shim_helpers import approve, cast_authority

WAIT = 120


@dataclass
class Shim:
    rt: RehearsalToken
    files: ShimFiles
    proc: ShimProcess

    def client(self, pin: str | None = None) -> ShimClient:
        return ShimClient("127.0.0.1", self.proc.port, client_key=self.files.client_key,
                          host_key_pin=pin or self.files.host_key_pin, timeout=WAIT)

    def restart(self) -> None:
        self.proc.stop()
        self.proc = ShimProcess(self.files.config)

    @property
    def journal(self) -> RequestJournal:
        return RequestJournal(self.rt.config.state_dir / "requests.jsonl")


@pytest.fixture
def shim(small_rehearsal: RehearsalToken, tmp_path: Path) -> Iterator[Shim]:
    files = write_shim_files(tmp_path / "shim", small_rehearsal.config_path, cast_authority())
    s = Shim(small_rehearsal, files, ShimProcess(files.config))
    try:
        yield s
    finally:
        s.proc.stop()


def locators(c: ShimClient) -> list[str]:
    return [k.locator for k in c.inventory().keys]


def pkcs11_ids(rt: RehearsalToken) -> list[str]:
    """The private keys' CKA_IDs read with OpenSC's pkcs11-tool: not keyrite's own code."""
    p = subprocess.run(
        ["pkcs11-tool", "--module", str(rt.config.module), "--token-label", rt.config.token_label,
         "--login", "--pin", rt.config.user_pin, "--list-objects", "--type", "privkey"],
        capture_output=True, text=True, timeout=WAIT, check=True,
        env={**os.environ, "SOFTHSM2_CONF": str(rt.config.softhsm2_conf)})
    return re.findall(r"^\s*ID:\s*([0-9a-f]+)\s*$", p.stdout, re.M)


def test_a_purge_with_its_quorum_runs_and_a_repeat_gets_the_recorded_answer(shim: Shim) -> None:
    with shim.client() as c:
        before = locators(c)
        op = c.plan_purge()
        approvals = approve(op, "sa1")
        seen: list[tuple[int, int, str]] = []
        first = c.execute(op, approvals, lambda *p: seen.append(p))
        assert sorted(first["deleted"]) == sorted(op["delete"]) and len(op["delete"]) == 2
        assert first["before"] == len(before) and first["after"] == len(before) - 2
        assert seen and seen[-1][0] == seen[-1][1] == 2
        again = c.execute(op, approvals)  # the same request, the same key
        assert again == first
    entries = shim.journal.entries()
    assert [e["event"] for e in entries if e.get("key")] == ["received", "started", "finished"]
    assert entries[1]["approvers"] == ["Sam (SA)"] and len(entries[1]["nonces"]) == 1


def refusal_cases(op: dict[str, object]) -> dict[str, list[object]]:
    forged = approve(op, "sa1")
    forged = [f.__class__(**{**f.to_dict(), "operation": "00" * 32}) for f in forged]
    expired = approve(op, "sa1", now=time.time() - 900)
    return {
        "forged": forged,
        "too few": [],
        "cross-step": approve(op, "sa1", step=33),
        "expired": expired,
        "wrong role": approve(op, "kso1"),
    }


def test_bad_quorums_are_refused_and_the_hsm_is_untouched(shim: Shim) -> None:
    with shim.client() as c:
        op = c.plan_purge()
        before = locators(c)
        for name, approvals in refusal_cases(op).items():
            with pytest.raises(QuorumRefused) as e:
                c.execute(op, approvals)  # type: ignore[arg-type]
            assert str(e.value), name
            assert locators(c) == before, f"{name}: the HSM changed"
        assert sorted(pkcs11_ids(shim.rt)) == before
    refused = [e for e in shim.journal.entries() if e["event"] == "refused"]
    assert len(refused) == 5 and not shim.journal.requests


def test_duplicate_signers_are_refused_over_the_wire(shim: Shim) -> None:
    with shim.client() as c:
        op = c.plan_backup("2026-11-27")
        with pytest.raises(QuorumRefused, match="approved twice"):
            c.execute(op, approve(op, "kso1", "kso1", "dso1"), secrets={"password": "pw"})
        with pytest.raises(QuorumRefused, match="needs 2 distinct KSO"):
            c.execute(op, approve(op, "kso1", "dso1"), secrets={"password": "pw"})
        assert not (shim.rt.config.outputs_dir / op["file"]).exists()


def test_a_replay_is_refused_also_after_a_restart(shim: Shim) -> None:
    with shim.client() as c:
        op = c.plan_purge()
        approvals = approve(op, "sa1")
        c.execute(op, approvals, key="first")
        after = locators(c)
    shim.restart()
    with shim.client() as c:
        with pytest.raises(QuorumRefused, match="already used"):
            c.execute(op, approvals, key="second")
        assert locators(c) == after
        # the first request's key still gets its recorded answer after the restart
        assert c.execute(op, approvals, key="first")["after"] == len(after)


def test_a_key_reused_for_another_request_is_a_conflict(shim: Shim) -> None:
    with shim.client() as c:
        op = c.plan_purge()
        c.execute(op, approve(op, "sa1"), key="k")
        with pytest.raises(SignerError, match="IdempotencyConflict"):
            c.execute(op, approve(op, "sa2"), key="k")


def test_a_wrong_pinned_host_key_sends_nothing(shim: Shim) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    before = shim.proc.log.read_text()
    with shim.client(pin=other) as c, pytest.raises(HostKeyMismatch) as e:
        c.info()
    assert e.value.presented == shim.files.host_key_pin and e.value.pinned == other
    time.sleep(0.2)
    assert "request" not in shim.proc.log.read_text()[len(before):]
    md5 = asyncssh.read_private_key(shim.rt.config.host_key_path).get_fingerprint("md5")
    with shim.client(pin=md5.upper().replace("MD5:", "MD5:")) as c:
        assert c.host_key("md5") == md5 and c.info()["host_key_md5"] == md5


def test_two_clients_hammering_never_interleave_at_the_hsm(shim: Shim) -> None:
    keys = [PolicyKeys("default", "ZSK", "ECDSA/P-256", MONTH)]
    errors: list[BaseException] = []
    queued: list[str] = []
    added: list[int] = []

    def hammer(client: int) -> None:
        try:
            with shim.client() as c:
                for i in range(4):  # a longer window each time, so each plan has work
                    op = c.plan_generate(keys, f"P{3 * (2 * i + client + 1)}M")
                    r = c.execute(op, approve(op, "sa1"),
                                  lambda d, t, w: queued.append(w) if "queue" in w else None)
                    added.append(r["added"])
                    c.inventory()
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not errors, errors
    entries = shim.journal.entries()
    assert sum(e["event"] == "finished" for e in entries) == 8
    assert check_serial(entries) == []
    ids = pkcs11_ids(shim.rt)
    assert len(ids) == len(set(ids)) == shim.rt.figures.keys + sum(added)
    assert sum(1 for a in added if a) >= 4


def test_sigkill_during_generate_then_retry_gives_exactly_the_planned_keys(shim: Shim) -> None:
    keys = [PolicyKeys("default", "ZSK", "RSA/2048", MONTH)]  # RSA: slow enough to kill
    with shim.client() as c:
        before = set(locators(c))
        op = c.plan_generate(keys, "P10M")
        planned = [loc for b in op["batches"] for loc in b["locators"]]
        assert len(planned) == 10
        approvals = approve(op, "sa1")
        got_some = threading.Event()

        def progress(done: int, total: int, what: str) -> None:
            if done >= 2:
                got_some.set()

        t = threading.Thread(target=lambda: _swallow(c.execute, op, approvals, progress))
        t.start()
        assert got_some.wait(WAIT), "no progress from generate"
        shim.proc.kill()
        t.join(WAIT)
    shim.restart()
    with shim.client() as c:
        result = c.execute(op, approvals)  # same approvals, same key: carries on
        after = set(locators(c))
    assert sorted(result["generated"]) == sorted(planned)
    assert after - before == set(planned) and before <= after
    ids = pkcs11_ids(shim.rt)
    assert len(ids) == len(set(ids)) == len(before) + 10
    events = [e["event"] for e in shim.journal.entries()]
    assert events.count("received") == 1 and events.count("finished") == 1
    assert events.count("started") == 2 and "boot" in events[events.index("started"):]
    assert check_serial(shim.journal.entries()) == []


def _swallow(fn, *args):  # type: ignore[no-untyped-def]
    with contextlib.suppress(SignerError):  # the link died with the shim: that is the point
        fn(*args)


def test_a_client_that_gives_up_does_not_stop_the_operation(shim: Shim) -> None:
    keys = [PolicyKeys("default", "ZSK", "RSA/2048", MONTH)]
    c = shim.client()
    op = c.plan_generate(keys, "P4M")
    approvals = approve(op, "sa1")
    started = threading.Event()
    t = threading.Thread(target=lambda: _swallow(
        c.execute, op, approvals, lambda d, *_: started.set() if d >= 1 else None))
    t.start()
    assert started.wait(WAIT)
    c.close()  # the connection goes away mid-operation
    t.join(WAIT)
    with shim.client() as again:
        result = again.execute(op, approvals)  # waits for the running one, or its record
        assert result["added"] == 4
    assert [e["event"] for e in shim.journal.entries() if e.get("key")].count("started") == 1


def test_backup_over_ssh_reads_back_the_archive(shim: Shim) -> None:
    with shim.client() as c:
        op = c.plan_backup("2026-11-27")
        r = c.execute(op, approve(op, "kso1", "kso2", "dso1"), secrets={"password": "pw" * 8})
        data = c.read_output(r["file"])
        assert len(data) == r["size"]
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
    assert "pw" * 8 not in (shim.rt.config.state_dir / "requests.jsonl").read_text()


def test_ec_policies_are_the_fixtures() -> None:
    assert {k.algorithm for k in EC_POLICIES} == {"ECDSA/P-256"}
