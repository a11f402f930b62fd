"""Purge and generate on a real SoftHSM2 token, the journal, and recovery from a killed worker."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.approval import Approval, sign_approval
from ceremony.digests import operation_digest
from signer_shim.interface import SignerError
from signer_shim.keystate import load_keystate
from signer_shim.pkcs11.inventory import contents_from_objects, diff
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.workerclient import WorkerClient
from staging.fixture import DEFAULT_POLICIES, RehearsalToken, seed_rehearsal_token
from tests.conftest import EC_POLICIES


def approvals_for(op: dict, n: int = 2) -> list[Approval]:
    return [
        sign_approval(Ed25519PrivateKey.generate(), ceremony="kc-test", step=33,
                      script_sha256="00" * 32, operation=operation_digest(op),
                      expires=int(time.time()) + 600)
        for _ in range(n)
    ]


def journal(rt: RehearsalToken) -> list[dict]:
    return [json.loads(line) for line in rt.config.journal_path.read_text().splitlines()]


def locators(signer: Pkcs11Signer) -> set[str]:
    return {k.locator for k in signer.inventory().keys}


def test_purge_deletes_exactly_the_dead_keys(small_rehearsal: RehearsalToken) -> None:
    rt = small_rehearsal
    state = load_keystate(rt.config.keystate_path)
    with Pkcs11Signer(rt.config) as s:
        before = locators(s)
        op = s.plan_purge()
        assert op["delete"] == state.dead() and len(op["delete"]) == rt.figures.dead == 2
        seen: list[str] = []
        result = s.execute(op, approvals_for(op), lambda d, t, w: seen.append(w))
        after = locators(s)
        assert s.plan_purge()["delete"] == []
    assert result == {"deleted": op["delete"], "before": 6, "after": rt.figures.after_purge}
    assert after == before - set(op["delete"])
    assert seen == ["deleted 2 keys"]
    new_state = load_keystate(rt.config.keystate_path)
    assert all(new_state.keys[k].state == "purged" for k in op["delete"])
    assert new_state.dead() == []


def test_purge_refuses_a_key_that_is_not_dead(small_rehearsal: RehearsalToken) -> None:
    rt = small_rehearsal
    state = load_keystate(rt.config.keystate_path)
    active = sorted(k for k, r in state.keys.items() if r.state == "active")[0]
    with Pkcs11Signer(rt.config) as s:
        op = {"op": "purge", "token": s.fingerprint(), "delete": [active]}
        with pytest.raises(SignerError, match="does not call dead"):
            s.execute(op, [])
        assert active in locators(s)
        other = dict(s.plan_purge(), token="0000-0000-0000-0000-0000-0000-0000-0000-0000-0000")
        with pytest.raises(SignerError, match="is for token"):
            s.execute(other, [])
        assert len(locators(s)) == 6


def test_generate_makes_the_planned_keys_and_records_them(small_rehearsal: RehearsalToken) -> None:
    rt = small_rehearsal
    with Pkcs11Signer(rt.config) as s:
        s.execute(s.plan_purge(), [])
        op = s.plan_generate(EC_POLICIES, "P14M")
        counts = {b["role"]: b["count"] for b in op["batches"]}
        assert counts == {"KSK": 2, "ZSK": 4}  # 2x1-0 and 5x1-1 (one unused ZSK in the pool)
        planned = {loc for b in op["batches"] for loc in b["locators"]}
        before = locators(s)
        seen: list[tuple[int, int, str]] = []
        result = s.execute(op, approvals_for(op), lambda d, t, w: seen.append((d, t, w)))
        after = locators(s)
        attrs = s.key_attributes(sorted(planned)[0])
    published = result.pop("public_keys")  # every planned key's SPKI (tests/test_publish.py)
    assert [(k["locator"], k["algorithm"]) for k in published] == sorted(
        (loc, "ECDSA/P-256") for loc in planned)
    assert result == {"generated": sorted(planned), "before": 4, "after": 10, "added": 6,
                      "removed": 0}
    assert rt.figures.after_generate == 10
    assert diff(before, after) == (sorted(planned), [])
    assert seen[-1] == (6, 6, "generated 6 of 6 keys") and len(seen) == 6
    assert attrs["sensitive"] and not attrs["extractable"] and attrs["never_extractable"]
    assert attrs["label"] == sorted(planned)[0] and attrs["token"]
    state = load_keystate(rt.config.keystate_path)
    assert all(state.keys[k].unused for k in planned)
    assert {state.keys[k].role for k in planned} == {"KSK", "ZSK"}


def test_generate_refuses_locators_already_in_use(small_rehearsal: RehearsalToken) -> None:
    with Pkcs11Signer(small_rehearsal.config) as s:
        op = s.plan_generate(EC_POLICIES, "P14M")
        op["batches"][0]["locators"][0] = sorted(locators(s))[0]
        with pytest.raises(SignerError, match="already in use"):
            s.execute(op, [])
        assert len(locators(s)) == 6


def test_finished_operation_returns_its_recorded_result(small_rehearsal: RehearsalToken) -> None:
    rt = small_rehearsal
    with Pkcs11Signer(rt.config) as s:
        op = s.plan_generate(EC_POLICIES, "P14M")
        approvals = approvals_for(op)
        first = s.execute(op, approvals)
    with Pkcs11Signer(rt.config) as again:  # a new signer, a new worker
        assert again.execute(op, approvals) == first
        assert len(locators(again)) == first["after"]
    entries = [e for e in journal(rt) if e["digest"] == operation_digest(op)]
    assert [e["event"] for e in entries] == ["received", "started", "finished"]
    assert entries[0]["operation"] == op
    assert entries[0]["approvals"] == [a.to_dict() for a in approvals]
    assert entries[1]["before"] == sorted(set(entries[1]["before"]))
    assert rt.config.user_pin not in rt.config.journal_path.read_text()


def test_generate_recovers_after_the_worker_is_killed(tmp_path: Path) -> None:
    """SIGKILL the worker after the progress for key 2, break one planned pair in half and
    remove another, then a new signer re-executes: every planned key once, nothing else."""
    rt = seed_rehearsal_token(tmp_path / "r", DEFAULT_POLICIES, shape="small")  # RSA keys
    config = dataclasses.replace(rt.config, workers=1)  # the one worker generates (pool: below)
    signer = Pkcs11Signer(config)
    op = signer.plan_generate(DEFAULT_POLICIES, "P14M")
    planned = sorted(loc for b in op["batches"] for loc in b["locators"])
    assert len(planned) == 6
    before = locators(signer)
    pid = signer.worker_pid

    def kill_after_two(done: int, total: int, what: str) -> None:
        if done == 2:
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(SignerError, match="signal 9"):
        signer.execute(op, approvals_for(op), kill_after_two)
    signer.close()

    token = rt.token
    w = WorkerClient(token.module, token.softhsm2_conf, token.label, token.user_pin)
    try:
        mid = contents_from_objects(token.label, w.call("list_objects"))
        added, removed = diff(before, mid.locators)
        assert removed == [] and len(added) >= 2 and set(added) <= set(planned)
        # whatever the kill left, make both repairs happen: a half pair and a missing pair
        w.call("destroy", {"locators": [added[0]], "classes": ["private"]})
        w.call("destroy", {"locators": [added[1]]})
    finally:
        w.close()

    with Pkcs11Signer(config) as fresh:
        seen: list[str] = []
        result = fresh.execute(op, approvals_for(op), lambda d, t, w: seen.append(w))
    w = WorkerClient(token.module, token.softhsm2_conf, token.label, token.user_pin)
    try:
        objects = w.call("list_objects")
    finally:
        w.close()
    assert_recovered(rt, op, result, objects, seen, before, planned)


def assert_recovered(rt: RehearsalToken, op: dict, result: dict, objects: list[dict],
                     seen: list[str], before: set[str], planned: list[str]) -> None:
    """After a killed generate of the small fixture's 6 keys was executed again: every planned
    pair once (read by a process of its own), nothing else, and the journal tells the story."""
    published = result.pop("public_keys")  # those made before the crash too
    assert [k["locator"] for k in published] == sorted(planned)
    assert result == {"generated": planned, "before": 6, "after": 12, "added": 6, "removed": 0}
    ids = [o["id"] for o in objects]
    assert len(ids) == 24 and sorted(set(ids)) == sorted(before | set(planned))
    assert all(ids.count(i) == 2 for i in set(ids))  # one private and one public, no duplicates
    assert seen[-1] == "generated 6 of 6 keys"
    events = [e["event"] for e in journal(rt) if e["digest"] == operation_digest(op)]
    assert events == ["received", "started", "failed", "received", "finished"]
    state = load_keystate(rt.config.keystate_path)
    assert all(state.keys[k].unused for k in planned)
