"""The shim when its journals cannot be written (ENOSPC, EIO, injected through `keyrite.diskio`):
the request gets an error reply saying why, the shim keeps serving other requests, nothing is
left half-written, and once the fault clears the same request (same idempotency key) runs, once
(docs/journal.md, "I/O errors")."""

from __future__ import annotations

import asyncio
import errno
import json
from pathlib import Path
from typing import Any

import pytest

from ceremony.digests import operation_digest
from keyrite import diskio
from signer_shim import protocol
from signer_shim.interface import Inventory, KeyInfo
from signer_shim.operation_journal import OperationJournal, execute_once, read_json_lines
from signer_shim.request_journal import RequestJournal, check_serial
from signer_shim.server import Shim
from tests.shim_helpers import approve, cast_authority

OP = {"op": "purge", "delete": ["aa" * 16, "bb" * 16]}


class Token:
    """A stand-in signer with a real operation journal: `work` counts what reached the token."""

    def __init__(self, path: Path) -> None:
        self.journal = OperationJournal(path)
        self.keys = ["aa" * 16, "bb" * 16, "cc" * 16]
        self.work = 0

    def inventory(self) -> Inventory:
        return Inventory("stand-in", tuple(KeyInfo(k, "ECDSA/P-256") for k in self.keys))

    def execute(self, op: dict[str, Any], approvals: Any, progress: Any,
                secrets: Any = None) -> dict[str, Any]:
        def run(status: Any) -> dict[str, Any]:
            if status.started and not any(k in self.keys for k in op["delete"]):
                return {"deleted": op["delete"], "reconciled": True}
            self.work += 1
            self.keys = [k for k in self.keys if k not in op["delete"]]
            return {"deleted": op["delete"]}

        return execute_once(self.journal, op, operation_digest(op),
                            [a.to_dict() for a in approvals], start=lambda: self.keys, run=run)


def request(key: str, method: str = "execute", params: dict[str, Any] | None = None) -> bytes:
    if params is None:
        params = {"operation": OP, "approvals": [a.to_dict() for a in APPROVALS]}
    return json.dumps({"v": 1, "id": f"r-{key}", "key": key, "method": method,
                       "params": params}).encode() + b"\n"


APPROVALS = approve(OP, "sa1", expires_in=3600)


def answer(shim: Shim, line: bytes) -> dict[str, Any]:
    return protocol.parse_reply(asyncio.run(shim.answer(line)))  # type: ignore[return-value]


def whole_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the file parses, the last one included (nothing half-written)."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), data[-80:]
    return [json.loads(x) for x in data.splitlines()]


@pytest.fixture
def shim(tmp_path: Path) -> tuple[Shim, Token, RequestJournal]:
    token = Token(tmp_path / "operations.jsonl")
    journal = RequestJournal(tmp_path / "requests.jsonl")
    journal.booted()
    return Shim(token, cast_authority(), journal), token, journal  # type: ignore[arg-type]


@pytest.mark.parametrize("which", ["requests.jsonl", "operations.jsonl"])
@pytest.mark.parametrize("op", ["write", "fsync"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=errno.errorcode.get)
@pytest.mark.parametrize("times", [1, None], ids=["once", "persistent"])
def test_a_journal_that_cannot_be_written_fails_the_request_and_nothing_else(
        tmp_path: Path, shim: tuple[Shim, Token, RequestJournal], which: str, op: str,
        code: int, times: int | None) -> None:
    s, token, journal = shim
    faults = diskio.Faults().fail(op, code, times=times, path=which, partial=op == "write")
    with diskio.injected(faults):
        reply = answer(s, request("k1"))
        assert "result" not in reply, reply
        err = reply["error"]
        assert err["type"] == "SignerError", err
        assert "cannot be written" in err["message"] and errno.errorcode[code] in err["message"]
        # the shim keeps serving: another request is answered
        inv = answer(s, request("k2", "inventory", {}))
        assert inv["result"]["count"] == 3 - 2 * token.work
        faults.clear()
        again = answer(s, request("k1"))  # the same request, the same key
    assert again["result"]["deleted"] == OP["delete"], again
    assert token.work == 1  # the token did the work once
    assert faults.fsync_retried == []
    requests = whole_lines(tmp_path / "requests.jsonl")
    operations = whole_lines(tmp_path / "operations.jsonl")
    assert check_serial(requests) == []
    assert [e["event"] for e in requests if e.get("key") == "k1"][-1] == "finished"
    assert [e["event"] for e in operations][-1] == "finished"
    # a repeat gets the recorded answer, and the nonce was spent once, by k1
    assert answer(s, request("k1"))["result"] == again["result"]
    assert set(journal.nonces.values()) == {"k1"}
    refused = answer(s, request("k3"))
    assert refused["error"]["type"] == "QuorumRefused"  # the approval is spent: no replay


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=errno.errorcode.get)
def test_when_the_result_cannot_be_journaled_a_retry_gets_it_without_redoing_the_work(
        tmp_path: Path, shim: tuple[Shim, Token, RequestJournal], code: int) -> None:
    """The token did the work; the request journal's `finished` fails (its third fsync:
    received, started, finished). The caller gets an error; the retry is answered from the
    operation journal's record, the token untouched again."""
    s, token, _ = shim
    faults = diskio.Faults().fail("fsync", code, path="requests.jsonl", after=2)
    with diskio.injected(faults):
        reply = answer(s, request("k1"))
        assert reply["error"]["type"] == "SignerError" and token.work == 1, reply
        again = answer(s, request("k1"))
    assert again["result"] == {"deleted": OP["delete"]} and token.work == 1
    requests = whole_lines(tmp_path / "requests.jsonl")
    assert [e["event"] for e in requests if e.get("key") == "k1"] == [
        "received", "started", "started", "finished"]  # the first finished was never recorded
    assert check_serial(requests) == []


def test_a_failed_line_is_cut_before_the_next_append(tmp_path: Path) -> None:
    """An fsync that failed may leave the line in the page cache only: the next append cuts the
    file back to what was acknowledged, so the line is never taken for recorded."""
    path = tmp_path / "requests.jsonl"
    journal = RequestJournal(path)
    journal.booted()
    acked = path.read_bytes()
    with (diskio.injected(diskio.Faults().fail("fsync", errno.EIO)),
          pytest.raises(Exception, match="cannot be written.*EIO")):
        journal.refused("k1", "no", None)
    assert path.read_bytes() != acked  # the line is there, in the cache at least
    journal.booted()
    assert [e["event"] for e in read_json_lines(path)] == ["boot", "boot"]
    assert RequestJournal(path).requests == {}


def test_a_shim_restarted_after_a_failed_fsync_settles_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    journal = RequestJournal(path)
    journal.booted()
    faults = diskio.Faults().fail("fsync", errno.EIO)
    with diskio.injected(faults):
        with pytest.raises(Exception, match="cannot be written"):
            journal.refused("k1", "no", None)
        again = RequestJournal(path)
        again.claim(wait=1)  # the line is whole in the file: written again in place, fsync'd
    assert faults.calls.get("pwrite") == 1
    assert [e["event"] for e in read_json_lines(path)] == ["boot", "refused"]
