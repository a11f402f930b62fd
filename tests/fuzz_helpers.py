"""Hypothesis strategies for every message on the console bus and every request of the signer
shim, and the regression corpus (tests/fuzz_corpus/) they are replayed with.

Each strategy builds structurally plausible messages: the right fields most of the time, each
holding a valid value, a value of the wrong type or size, or something hostile (a lone
surrogate, a huge integer, NaN, a deep nesting), with fields dropped or added at times. `mutated`
then changes a valid message's encoded bytes. How many examples each test runs is
`EXAMPLES` (`KEYRITE_FUZZ_EXAMPLES` in the environment, 200 by default; docs/bus.md).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.test_plainjson import json_bytes

#: Examples per hypothesis test: modest in the normal suite, as many as asked for a long run.
EXAMPLES = int(os.environ.get("KEYRITE_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"


def corpus(kind: str) -> list[Path]:
    """The regression inputs of `kind` ("bus" or "shim"): one raw input per file."""
    return sorted(p for p in (CORPUS / kind).iterdir() if p.is_file())


# --- values, fitting and not -------------------------------------------------------------------
SEATS = ["KGA1", "DSO1", "SA1", "KSO1", "DSO2", "KSO2", "WI1", "KSO3", "KSO4", "SA2", "WI2"]

hostile_strings = st.sampled_from(["", " ", "\ud800", "a\udfff", "\x00", "\U0001f512", "x" * 300,
                                   "y" * 5000, "z" * 9000, "KGA1\x00", "../../etc/passwd",
                                   "P14M", "2026-02-30", "=" * 8, "ed25519:AAAA"])
short_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
strings = st.sampled_from(SEATS) | short_text | hostile_strings
hostile_numbers = st.sampled_from([0, -1, 1, 2**31, 2**53, 2**53 + 1, -(2**53) - 1, 2**63,
                                   2**63 + 1, 2**64, 10**30, 10**300, 10**4000, 0.5, -0.0,
                                   1e308, math.inf, -math.inf, math.nan, True, False])
numbers = st.integers(-5, 100) | st.integers() | hostile_numbers | st.floats()


def deep(depth: int, leaf: Any = 0, kind: str = "list") -> Any:
    for _ in range(depth):
        leaf = [leaf] if kind == "list" else {"k": leaf}
    return leaf


scalars = st.none() | st.booleans() | strings | numbers
_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(strings, inner, max_size=4), max_leaves=12)
#: anything at all (deeper nestings are in the corpus: drawn here, hypothesis reuses them so
#: eagerly that little else gets through the edge)
anything = _values | st.just(["KGA1"] * 1000)


def of(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: mostly a fitting one, else anything at all."""
    return st.sampled_from(range(8)).flatmap(lambda i: anything if i == 0 else good)


def message(fields: dict[str, st.SearchStrategy[Any]], fixed: dict[str, Any]
            ) -> st.SearchStrategy[dict[str, Any]]:
    """An object with `fixed` and `fields`: every one of them (each mostly fitting), or any of
    them; now and then a field nobody knows."""
    every = st.fixed_dictionaries({**fixed, **{k: of(v) for k, v in fields.items()}},
                                  optional={"extra": anything})
    some = st.fixed_dictionaries(
        fixed, optional={**{k: of(v) for k, v in fields.items()}, "extra": anything})
    return every | some


# --- the bus -----------------------------------------------------------------------------------
seats = st.sampled_from(SEATS)
steps = st.integers(0, 60)
names = st.sampled_from(["keystore-backup", "device-backup", "retry", "abort", "continue",
                         "KSO", "backup", "question", "objection", "note"]) | short_text
hexes = st.binary(min_size=16, max_size=32).map(bytes.hex)
b64 = st.binary(max_size=96).map(lambda b: __import__("base64").b64encode(b).decode())
approvals = st.fixed_dictionaries({
    "ceremony": of(names), "step": of(steps), "script_sha256": of(hexes),
    "operation": of(hexes), "nonce": of(hexes), "expires": of(st.integers(0, 2**40)),
    "key": of(b64.map(lambda b: "ed25519:" + b)), "signature": of(b64)},
    optional={"extra": anything})
cosigns = message({"size": st.integers(-2, 50), "root": b64, "cosignature": short_text,
                   "refusal": short_text}, {})

#: every command translate.py accepts, with its fields
COMMANDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "signin": {"seats": st.lists(seats, min_size=1, max_size=3), "id_checked": st.booleans(),
               "signed_at": st.integers(0, 2**40), "signatures": st.lists(b64, max_size=3),
               "id_document": names, "id_digits": st.text("0123456789", max_size=5),
               "seat": seats},
    "acknowledge": {"seat": seats, "step": steps},
    "record": {"seat": seats, "step": steps, "value": strings, "signature": b64},
    "approve": {"seat": seats, "approval": approvals},
    "refuse": {"seat": seats, "quorum": names, "reason": strings},
    "decide": {"seat": seats, "decision": names, "reason": strings},
    "signoff": {"seat": seats, "step": steps, "checkpoint": strings, "signature": b64,
                "cosign": cosigns},
    "pause": {"seat": seats},
    "resume": {"seat": seats},
    "remark": {"seat": seats, "kind": names, "text": strings},
    "deviation": {"seat": seats, "deviation": st.integers(-1, 5), "decision": names,
                  "reason": strings},
    "secret": {"seat": seats, "step": steps, "name": names, "value": strings},
    "share": {"seat": seats, "step": steps, "purpose": names,
              "box": b64 | st.binary(min_size=48, max_size=200).map(
                  lambda b: __import__("base64").b64encode(b).decode())},
    "presence": {"seat": seats},
    "journal": {"from": st.integers(-1, 100)},
    "checkpoint": {"from": st.integers(-1, 100)},
    "cosign": {"seat": seats, "size": st.integers(-2, 50), "root": b64,
               "cosignature": short_text, "refusal": short_text},
}
command_bodies = st.one_of(*(message(fields, {"type": st.just(kind)})
                             for kind, fields in COMMANDS.items())) \
    | message({"type": strings}, {}) | anything


