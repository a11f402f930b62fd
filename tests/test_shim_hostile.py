"""Hostile requests to the signer shim: each is a BadRequest (or QuorumRefused for what approvals
say), never `Internal`, nothing touches the HSM, and the shim serves the next request.

First the pure rules (the request decoder, plan parameters, approvals), then the same requests
sent to a real shim over SSH on a SoftHSM2 token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ceremony.approval import Approval, signed_message
from ceremony.digests import operation_digest
from ceremony.durations import parse_duration
from signer_shim import planning, protocol
from signer_shim.authority import QuorumRefused, check_quorum
from signer_shim.config import ConfigError as SignerConfigError
from signer_shim.config import SignerConfig
from signer_shim.interface import PolicyKeys
from signer_shim.keystate import KeyRecord, KeyState
from signer_shim.request_journal import RequestJournal
from staging.fixture import RehearsalToken
from tests.shim_helpers import CEREMONY, STEPS, approve, as_dicts, cast_authority, keys
from tests.test_shim_ssh import finals, shim_files, start_shim, stop

EC_KEYS = [{"policy": "default", "role": "KSK", "algorithm": "ECDSA/P-256",
            "lifetime_seconds": 365 * 86400},
           {"policy": "default", "role": "ZSK", "algorithm": "ECDSA/P-256",
            "lifetime_seconds": 93 * 86400}]
TOKEN = "d34d-ba64-0000-1111-2222-3333-4444-5555-6666-7777"


def line(method: str = "info", params: Any = None, id_: str = "r1", key: str = "k1") -> bytes:
    doc = {"v": 1, "id": id_, "key": key, "method": method, "params": params or {}}
    return json.dumps(doc).encode() + b"\n"


def generate(keys: Any = None, duration: Any = "P14M", id_: str = "g") -> bytes:
    return line("plan_generate", {"keys": EC_KEYS if keys is None else keys,
                                  "duration": duration}, id_)


def key_with(**change: Any) -> list[dict[str, Any]]:
    return [{**EC_KEYS[0], **change}]


def refused(raw: bytes) -> protocol.ProtocolError:
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.parse_request(raw)
    assert e.value.type == "BadRequest", (raw[:100], e.value.type, str(e.value))
    return e.value


# -- the decoder: what the bus refuses, the shim refuses -----------------------------------------


@pytest.mark.parametrize(("raw", "says"), [
    (line(params={"x": "\\ud800"}).replace(b'"\\\\ud800"', b'"\\ud800"'), "surrogate"),
    (b'{"v":1,"id":"\\udfff","key":"k","method":"info","params":{}}', "surrogate"),
    (b'{"v":1,"id":"a","key":"k","method":"info","params":{"\\ud800":1}}', "surrogate"),
    (b'{"v":1,"id":"\xed\xa0\x80","key":"k","method":"info","params":{}}', ""),  # raw CESU-8
    (b'{"v":1,"id":"a","key":"k","method":"read_output","params":{"name":"x","offset":'
     + b"9" * 5000 + b"}}", "digits"),
    (b'{"v":1,"id":"a","key":"k","method":"read_output","params":{"name":"x","offset":-'
     + b"9" * 30 + b"}}", "digits"),
    (b'{"v":1,"id":"a","key":"k","method":"info","params":{"x":NaN}}', "NaN"),
    (b'{"v":1,"id":"a","key":"k","method":"info","params":{"x":Infinity}}', "Infinity"),
    (b'{"v":1,"id":"a","key":"k","method":"info","params":{"x":-Infinity}}', "Infinity"),
    (b'{"v":1,"id":"a","key":"k","method":"info","params":{"x":1e400}}', "finite"),
    (b'{"v":1,"id":"a","key":"k","method":"info","params":{"x":'
     + b"[" * 40 + b"]" * 40 + b"}}", "nested"),
    (b'{"v":1,"id":"a","key":"k","method":"info","params":{"x":'
     + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}}", "nested"),
])
def test_the_decoder_refuses_what_is_not_plain_json(raw: bytes, says: str) -> None:
    e = refused(raw)
    assert says in str(e)


def test_a_huge_integer_is_never_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The digits are counted before int() sees them: 50,000 digits cost nothing."""
    raw = (b'{"v":1,"id":"a","key":"k","method":"read_output","params":{"name":"x","offset":'
           + b"7" * 50000 + b"}}")
    started = time.perf_counter()
    assert "digits" in str(refused(raw))
    assert time.perf_counter() - started < 1


