"""The signer shim: an asyncssh server offering the `keyrite-shim` subsystem (signer_shim.protocol).

Only public-key authentication against one authorized_keys file is offered (any user name; the
key is the identity); the host key comes from a file and must be the signer's own host key (the
one `info` reports), checked at start-up. Shells, exec requests, other subsystems, PTYs, agent,
X11 and port forwarding are refused. Each session reads request lines and answers them in order.

All HSM calls go through ONE signer, in ONE thread, in the order they arrived (`HsmQueue`): two
clients' requests never interleave at the HSM, and a waiting request is told how many are ahead.
The event loop never blocks on the HSM. A state-changing request (`execute`) must carry a quorum
that verifies against the shim's own authority file (signer_shim.authority), is journaled by
idempotency key (signer_shim.request_journal) before it joins the queue, and runs to its end even if
its client goes away. `READY=1` is sent to `$NOTIFY_SOCKET` (sd_notify, no library) once the
server listens.

Configuration (`shim.toml`), read strictly; relative paths are taken from the file's directory:

    [shim]
    listen = "127.0.0.1"
    port = 2222                       # 0: any free port (reported on stdout)
    host_key = "state/ssh_host_ed25519_key"
    authorized_keys = "authorized_keys"
    signer_config = "signer.toml"     # the signer config (either backend, see below)
    authority = "authority.toml"      # officers and quorum rules (signer_shim.authority)

The signer config picks the backend (signer_shim.backends.load_signer_config): PKCS#11
(`Pkcs11Signer`) without `[signer] backend`, OpenDNSSEC (`OdsSigner`) with `backend =
"opendnssec"`. Either way the request journal is `requests.jsonl` in that config's state_dir.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from ceremony.approval import Approval
from ceremony.digests import canonical_json, operation_digest
from keyrite.budget import RefusalBudget
from keyrite.sdnotify import sd_notify
from signer_shim import protocol
from signer_shim.authority import Authority, QuorumRefused, check_quorum
from signer_shim.backends import load_signer_config, signer_for
from signer_shim.config import ConfigError, SignerConfig, read_file, read_sections
from signer_shim.hostkey import host_key_fingerprint
from signer_shim.interface import PolicyKeys, Signer, SignerError
from signer_shim.opendnssec.ods_config import OdsConfig
from signer_shim.planning import PlanRefused
from signer_shim.request_journal import RequestJournal

log = logging.getLogger("signer_shim.server")

_KEYS = ("listen", "port", "host_key", "authorized_keys", "signer_config", "authority")
_PATHS = ("host_key", "authorized_keys", "signer_config", "authority")
PROGRESS_INTERVAL = 0.1  # seconds between progress messages of one operation (the last is sent)
#: Sessions one SSH connection may have open at once, and all connections together: each session
#: has at most one request in the HSM queue, so these bound the queue (and a client that opens
#: sessions without end is refused more, not served less: the others keep theirs).
MAX_SESSIONS_PER_CONNECTION = 4
MAX_SESSIONS = 32
#: Bytes of answers a session may have waiting to be sent: past it the session stops reading
#: requests until its client reads (a client that never reads holds only its own session), and
#: queue and progress notices, which are advice, are dropped for it.
OUTPUT_BUFFER = 256 << 10
#: Bytes a client may send on a session before the shim has taken them (SSH's channel window;
#: asyncssh's 2 MiB let a client that writes without reading grow the shim by tens of MiB, what
#: the flood test measured); a put_input line is 44 KiB at most.
SSH_WINDOW = 256 << 10
#: Refused lines logged per session; the rest are counted, and the count logged at its end.
REFUSAL_LOGS = 20
#: `execute` requests refused for their quorum (each journaled, fsync'd) per session in a window
#: of seconds; past them the session's executes are refused unread until the window ends, and
#: then one journal entry (key "*") counts them.
REFUSED_EXECUTES = 20
REFUSED_EXECUTES_WINDOW = 10.0
T = TypeVar("T")
Send = Callable[[bytes], None]


@dataclass(frozen=True)
class ShimConfig:
    listen: str
    port: int
    host_key: Path
    authorized_keys: Path
    signer_config: Path
    authority: Path

    @classmethod
    def from_toml(cls, text: str, source: str, base: Path) -> ShimConfig:
        return cls(**read_sections(text, source, {"shim": _KEYS}, paths=_PATHS, base=base,
                                   ports=("port",)))

    @classmethod
    def load(cls, path: Path) -> ShimConfig:
        return cls.from_toml(*read_file(path))


@dataclass(frozen=True)
class Loaded:
    """Everything the server needs, checked before anything listens."""

    config: ShimConfig
    signer_config: SignerConfig | OdsConfig  # whichever backend the signer config names
    host_key: asyncssh.SSHKey
    authorized_keys: asyncssh.SSHAuthorizedKeys
    authority: Authority


def load(path: Path) -> Loaded:
    """Read and check the shim config, the signer config and both key files (ConfigError names
    the file and the key at fault)."""
    cfg = ShimConfig.load(path)
    signer_config = load_signer_config(cfg.signer_config)
    try:
        host_key = asyncssh.read_private_key(cfg.host_key)
    except (OSError, asyncssh.KeyImportError, ValueError) as e:
        raise ConfigError(f"{path}: shim.host_key {cfg.host_key}: {e}") from None
    try:
        ours = host_key_fingerprint(cfg.host_key)
        signers = host_key_fingerprint(signer_config.host_key_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: shim.host_key: cannot compare with the signer's "
                          f"signer.host_key_path: {e}") from None
    if ours != signers:
        raise ConfigError(f"{path}: shim.host_key is not the signer's host key "
                          f"(signer.host_key_path in {cfg.signer_config}): info would lie")
    try:
        authorized = asyncssh.read_authorized_keys(cfg.authorized_keys)
    except (OSError, asyncssh.KeyImportError, ValueError) as e:
        raise ConfigError(f"{path}: shim.authorized_keys {cfg.authorized_keys}: {e}") from None
    return Loaded(cfg, signer_config, host_key, authorized, Authority.load(cfg.authority))


class _Auth(asyncssh.SSHServer):
    """Public keys only; everything but a session is refused by asyncssh's defaults. Keeps
    `live` up to date, so stopping can close the connections still open."""

    def __init__(self, live: set[asyncssh.SSHServerConnection]) -> None:
        self._live = live
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._live.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._live.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False


class HsmQueue:
    """One line for every HSM call: first come, first served, one at a time, in one thread.

    A job that has reached the HSM is never abandoned half-way: if its caller is cancelled, the
    job still runs to its end and only then lets the next one in."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsm")
        self._line: list[object] = []
        self._moved = asyncio.Event()

    def __len__(self) -> int:
        return len(self._line)

    async def run(self, job: Callable[[], T], on_wait: Callable[[int], None] | None = None) -> T:
        ticket = object()
        self._line.append(ticket)
        try:
            told = None
            while self._line[0] is not ticket:
                ahead = self._line.index(ticket)
                if on_wait is not None and ahead != told:
                    on_wait(ahead)
                    told = ahead
                moved = self._moved
                await moved.wait()
            fut = asyncio.get_running_loop().run_in_executor(self._executor, job)
        except BaseException:
            self._release(ticket)
            raise
        fut.add_done_callback(lambda _: self._release(ticket))
        return await asyncio.shield(fut)

    def _release(self, ticket: object) -> None:
        if ticket in self._line:
            self._line.remove(ticket)
            self._moved.set()
            self._moved = asyncio.Event()

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class _Conflict(Exception):
    pass