def command_frame(body: Any, rid: Any = "c") -> bytes:
    return json_bytes({"v": 1, "kind": "command", "id": rid, "body": body}, False)


#: whole frames a console might send: commands (mostly), snapshot requests, other kinds
bus_envelopes = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 1, 2, 1.0, True, "1"]),
     "kind": st.sampled_from(["command"] * 6 + ["snapshot", "reply", "error", "state",
                                                 "broadcast", "heartbeat", "nope"])},
    optional={"id": of(st.text(max_size=8)), "body": command_bodies, "epoch": anything,
              "seq": numbers, "state": anything, "extra": anything})


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid message's bytes with a few bytes changed, cut, repeated or inserted."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "cut", "insert", "dup", "splice"]))
        if how == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[at: at + draw(st.integers(1, 8))]
        elif how == "insert":
            data[at:at] = draw(st.sampled_from([b"[", b"{", b"}", b'"', b"\\", b"\\ud800",
                                                b"NaN", b"1" * 400, b"\xff", b"\x00", b",",
                                                b'"type":"x",', b"e999", b"-"]))
        elif how == "dup":
            data[at:at] = data[at: at + draw(st.integers(1, 16))]
        elif how == "splice":
            data = data[:at] + data[: len(data) - at]
    return bytes(data)


valid_bus_frames = command_bodies.map(lambda b: json.dumps(
    {"v": 1, "kind": "command", "id": "c", "body": b}, ensure_ascii=False,
    default=str).encode("utf-8", "surrogatepass"))
bus_frames = st.one_of(
    bus_envelopes.map(lambda e: json_bytes(e, False)),
    command_bodies.map(command_frame),
    mutated(valid_bus_frames),
    st.binary(max_size=300),
)


# --- the shim ----------------------------------------------------------------------------------
policy_keys = st.fixed_dictionaries({
    "policy": of(st.sampled_from(["default", "lab"])),
    "role": of(st.sampled_from(["KSK", "ZSK", "CSK"])),
    "algorithm": of(st.sampled_from(["ECDSA/P-256", "RSA/2048", "ED25519"])),
    "lifetime_seconds": of(st.integers(-1, 10**10))}, optional={"extra": anything})
durations = st.sampled_from(["P14M", "P1Y", "PT1H", "P0D", "P", "14 months", "P9999999Y",
                             "PT0.5S", "-P1M"]) | short_text
dates = st.dates().map(str) | st.sampled_from(["2026-02-30", "0000-00-00", "9999-99-99",
                                                 "2026-1-1"]) | short_text
boxes = st.lists(b64, min_size=0, max_size=17)
#: every method of signer_shim.protocol with its params
METHODS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "info": {}, "fingerprint": {}, "inventory": {}, "plan_purge": {}, "share_key": {},
    "plan_generate": {"keys": st.lists(policy_keys, max_size=3), "duration": durations},
    "plan_backup": {"date": dates},
    "execute": {"operation": st.fixed_dictionaries({"op": of(st.sampled_from(
                    ["purge", "generate", "backup", "restore", "kek"])), "token": strings},
                    optional={"batches": anything, "extra": anything}),
                "approvals": st.lists(approvals, max_size=2),
                "secrets": st.fixed_dictionaries({}, optional={"password": strings,
                                                               "shares": boxes})},
    "read_output": {"name": strings, "offset": st.integers(-1, 2**40)},
    "restore_drill": {"file": strings, "password": strings, "shares": boxes},
    "put_input": {"name": strings, "offset": st.integers(-1, 2**20),
                  "size": st.integers(-1, 2**31), "sha256": hexes, "data": b64},
    "plan_restore": {"file": strings, "sha256": hexes},
    "plan_kek": {"threshold": st.integers(-1, 20),
                 "holders": st.lists(st.fixed_dictionaries(
                     {"seat": of(seats), "key": of(b64)}, optional={"extra": anything}),
                     max_size=4)},
}
#: methods that never reach the HSM queue's work with side effects (safe to send a live shim)
READ_ONLY = ("info", "fingerprint", "inventory", "plan_purge", "share_key", "plan_generate",
             "plan_backup", "read_output")


def shim_requests(methods: tuple[str, ...] = tuple(METHODS)) -> st.SearchStrategy[dict[str, Any]]:
    """Request objects: a proper envelope with the method's params (right, wrong, hostile), or
    any of the envelope's fields, each mostly right, and now and then an unknown one."""
    token = st.text(min_size=1, max_size=10)
    envelope = {"v": of(st.just(1)), "id": of(token), "key": of(token)}
    return st.one_of(*(st.fixed_dictionaries(
        {"v": st.just(1), "id": token, "key": token, "method": st.just(m),
         "params": message(METHODS[m], {})})
        | st.fixed_dictionaries({"method": of(st.just(m))}, optional={
            **envelope, "params": message(METHODS[m], {}), "extra": anything})
        for m in methods))


def shim_line(doc: Any) -> bytes:
    return json_bytes(doc, False).replace(b"\n", b"") + b"\n"


shim_lines = st.one_of(
    shim_requests().map(shim_line),
    mutated(shim_requests().map(lambda d: json.dumps(d, default=str).encode())),
    st.binary(max_size=300),
)