def test_a_legitimate_execute_request_still_parses() -> None:
    op = {"op": "generate", "token": TOKEN, "duration": "P14M",
          "batches": [{"policy": "default", "role": "KSK", "algorithm": "ECDSA/P-256",
                       "lifetime_seconds": 31536000, "zones": 1, "unused": 0, "count": 1,
                       "locators": ["00" * 16]}]}
    approvals = as_dicts(approve(op, "sa1"))
    r = protocol.parse_request(line("execute", {"operation": op, "approvals": approvals}))
    assert r.params["operation"] == op and r.params["approvals"] == approvals


# -- plan parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    generate(key_with(lifetime_seconds=0)),
    generate(key_with(lifetime_seconds=-3600)),
    generate(key_with(lifetime_seconds=1e308)),
    generate(key_with(lifetime_seconds=3600.0)),
    generate(key_with(lifetime_seconds=True)),
    generate(key_with(lifetime_seconds="3600")),
    generate(key_with(lifetime_seconds=10**15)),
    generate(key_with(policy=["default"])),
    generate(key_with(policy="")),
    generate(key_with(role=None)),
    generate([{**EC_KEYS[0], "extra": 1}]),
    generate([{k: v for k, v in EC_KEYS[0].items() if k != "algorithm"}]),
    generate([EC_KEYS[0]] * 100),
    generate(duration="14 months"),
    generate(duration="P١٤M"),
    generate(duration="P0D"),
    generate(duration=14),
    generate().replace(b"31536000", b"Infinity"),
])
def test_plan_generate_parameters_are_refused_before_the_signer(raw: bytes) -> None:
    refused(raw)


@pytest.mark.parametrize("date", ["0000-00-00", "9999-99-99", "2026-02-30", "2026-13-01",
                                  "2026-1-1", "1899-12-31", "9999-12-31", "２０２６-11-27",
                                  "2026-11-27\n", "2026-11-27T00:00"])
def test_plan_backup_takes_a_real_date_in_a_sane_range(date: str) -> None:
    assert "date" in str(refused(line("plan_backup", {"date": date})))


@pytest.mark.parametrize("date", ["2026-11-27", "2028-02-29", "2000-01-01"])
def test_plan_backup_real_dates_parse(date: str) -> None:
    assert protocol.parse_request(line("plan_backup", {"date": date})).params == {"date": date}


# -- approvals: strict types for every field -------------------------------------------------------


def purge_op() -> dict[str, Any]:
    return {"op": "purge", "token": TOKEN, "delete": []}


