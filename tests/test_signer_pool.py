"""One generate over several worker processes (signer_shim.pkcs11.pool, SignerConfig.workers),
against real SoftHSM2 tokens: the keys, the merged progress, the main worker's view afterwards,
failures, and recovery from a pool worker killed mid-generate."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from pathlib import Path

import pytest

from signer_shim.config import ConfigError, SignerConfig
from signer_shim.interface import SignerError
from signer_shim.keystate import load_keystate
from signer_shim.pkcs11 import pool
from signer_shim.pkcs11.inventory import contents_from_objects, diff
from signer_shim.pkcs11.signer import Pkcs11Signer
from signer_shim.pkcs11.softhsm import SoftHSMToken
from signer_shim.pkcs11.workerclient import WorkerClient
from signer_shim.planning import new_locator
from staging.fixture import DEFAULT_POLICIES, RehearsalToken, seed_rehearsal_token
from tests.conftest import EC_POLICIES
from tests.test_signer_operations import approvals_for, assert_recovered, locators


def spawner(token: SoftHSMToken) -> pool.Spawn:
    return lambda: WorkerClient(token.module, token.softhsm2_conf, token.label, token.user_pin)


def fresh_objects(token: SoftHSMToken) -> list[dict]:
    """The token as a process that has never seen it reads it."""
    w = spawner(token)()
    try:
        return w.call("list_objects")
    finally:
        w.close()


def ec_keys(n: int) -> list[dict[str, str]]:
    return [{"locator": new_locator(), "algorithm": "ECDSA/P-256"} for _ in range(n)]


def worker_children(exclude: int) -> list[int]:
    """This process's live `signer_shim.pkcs11.worker` children other than `exclude`."""
    me, found = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == exclude:
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == me and state != "Z" and b"signer_shim.pkcs11.worker" in cmd:
            found.append(int(d.name))
    return found


# -- configuration ----------------------------------------------------------------------------


def test_workers_defaults_to_one_and_is_kept_in_the_file(tmp_path: Path) -> None:
    c = SignerConfig(name="s", role="standby", module=Path("/usr/lib/x.so"),
                     softhsm2_conf=tmp_path / "c.conf", token_label="t", user_pin="1234",
                     state_dir=tmp_path / "state", host_key_path=tmp_path / "k")
    assert c.workers == 1
    old = "\n".join(line for line in c.to_toml().splitlines() if not line.startswith("workers"))
    (tmp_path / "old.toml").write_text(old)  # a file written before the key existed
    assert SignerConfig.load(tmp_path / "old.toml") == c
    three = dataclasses.replace(c, workers=3)
    assert "workers = 3\n" in three.to_toml()
    assert SignerConfig.load(three.save(tmp_path / "three.toml")) == three


@pytest.mark.parametrize("value", ["0", "65", '"2"', "true", "2.0", "-1"])
def test_workers_must_be_a_small_positive_integer(tmp_path: Path, value: str) -> None:
    c = SignerConfig(name="s", role="standby", module=Path("/usr/lib/x.so"),
                     softhsm2_conf=tmp_path / "c.conf", token_label="t", user_pin="1234",
                     state_dir=tmp_path / "state", host_key_path=tmp_path / "k")
    path = tmp_path / "bad.toml"
    path.write_text(c.to_toml().replace("workers = 1", f"workers = {value}"))
    with pytest.raises(ConfigError, match=r"bad\.toml: pkcs11\.workers must be an integer from 1 "
                                          r"to 64"):
        SignerConfig.load(path)


# -- the pool itself ----------------------------------------------------------------------------


def test_main_sessions_see_every_key_the_pool_made(softhsm_token: SoftHSMToken) -> None:
    """The long-lived main worker lists before, does not touch the token while the pool writes,
    and then sees exactly what a fresh process sees, round after round."""
    main = spawner(softhsm_token)()
    try:
        made: set[str] = set()
        for _ in range(6):
            assert contents_from_objects("t", main.call("list_objects")).locators == made
            keys = ec_keys(8)
            counts: list[int] = []
            got = pool.generate(spawner(softhsm_token), keys, 3,
                                lambda n, t, c=counts: c.append(n))
            assert sorted(got) == sorted(k["locator"] for k in keys)
            assert counts == list(range(1, 9))
            made |= set(got)
            mine, fresh = main.call("list_objects"), fresh_objects(softhsm_token)
            key = lambda o: (o["class"], o["id"])  # noqa: E731
            assert sorted(mine, key=key) == sorted(fresh, key=key)
            assert contents_from_objects("t", mine).locators == made
            assert set(main.call("audit", {"locators": sorted(got)})) == set(got)
    finally:
        main.close()


def test_a_failing_worker_stops_the_others_and_is_a_signer_error(
        softhsm_token: SoftHSMToken) -> None:
    keys = ec_keys(3) + [{"locator": new_locator(), "algorithm": "RSA/512"}] + ec_keys(20)
    with pytest.raises(SignerError, match=r"stopped after \d+ of 24 keys: worker \d of 2: "
                                          r"HSM generate failed: .*RSA/512"):
        pool.generate(spawner(softhsm_token), keys, 2)
    ids = {o["id"] for o in fresh_objects(softhsm_token)}
    assert len(ids) < 23 and ids <= {k["locator"] for k in keys}  # the others stopped early
    assert worker_children(exclude=-1) == []  # and every helper is gone


