"""`ShimClient`: the coordinator's side of the signer link, the `Signer` protocol over SSH.

It opens the `keyrite-shim` subsystem (signer_shim.protocol) with asyncssh and offers the same
calls as `Pkcs11Signer`, synchronously, so the rehearsal's world and the live coordinator use
either without knowing which. asyncssh is asyncio; this class runs a private event loop in one
daemon thread and hands coroutines to it (`run_coroutine_threadsafe`), so callers on trio, on
plain threads or in tests need nothing of asyncio.

The host key is pinned: the server's key must have the fingerprint the ceremony script records
(`SHA256:...` as OpenSSH prints it, or the legacy `MD5:aa:bb:...`). The check happens during the
key exchange, before authentication and before any request is sent; a mismatch raises
`HostKeyMismatch`, which names the key actually presented so the officers can compare it with
their records. `presented` keeps that fingerprint for the ceremony's verify step.

Execute carries an idempotency key derived from the operation (or given by the caller): a
retry after a lost connection or a coordinator crash asks for the same work again and gets the
recorded result, or the running operation's end, never a second run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import threading
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from ceremony.approval import Approval
from ceremony.digests import operation_digest
from keyrite.exits import Failure
from signer_shim import protocol
from signer_shim.interface import Inventory, KeyInfo, PolicyKeys, Progress, SignerError

T = TypeVar("T")


class HostKeyMismatch(SignerError):
    """The server is not the signer the script pins; nothing was sent to it."""

    def __init__(self, presented: str, pinned: str) -> None:
        super().__init__(f"the signer presented host key {presented}, the records say {pinned}: "
                         "not sending anything to it [A8]")
        self.presented = presented
        self.pinned = pinned


class QuorumRefused(SignerError):
    """The shim refused the approvals; nothing touched the HSM."""


def fingerprints(key: asyncssh.SSHKey) -> tuple[str, str]:
    """(SHA256:..., MD5:aa:bb:...) of a public key, as OpenSSH prints them."""
    return key.get_fingerprint("sha256"), key.get_fingerprint("md5")


def matches(pin: str, key: asyncssh.SSHKey) -> bool:
    sha, md5 = fingerprints(key)
    if pin.startswith("SHA256:"):
        return pin == sha
    return pin.lower() == md5.lower()


class _Pinning(asyncssh.SSHClient):
    def __init__(self, pin: str, seen: list[tuple[str, str]]) -> None:
        self._pin = pin
        self._seen = seen

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self._seen.append(fingerprints(key))
        return matches(self._pin, key)


class ShimClient:
    """Implements `signer_shim.interface.Signer` against a shim over SSH."""

    def __init__(self, host: str, port: int, *, client_key: Path, host_key_pin: str,
                 username: str = "keyrite", timeout: float = 30.0) -> None:
        self.host, self.port = host, port
        self.client_key = Path(client_key)
        self.pin = host_key_pin
        self.username = username
        self.timeout = timeout
        self.presented: str | None = None  # SHA256:... of the key the server showed
        self.presented_md5: str | None = None
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"shim-link-{host}:{port}")
        self._thread.start()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._session: tuple[asyncssh.SSHWriter[bytes], asyncssh.SSHReader[bytes]] | None = None
        self._lock = threading.Lock()  # one request at a time on the one session
        self._closed = False

    def __repr__(self) -> str:
        return f"<ShimClient {self.username}@{self.host}:{self.port}>"

    def __enter__(self) -> ShimClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the link ---------------------------------------------------------------------------

    def connect(self) -> str:
        """Open the link (if not open) and return the presented host key's SHA256 fingerprint.
        Raises HostKeyMismatch (nothing sent) or SignerError (cannot connect)."""
        with self._lock:
            self._run(self._ensure())
        assert self.presented is not None
        return self.presented

    def host_key(self, fmt: str = "sha256") -> str:
        """The fingerprint of the key the signer actually presented (not what it says)."""
        self.connect()
        value = self.presented if fmt == "sha256" else self.presented_md5
        assert value is not None
        return value

    def close(self) -> None:
        """Close the link. A request in flight in another thread ends with SignerError; an
        operation it started goes on at the signer (ask again under the same key)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(SignerError, TimeoutError, OSError, asyncssh.Error):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        with self._lock:  # the request in flight has seen the connection go
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _ensure(self) -> None:
        if self._session is not None and self._conn is not None:
            return
        seen: list[tuple[str, str]] = []
        try:
            key = asyncssh.read_private_key(self.client_key)
        except (OSError, asyncssh.KeyImportError) as e:
            raise SignerError(f"cannot read the coordinator's SSH key {self.client_key}: "
                              f"{e}") from None
        try:
            conn = await asyncio.wait_for(asyncssh.connect(
                self.host, self.port, username=self.username, client_keys=[key],
                known_hosts=([], [], []), client_factory=lambda: _Pinning(self.pin, seen),
                agent_path=None, config=None, password=None, kbdint_auth=False,
                gss_auth=False, host_based_auth=False, preferred_auth="publickey",
            ), self.timeout)
        except asyncssh.HostKeyNotVerifiable:
            if seen:
                self.presented, self.presented_md5 = seen[-1]
                raise HostKeyMismatch(seen[-1][0] if self.pin.startswith("SHA256:")
                                      else seen[-1][1], self.pin) from None
            raise SignerError(f"{self.host} port {self.port}: host key not verifiable") from None
        except asyncssh.PermissionDenied:
            raise SignerError(f"the signer at {self.host} port {self.port} refused the "
                              "coordinator's key (is it in the shim's authorized_keys?)") from None
        except (OSError, asyncssh.Error, TimeoutError) as e:
            raise SignerError(f"cannot reach the signer at {self.host} port {self.port}: "
                              f"{e or type(e).__name__}") from None
        self.presented, self.presented_md5 = seen[-1]
        try:
            writer, reader, _ = await conn.open_session(subsystem=protocol.SUBSYSTEM,
                                                        encoding=None)
        except (asyncssh.Error, OSError) as e:
            conn.close()
            raise SignerError(f"the signer refused the {protocol.SUBSYSTEM} subsystem: "
                              f"{e}") from None
        self._conn, self._session = conn, (writer, reader)

    async def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
        self._conn, self._session = None, None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._closed:
            coro.close()
            raise SignerError("the signer link is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- requests ---------------------------------------------------------------------------

    def request(self, method: str, params: Mapping[str, Any] | None = None, *,
                key: str | None = None, progress: Progress | None = None) -> Any:
        """Send one request and return its result; progress messages go to `progress`. A lost
        connection is reopened once and the request asked again under the same key."""
        rid = f"c{next(self._ids)}"
        line = protocol.Request(id=rid, key=key or rid, method=method,
                                params=dict(params or {})).to_line()
        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._run(self._exchange(rid, line, progress))
                except _Lost as e:
                    if self._closed:
                        raise SignerError("the signer link was closed during the request; "
                                          "an operation goes on at the signer") from None
                    self._run(self._close())
                    if attempt == 2:
                        raise SignerError(f"lost the link to the signer: {e}") from None
        raise AssertionError("unreachable")

    async def _exchange(self, rid: str, line: bytes, progress: Progress | None) -> Any:
        await self._ensure()
        assert self._session is not None
        writer, reader = self._session
        try:
            writer.write(line)
            while True:
                raw = await reader.readline()
                if not raw:
                    raise _Lost("the signer closed the session")
                reply = protocol.parse_reply(raw)
                if reply["id"] != rid:
                    raise SignerError(f"the signer answered request {reply['id']!r}, "
                                      f"not {rid!r}")
                if "progress" in reply:
                    if progress is not None:
                        p = reply["progress"]
                        progress(int(p["done"]), int(p["total"]), str(p["what"]))
                    continue
                if "queued" in reply:
                    if progress is not None:
                        ahead = int(reply["queued"]["ahead"])
                        progress(0, 0, f"waiting for the HSM: {ahead} ahead in the queue")
                    continue
                if "error" in reply:
                    err = reply["error"]
                    cls = QuorumRefused if err["type"] == "QuorumRefused" else SignerError
                    raise cls(err["message"] if err["type"] in _OFFICER_ERRORS
                              else f"{err['type']}: {err['message']}")
                return reply["result"]
        except (BrokenPipeError, ConnectionError, asyncssh.Error) as e:
            raise _Lost(str(e) or type(e).__name__) from None
        except protocol.ProtocolError as e:
            raise SignerError(f"the signer's answer is not understood: {e}") from None

    # -- the Signer protocol ----------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return dict(self.request("info"))

    def fingerprint(self) -> str:
        return str(self.request("fingerprint")["fingerprint"])

    def inventory(self) -> Inventory:
        r = self.request("inventory")
        keys = tuple(KeyInfo(k["locator"], k["type"]) for k in r["keys"])
        return Inventory(r["repository"], keys)

    def plan_purge(self) -> dict[str, Any]:
        return dict(self.request("plan_purge"))

    def plan_generate(self, keys: Sequence[PolicyKeys], duration: str) -> dict[str, Any]:
        rows = [{"policy": k.policy, "role": k.role, "algorithm": k.algorithm,
                 "lifetime_seconds": k.lifetime_seconds} for k in keys]
        return dict(self.request("plan_generate", {"keys": rows, "duration": duration}))

    def plan_backup(self, date: str) -> dict[str, Any]:
        return dict(self.request("plan_backup", {"date": date}))

    def execute(
        self,
        operation: Mapping[str, Any],
        approvals: Sequence[Approval],
        progress: Progress | None = None,
        *,
        secrets: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        approval_dicts = [a.to_dict() if isinstance(a, Approval) else dict(a) for a in approvals]
        params: dict[str, Any] = {"operation": dict(operation), "approvals": approval_dicts}
        if secrets:
            params["secrets"] = dict(secrets)
        return dict(self.request("execute", params, progress=progress,
                                 key=key or idempotency_key(operation, approval_dicts)))

    def put_input(self, name: str, data: bytes, offset: int, size: int,
                  sha256: str) -> dict[str, Any]:
        return dict(self.request("put_input", {
            "name": name, "offset": offset, "size": size, "sha256": sha256,
            "data": base64.b64encode(data).decode()}))

    def plan_restore(self, name: str, sha256: str) -> dict[str, Any]:
        return dict(self.request("plan_restore", {"file": name, "sha256": sha256}))

    def restore_drill(self, name: str, password: str | None = None,
                      shares: Sequence[str] | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
        """A token-directory backup's drill takes its `password`, a wrap backup's the KSOs'
        `shares` (boxes sealed to `share_key()`): exactly one of the two."""
        params: dict[str, Any] = {"file": name}
        if password is not None:
            params["password"] = password
        if shares is not None:
            params["shares"] = list(shares)
        return dict(self.request("restore_drill", params, progress=progress))

    def plan_kek(self, threshold: int, holders: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        rows = [{"seat": h["seat"], "key": h["key"]} for h in holders]
        return dict(self.request("plan_kek", {"threshold": threshold, "holders": rows}))

    def share_key(self) -> str:
        return str(self.request("share_key")["share_key"])

    def read_output(self, name: str) -> bytes:
        out = bytearray()
        while True:
            r = self.request("read_output", {"name": name, "offset": len(out)})
            out += base64.b64decode(r["data"])
            if len(out) >= r["size"] or not r["data"]:
                return bytes(out)


def idempotency_key(operation: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]]) -> str:
    """The same operation with the same approvals is the same request, from any coordinator
    process: a retry after a crash finds it again."""
    nonces = ",".join(sorted(str(a.get("nonce")) for a in approvals))
    h = hashlib.sha256(json.dumps([operation_digest(operation), nonces]).encode()).hexdigest()
    return f"op-{h[:48]}"


_OFFICER_ERRORS = ("QuorumRefused", "SignerError")


class _Lost(Exception):
    pass


class NoSigner:
    """The signer of a script that declares none: the loader lets no step talk to a signer that
    is not declared, and anything that tries anyway is told why."""

    def __getattr__(self, name: str) -> Any:
        raise Failure(f"the script declares no signer: nothing can ask one for {name!r}")

    def close(self) -> None:
        pass