def signed(op: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """sa1's approval of `op` with `fields` changed, validly signed over whatever they say."""
    a = {**approve(op, "sa1")[0].to_dict(), **fields}
    message = signed_message(a["ceremony"], a["step"], a["script_sha256"], a["operation"],
                             a["nonce"], a["expires"])
    a["signature"] = base64.b64encode(keys()["sa1"].sign(message)).decode()
    return a


def bad_approvals(op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    good = approve(op, "sa1")[0].to_dict()
    return {
        "expires as a string": signed(op, expires=str(good["expires"])),
        "expires as a float": signed(op, expires=good["expires"] + 0.5),
        "expires as a whole float": signed(op, expires=float(good["expires"])),
        "expires true": {**good, "expires": True},
        "step as a list": {**good, "step": [STEPS["purge"]]},
        "step as a string": signed(op, step=str(STEPS["purge"])),
        "step 0": signed(op, step=0),
        "nonce as a number": {**good, "nonce": 7},
        "key as a list": {**good, "key": [good["key"]]},
        "signature missing": {k: v for k, v in good.items() if k != "signature"},
        "an extra field": {**good, "note": "hi"},
    }


@pytest.mark.parametrize("case", list(bad_approvals(purge_op())))
def test_an_approval_of_the_wrong_shape_is_not_an_approval(case: str) -> None:
    d = bad_approvals(purge_op())[case]
    with pytest.raises(TypeError):
        Approval.from_dict(d)


@pytest.mark.parametrize("case", list(bad_approvals(purge_op())))
def test_the_quorum_check_refuses_it_and_raises_nothing_else(case: str) -> None:
    op = purge_op()
    with pytest.raises(QuorumRefused, match="malformed"):
        check_quorum(cast_authority(), op, [bad_approvals(op)[case]], now=time.time(),
                     used_nonces={}, request_key="k")


def test_a_well_typed_approval_still_counts() -> None:
    op = purge_op()
    verdict = check_quorum(cast_authority(), op, as_dicts(approve(op, "sa1")), now=time.time(),
                           used_nonces={}, request_key="k")
    assert verdict.digest == operation_digest(op)
    assert Approval.from_dict(approve(op, "sa1")[0].to_dict()).ceremony == CEREMONY


# -- a real shim over SSH -----------------------------------------------------------------------


async def _finals(port: int, d: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    """Each line's final message, one line at a time, on one session."""
    return await finals(port, d / "client_key", d / "known_hosts",
                        [raw if raw.endswith(b"\n") else raw + b"\n" for raw in lines])


@pytest.fixture
def shim(small_rehearsal: RehearsalToken, tmp_path: Path) -> Iterator[tuple[int, Path, Any]]:
    config = shim_files(small_rehearsal, tmp_path / "shim")
    proc, port = start_shim(config)
    try:
        yield port, config.parent, small_rehearsal
    finally:
        stop(proc)


def test_a_real_shim_refuses_each_hostile_request_and_serves_on(shim: tuple[int, Path, Any]
                                                                ) -> None:
    port, d, rt = shim
    [inv, plan] = asyncio.run(_finals(port, d, [line("inventory", id_="before"),
                                                line("plan_purge", id_="plan")]))
    before = inv["result"]["listing"]
    op = plan["result"]
    hostile: dict[str, bytes] = {
        "surrogate": b'{"v":1,"id":"s","key":"k","method":"info","params":{"x":"\\ud800"}}',
        "5000 digits": (b'{"v":1,"id":"n","key":"k","method":"read_output","params":'
                        b'{"name":"x","offset":' + b"9" * 5000 + b"}}"),
        "NaN": b'{"v":1,"id":"nan","key":"k","method":"info","params":{"x":NaN}}',
        "deep": (b'{"v":1,"id":"deep","key":"k","method":"info","params":{"x":'
                 + b"[" * 500 + b"]" * 500 + b"}}"),
        "lifetime 0": generate(key_with(lifetime_seconds=0)),
        "lifetime negative": generate(key_with(lifetime_seconds=-1)),
        "lifetime Infinity": generate().replace(b"31536000", b"Infinity"),
        "lifetime 1e308": generate(key_with(lifetime_seconds=1e308)),
        "14 months": generate(duration="14 months"),
        "date 0000-00-00": line("plan_backup", {"date": "0000-00-00"}),
        "date 9999-99-99": line("plan_backup", {"date": "9999-99-99"}),
    }
    answers = asyncio.run(_finals(port, d, list(hostile.values())))
    for name, a in zip(hostile, answers, strict=True):
        assert "error" in a, (name, a)
        assert a["error"]["type"] == "BadRequest", (name, a)
    approvals = bad_approvals(op)
    lines = [line("execute", {"operation": op, "approvals": [a]}, id_=f"x{i}", key=f"x{i}")
             for i, a in enumerate(approvals.values())]
    answers = asyncio.run(_finals(port, d, [*lines, line("inventory", id_="after")]))
    for name, a in zip(approvals, answers, strict=False):
        assert "error" in a, (name, a)
        assert a["error"]["type"] == "QuorumRefused", (name, a)
    after = answers[-1]
    assert after["id"] == "after" and after["result"]["listing"] == before
    journal = RequestJournal(rt.config.state_dir / "requests.jsonl")
    events = [(e["event"], e.get("key")) for e in journal.entries() if e["event"] != "boot"]
    assert events == [("refused", f"x{i}") for i in range(len(approvals))]
    assert not journal.requests  # nothing was received, let alone executed
    log = (d / "shim.log").read_text()
    assert "Traceback" not in log and "Internal" not in log


# -- a cap on plan_generate ---------------------------------------------------------------------


def thirteen_zones() -> KeyState:
    return KeyState(zones={"default": tuple(f"zone{i:02}.example" for i in range(1, 14))})


def test_the_cap_is_checked_from_the_key_state_alone_before_any_listing() -> None:
    keys = [PolicyKeys("default", "ZSK", "ECDSA/P-256", 1)]  # one key a second, per zone
    with pytest.raises(planning.PlanRefused) as e:
        planning.check_generate_size(keys, parse_duration("P1Y").seconds, thirteen_zones(),
                                     cap=10000)
    assert "409968000" in str(e.value) and "10000" in str(e.value)  # 31,536,000 x 13 zones
    assert "max_keys_per_operation" in str(e.value)
    planning.check_generate_size(keys, 10000 // 13, thirteen_zones(), cap=10000)  # 769 x 13


def test_pool_keys_are_counted_before_refusing() -> None:
    """Unused keys of the key state may be on the token: the check before the listing refuses
    only what is over the cap even if every one of them is."""
    pool = {f"{i:032x}": KeyRecord(locator=f"{i:032x}", policy="default", role="ZSK",
                                   algorithm="ECDSA/P-256", state="generate", zone=None)
            for i in range(3)}
    state = KeyState(zones=thirteen_zones().zones, keys=pool)
    keys = [PolicyKeys("default", "ZSK", "ECDSA/P-256", 3600)]
    planning.check_generate_size(keys, 3600, state, cap=10)  # 13 zones - 3 pool keys = 10
    with pytest.raises(planning.PlanRefused, match="at least 10 keys"):
        planning.check_generate_size(keys, 3600, state, cap=9)


def test_the_exact_count_is_capped_before_any_locator_is_drawn() -> None:
    def no_locator() -> str:
        raise AssertionError("a locator was drawn for a plan over the cap")

    keys = [PolicyKeys("default", "ZSK", "ECDSA/P-256", 3600)]
    with pytest.raises(planning.PlanRefused, match="13 keys.*at most 12"):
        planning.generate_batches(keys, "PT1H", thirteen_zones(), [], no_locator, cap=12)
    batches = planning.generate_batches(keys, "PT1H", thirteen_zones(), [], cap=13)
    assert batches[0]["count"] == len(batches[0]["locators"]) == 13


def test_max_keys_per_operation_is_an_optional_signer_config_key(tmp_path: Path) -> None:
    base = SignerConfig(name="s", role="standby", module=Path("/m.so"),
                        softhsm2_conf=Path("/c"), token_label="t", user_pin="1234",
                        state_dir=tmp_path, host_key_path=tmp_path / "hk")
    assert base.max_keys_per_operation == planning.DEFAULT_MAX_KEYS == 10000
    text = base.to_toml()
    assert "max_keys_per_operation = 10000" in text
    assert SignerConfig.from_toml(text) == base
    old = "\n".join(x for x in text.splitlines() if not x.startswith("max_keys"))
    assert SignerConfig.from_toml(old).max_keys_per_operation == 10000  # older files load
    assert SignerConfig.from_toml(text.replace("= 10000", "= 50")).max_keys_per_operation == 50
    for bad in ("0", "-1", '"100"', "1.5", "true", "10000000"):
        with pytest.raises(SignerConfigError, match="signer.max_keys_per_operation"):
            SignerConfig.from_toml(text.replace("= 10000", f"= {bad}"), "signer.toml")


def set_cap(rt: RehearsalToken, cap: int) -> None:
    lines = [x for x in rt.config_path.read_text().splitlines()
             if not x.startswith("max_keys_per_operation")]
    at = lines.index("[signer]") + 1
    lines.insert(at, f"max_keys_per_operation = {cap}")
    rt.config_path.write_text("\n".join(lines) + "\n")


def test_a_real_shim_refuses_a_plan_over_the_default_cap_at_once(
        shim: tuple[int, Path, Any]) -> None:
    """P1Y of keys that live a second each: 31,536,000 keys, refused before the HSM thread
    lists or allocates anything; the shim answers the next request."""
    port, d, _ = shim
    started = time.monotonic()
    refusal, info = asyncio.run(_finals(port, d, [
        generate(key_with(lifetime_seconds=1), "P1Y"), line("info", id_="next")]))
    assert time.monotonic() - started < 20  # connection and all; the refusal itself is ms
    assert refusal["error"]["type"] == "BadRequest", refusal
    assert "31536000" in refusal["error"]["message"]
    assert "10000" in refusal["error"]["message"]
    assert info["id"] == "next" and "result" in info


def test_a_configured_cap_is_the_limit(small_rehearsal: RehearsalToken, tmp_path: Path) -> None:
    """The small fixture plans 6 keys for P14M (2 KSK + 5 ZSK, less 1 pool ZSK)."""
    set_cap(small_rehearsal, 5)
    config = shim_files(small_rehearsal, tmp_path / "shim")
    proc, port = start_shim(config)
    try:
        over, listing = asyncio.run(_finals(port, config.parent, [
            generate(id_="over"), line("inventory", id_="after")]))
        assert over["error"]["type"] == "BadRequest", over
        assert "6 keys" in over["error"]["message"] and "at most 5" in over["error"]["message"]
        assert listing["result"]["count"] == 6
    finally:
        stop(proc)
    set_cap(small_rehearsal, 6)
    proc, port = start_shim(config)
    try:
        [plan] = asyncio.run(_finals(port, config.parent, [generate(id_="at the cap")]))
        assert sum(b["count"] for b in plan["result"]["batches"]) == 6
    finally:
        stop(proc)