def test_no_key_is_made_unless_every_worker_opened(softhsm_token: SoftHSMToken) -> None:
    spawn, calls = spawner(softhsm_token), []

    def flaky() -> WorkerClient:
        calls.append(1)
        if len(calls) == 2:
            raise SignerError("no session for you")
        return spawn()

    with pytest.raises(SignerError, match="after 0 of 4 keys: worker [12] of 2: no session"):
        pool.generate(flaky, ec_keys(4), 2)
    assert fresh_objects(softhsm_token) == []


def test_an_error_in_progress_stops_the_pool_and_is_raised_as_it_is(
        softhsm_token: SoftHSMToken) -> None:
    def boom(n: int, total: int) -> None:
        raise KeyError("console went away")

    with pytest.raises(KeyError, match="console went away"):
        pool.generate(spawner(softhsm_token), ec_keys(30), 2, boom)
    assert 1 <= len(fresh_objects(softhsm_token)) // 2 < 30


# -- Pkcs11Signer with workers ------------------------------------------------------------------


def test_generate_with_two_workers(small_rehearsal: RehearsalToken) -> None:
    rt = small_rehearsal
    config = dataclasses.replace(rt.config, workers=2)
    with Pkcs11Signer(config) as signer:
        main_pid = signer.worker_pid
        before = locators(signer)
        op = signer.plan_generate(EC_POLICIES, "P14M")
        planned = sorted(loc for b in op["batches"] for loc in b["locators"])
        seen: list[tuple[int, int, str, int]] = []
        inventories: list[int] = []
        reader = threading.Thread(target=lambda: inventories.append(len(signer.inventory().keys)))

        def progress(done: int, total: int, what: str) -> None:
            seen.append((done, total, what, threading.get_ident()))
            if done == 1:  # asks in the middle; answered only once the operation is over
                reader.start()

        result = signer.execute(op, approvals_for(op), progress)
        reader.join()
        assert signer.worker_pid == main_pid  # the main session was not restarted
        assert locators(signer) == before | set(planned)
    assert [k["locator"] for k in result.pop("public_keys")] == sorted(planned)
    assert result == {"generated": planned, "before": 6, "after": 12, "added": 6, "removed": 0}
    assert [s[:3] for s in seen] == [(n, 6, f"generated {n} of 6 keys") for n in range(1, 7)]
    assert {s[3] for s in seen} == {threading.get_ident()}  # progress in the caller's thread
    assert inventories == [12]
    ids = [o["id"] for o in fresh_objects(rt.token)]
    assert len(ids) == 24 and all(ids.count(i) == 2 for i in set(ids))
    state = load_keystate(rt.config.keystate_path)
    assert all(state.keys[k].unused for k in planned)


def test_generate_recovers_after_a_pool_worker_is_killed(tmp_path: Path) -> None:
    """SIGKILL one of two pool workers in the middle of RSA generation; then, whatever that
    left, break one planned pair in half and remove another; a new signer re-executes:
    every planned key once, nothing else."""
    rt = seed_rehearsal_token(tmp_path / "r", DEFAULT_POLICIES, shape="small")  # RSA keys
    config = dataclasses.replace(rt.config, workers=2)
    signer = Pkcs11Signer(config)
    op = signer.plan_generate(DEFAULT_POLICIES, "P14M")
    planned = sorted(loc for b in op["batches"] for loc in b["locators"])
    assert len(planned) == 6
    before = locators(signer)
    main_pid = signer.worker_pid
    killed: list[int] = []

    def kill_one_after_two(done: int, total: int, what: str) -> None:
        if done == 2:
            helpers = worker_children(exclude=main_pid)
            assert len(helpers) == 2
            os.kill(helpers[0], signal.SIGKILL)
            killed.append(helpers[0])

    with pytest.raises(SignerError, match=r"worker [12] of 2: .*signal 9"):
        signer.execute(op, approvals_for(op), kill_one_after_two)
    assert killed and signer.worker_pid == main_pid
    assert worker_children(exclude=main_pid) == []
    signer.close()

    token = rt.token
    w = spawner(token)()
    try:
        mid = contents_from_objects(token.label, w.call("list_objects"))
        added, removed = diff(before, mid.locators)
        assert removed == [] and 2 <= len(added) < 6 and set(added) <= set(planned)
        assert mid.halves <= set(planned)
        w.call("destroy", {"locators": [added[0]], "classes": ["private"]})
        w.call("destroy", {"locators": [added[1]]})
    finally:
        w.close()

    with Pkcs11Signer(config) as fresh:
        seen: list[str] = []
        result = fresh.execute(op, approvals_for(op), lambda d, t, w: seen.append(w))
    assert_recovered(rt, op, result, fresh_objects(token), seen, before, planned)