class Shim:
    """One signer, one queue, one authority, many sessions."""

    def __init__(self, signer: Signer, authority: Authority | None = None,
                 journal: RequestJournal | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.authority = authority
        self.journal = journal
        self.clock = clock
        self.queue = HsmQueue()
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.running: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._listeners: dict[str, list[tuple[str, Send]]] = {}
        self.sessions: dict[object, int] = {}  # connection -> sessions open on it

    async def call(self, req: protocol.Request, send: Send | None = None,
                   session: _Refusals | None = None) -> Any:
        if req.method == "execute":
            return await self._execute(req, send, session)

        def waiting(ahead: int) -> None:
            if send is not None:
                _safe(send, protocol.queued(req.id, ahead))

        return await self.queue.run(partial(self._do, req), waiting)

    def _do(self, req: protocol.Request) -> Any:
        s, p = self.signer, req.params
        if req.method == "info":
            return s.info()
        if req.method == "fingerprint":
            return {"fingerprint": s.fingerprint()}
        if req.method == "inventory":
            return protocol.inventory_result(s.inventory())
        if req.method == "plan_purge":
            return s.plan_purge()
        if req.method == "plan_generate":
            return s.plan_generate(_policy_keys(p["keys"]), p["duration"])
        if req.method == "plan_backup":
            return s.plan_backup(p["date"])
        if req.method == "read_output":
            size, chunk = s.read_output_chunk(p["name"], p["offset"], protocol.OUTPUT_CHUNK)
            return {"name": p["name"], "size": size, "offset": p["offset"],
                    "data": base64.b64encode(chunk).decode()}
        if req.method == "put_input":
            return s.put_input(p["name"], base64.b64decode(p["data"]), p["offset"], p["size"],
                               p["sha256"])
        if req.method == "plan_restore":
            return s.plan_restore(p["file"], p["sha256"])
        if req.method == "restore_drill":
            return s.restore_drill(p["file"], p.get("password"), p.get("shares"))
        if req.method == "plan_kek":
            return s.plan_kek(p["threshold"], p["holders"])
        if req.method == "share_key":
            return {"share_key": s.share_key()}
        raise AssertionError(f"method {req.method} passed parsing but has no handler")

    async def _execute(self, req: protocol.Request, send: Send | None,
                       session: _Refusals | None = None) -> dict[str, Any]:
        if self.authority is None or self.journal is None:
            raise SignerError("this shim has no authority file: it runs no operation")
        if session is not None:
            self.journal_unread(session)
        op, approvals = req.params["operation"], req.params["approvals"]
        secrets = dict(req.params.get("secrets", {}))
        request = hashlib.sha256(canonical_json({"operation": op, "approvals": approvals}))
        request_id = request.hexdigest()
        digest = operation_digest(op)
        state = self.journal.requests.get(req.key)
        if state is not None:
            if state.request != request_id:
                raise _Conflict(f"idempotency key {req.key!r} was used for a different request")
            if state.finished:
                log.info("request %r: %s already finished, answering its recorded result",
                         req.id, req.key)
                assert state.result is not None
                return state.result
        else:
            if session is not None and session.executes_exhausted():
                session.refuse_unread()
                raise QuorumRefused(
                    f"more than {REFUSED_EXECUTES} requests refused on this session in "
                    f"{REFUSED_EXECUTES_WINDOW:g} s: refused unread; wait, then ask again")
            try:
                verdict = check_quorum(self.authority, op, approvals, now=self.clock(),
                                       used_nonces=self.journal.nonces, request_key=req.key)
            except QuorumRefused as e:
                log.info("request %r key %r refused: %s", req.id, req.key, e)
                self.journal.refused(req.key, str(e), digest)
                if session is not None:
                    session.spend_execute()
                raise
            self.journal.received(req.key, method="execute", request=request_id,
                                  op=str(op["op"]), digest=digest, step=verdict.step,
                                  nonces=verdict.nonces, approvers=verdict.approvers)
            log.info("request %r key %r: %s approved by %s", req.id, req.key, op["op"],
                     ", ".join(verdict.approvers))
        listeners = self._listeners.setdefault(req.key, [])
        me = (req.id, send or (lambda _: None))
        listeners.append(me)
        task = self.running.get(req.key)
        if task is None:
            task = asyncio.create_task(self._operation(req.key, op, approvals, secrets))
            self.running[req.key] = task
            task.add_done_callback(lambda _t, k=req.key: self.running.pop(k, None))
        try:
            return await asyncio.shield(task)
        finally:
            listeners.remove(me)
            if not listeners:
                self._listeners.pop(req.key, None)

    async def _operation(self, key: str, op: dict[str, Any], approvals: list[dict[str, Any]],
                         secrets: dict[str, Any]) -> dict[str, Any]:
        """The operation itself: once here, it runs to its end whoever is still listening."""
        assert self.journal is not None
        journal = self.journal
        loop = asyncio.get_running_loop()

        def tell(make: Callable[[str], bytes]) -> None:
            for rid, send in list(self._listeners.get(key, ())):
                _safe(send, make(rid))

        last = [0.0]

        def progress(done: int, total: int, what: str) -> None:
            now = time.monotonic()  # at most ~10 messages a second: the HSM's time is not ours
            if done < total and now - last[0] < PROGRESS_INTERVAL:
                return
            last[0] = now
            loop.call_soon_threadsafe(tell, lambda rid: protocol.progress(rid, done, total, what))

        def work() -> dict[str, Any]:
            journal.started(key)
            try:
                result = self.signer.execute(op, [Approval.from_dict(a) for a in approvals],
                                             progress, secrets=secrets)
            except Exception as e:
                journal.failed(key, str(e))
                raise
            journal.finished(key, result)
            return result

        return await self.queue.run(work, lambda n: tell(lambda rid: protocol.queued(rid, n)))

    def journal_unread(self, session: _Refusals, *, ended: bool = False) -> None:
        """One journal entry for the executes `session` had refused unread in a window that has
        ended (or in the session, once it ends)."""
        n = session.closed_unread(ended=ended)
        if n and self.journal is not None:
            self.journal.refused("*", f"{n} more execute requests on one session refused unread "
                                 f"(over {REFUSED_EXECUTES} refused in "
                                 f"{REFUSED_EXECUTES_WINDOW:g} s)", None)

    async def answer(self, line: bytes, send: Send | None = None,
                     refusals: _Refusals | None = None) -> bytes:
        """The final answer to `line`; progress and queue notices go to `send` on the way.
        `refusals` counts the session's refused lines (logged up to REFUSAL_LOGS)."""
        try:
            req = protocol.parse_request(line)
        except protocol.ProtocolError as e:
            if refusals is None or refusals.one_more():
                log.info("refused request %r: %s %s", e.id, e.type, e)
            return protocol.error(e.id, e.type, str(e))
        log.info("request %r key %r: %s", req.id, req.key, req.method)
        try:
            return protocol.result(req.id, await self.call(req, send, refusals))
        except QuorumRefused as e:
            return protocol.error(req.id, "QuorumRefused", str(e))
        except _Conflict as e:
            return protocol.error(req.id, "IdempotencyConflict", str(e))
        except PlanRefused as e:  # the request asks too much: nothing was listed or made
            log.info("request %r: BadRequest %s", req.id, e)
            return protocol.error(req.id, "BadRequest", str(e))
        except SignerError as e:
            log.info("request %r: SignerError %s", req.id, e)
            return protocol.error(req.id, "SignerError", str(e))
        except Exception:
            log.exception("request %s (%s) failed", req.id, req.method)
            return protocol.error(req.id, "Internal", "internal error in the shim (see its log)")

    async def drain(self) -> None:
        """Let running operations finish (stopping never cuts one short)."""
        if self.running:
            await asyncio.gather(*self.running.values(), return_exceptions=True)


    async def session(self, process: asyncssh.SSHServerProcess) -> None:
        try:
            if process.subsystem != protocol.SUBSYSTEM:
                what = (f"subsystem {process.subsystem!r}" if process.subsystem
                        else "exec" if process.command is not None else "a shell")
                log.info("refused %s from %s", what, process.get_extra_info("peername"))
                process.stderr.write(f"keyrite-shim: {what} is refused; open the "
                                     f"'{protocol.SUBSYSTEM}' subsystem (ssh -s)\n".encode())
                process.exit(1)
                return
            peer = process.get_extra_info("peername")
            user = process.get_extra_info("username")
            conn = process.channel.get_connection()
            busy = self._busy(conn)
            if busy:
                log.warning("refused a session from %s as %r: %s", peer, user, busy)
                process.stdout.write(protocol.error(None, "Busy", busy))
                process.exit(1)
                return
            log.info("session from %s as %r", peer, user)
            self.sessions[conn] = self.sessions.get(conn, 0) + 1
            refusals = _Refusals()
            try:
                await self._serve_lines(process, refusals)
            finally:
                self.sessions[conn] -= 1
                if not self.sessions[conn]:
                    del self.sessions[conn]
                if refusals.unlogged:
                    log.info("session from %s: %d more refused requests were not logged",
                             peer, refusals.unlogged)
                self.journal_unread(refusals, ended=True)
            process.exit(0)
        except (asyncssh.BreakReceived, asyncssh.SignalReceived, asyncssh.TerminalSizeChanged,
                BrokenPipeError, ConnectionError):
            process.exit(1)


    def _busy(self, conn: object) -> str | None:
        """Why a new session on `conn` is refused, if it is."""
        if self.sessions.get(conn, 0) >= MAX_SESSIONS_PER_CONNECTION:
            return (f"this connection has {MAX_SESSIONS_PER_CONNECTION} sessions open already "
                    "(the most one connection may)")
        if sum(self.sessions.values()) >= MAX_SESSIONS:
            return f"the shim has {MAX_SESSIONS} sessions open already (the most it serves)"
        return None

    async def _serve_lines(self, process: asyncssh.SSHServerProcess,
                           refusals: _Refusals | None = None) -> None:
        """Answer each line in order until end of input. A line longer than MAX_LINE is not
        buffered: it is dropped up to its newline and answered with one error. At most
        OUTPUT_BUFFER bytes of answers wait for the client: then no more lines are read (SSH's
        flow control holds the client back), and notices are dropped."""
        channel = process.channel

        def notice(data: bytes) -> None:  # queue and progress notices: advice, dropped if full
            if channel.get_write_buffer_size() < OUTPUT_BUFFER:
                process.stdout.write(data)

        async def reply(data: bytes) -> None:
            process.stdout.write(data)
            if channel.get_write_buffer_size() >= OUTPUT_BUFFER:
                await process.stdout.drain()
            await asyncio.sleep(0)  # a chunk of 64 KiB may hold thousands of lines: take turns

        buf = b""
        discarding = False
        while True:
            chunk = await process.stdin.read(protocol.MAX_LINE)
            if not chunk:  # end of input: answer a last unterminated line, if any
                if buf.strip() and not discarding:
                    await reply(await self.answer(buf, notice, refusals))
                return
            buf += chunk
            while (nl := buf.find(b"\n")) >= 0:
                line, buf = buf[: nl + 1], buf[nl + 1 :]
                if discarding:
                    discarding = False
                    await reply(protocol.error(
                        None, "BadRequest", f"line longer than {protocol.MAX_LINE} bytes"))
                elif line.strip():
                    await reply(await self.answer(line, notice, refusals))
            if discarding or len(buf) > protocol.MAX_LINE:
                buf, discarding = b"", True


class _Refusals:
    """A session's refused lines (the first REFUSAL_LOGS are logged, the rest counted) and its
    executes refused for their quorum (REFUSED_EXECUTES journaled per window, the rest refused
    unread and counted: `keyrite.budget`, as the coordinator's consoles)."""

    def __init__(self, limit: int = REFUSAL_LOGS, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.limit, self.count = limit, 0
        self.clock = clock
        self.executes = RefusalBudget(REFUSED_EXECUTES, REFUSED_EXECUTES_WINDOW)

    def executes_exhausted(self) -> bool:
        return self.executes.exhausted(_SESSION, self.clock())

    def spend_execute(self) -> None:
        self.executes.spend(_SESSION, self.clock())

    def refuse_unread(self) -> None:
        self.executes.refuse_unread(_SESSION)

    def closed_unread(self, *, ended: bool = False) -> int:
        """The executes refused unread in a window now over (all of them, once `ended`)."""
        if ended:
            return self.executes.take_unread(_SESSION)
        return self.executes.closed(self.clock()).get(_SESSION, 0)

    def one_more(self) -> bool:
        """Count one; True while it is to be logged."""
        self.count += 1
        return self.count <= self.limit

    @property
    def unlogged(self) -> int:
        return max(0, self.count - self.limit)


_SESSION = "session"  # a _Refusals' one key in its budget


def _safe(send: Send, line: bytes) -> None:
    """Messages to a client that has gone are dropped; the work goes on."""
    try:
        send(line)
    except Exception as e:  # a closed channel: BrokenPipeError and asyncssh's own errors
        log.debug("dropped a message to a closed session: %s", e)


def _policy_keys(rows: list[dict[str, Any]]) -> list[PolicyKeys]:
    try:
        keys = [PolicyKeys(str(r["policy"]), str(r["role"]), str(r["algorithm"]),
                           int(r["lifetime_seconds"])) for r in rows]
    except (KeyError, TypeError, ValueError) as e:
        raise SignerError(f"params.keys: each key needs policy, role, algorithm and "
                          f"lifetime_seconds ({e!r})") from None
    if any(set(r) != {"policy", "role", "algorithm", "lifetime_seconds"} for r in rows):
        raise SignerError("params.keys: each key has exactly policy, role, algorithm and "
                          "lifetime_seconds")
    return keys


async def start(loaded: Loaded, shim: Shim) -> asyncssh.SSHAcceptor:
    cfg = loaded.config
    return await asyncssh.listen(
        cfg.listen, cfg.port,
        server_factory=lambda: _Auth(shim.connections),
        server_host_keys=[loaded.host_key],
        authorized_client_keys=loaded.authorized_keys,
        process_factory=shim.session,
        encoding=None,
        allow_pty=False,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_scp=False,
        line_editor=False,
        window=SSH_WINDOW,
        sftp_factory=None,
    )


def bound_port(acceptor: asyncssh.SSHAcceptor) -> int:
    return int(acceptor.sockets[0].getsockname()[1])


async def serve(loaded: Loaded, stop: asyncio.Event, announce: Any = print) -> None:
    """Listen, announce the address, notify READY=1, serve until `stop` is set, then close."""
    signer = signer_for(loaded.signer_config)  # the backend the signer config names
    journal = RequestJournal(loaded.signer_config.state_dir / "requests.jsonl")
    journal.claim()  # one shim per signer: wait for one still finishing its operation
    journal.booted()
    shim = Shim(signer, loaded.authority, journal)
    try:
        acceptor = await start(loaded, shim)
        try:
            announce(f"listening on {loaded.config.listen} port {bound_port(acceptor)}")
            sd_notify("READY=1")
            await stop.wait()
            sd_notify("STOPPING=1")
        finally:
            acceptor.close()  # stops listening; open connections are closed here, not by it
            for conn in list(shim.connections):
                conn.close()
            for conn in list(shim.connections):
                await conn.wait_closed()
            await acceptor.wait_closed()
            await shim.drain()
    finally:
        await asyncio.get_running_loop().run_in_executor(None, signer.close)
        shim.queue.close()
