"""The signer shim: an asyncssh server offering the `keyrite-shim` subsystem (signer_shim.protocol).

Only public-key authentication against one authorized_keys file is offered (any user name; the
key is the identity); the host key comes from a file and must be the signer's own host key (the
one `info` reports), checked at start-up. Shells, exec requests, other subsystems, PTYs, agent,
X11 and port forwarding are refused. Each session reads request lines and answers them in order.

All HSM calls go through ONE `LocalSigner`, run in a thread (the event loop never blocks), behind
one asyncio.Lock: two clients' requests never interleave at the signer. `READY=1` is sent to
`$NOTIFY_SOCKET` (sd_notify, no library) once the server listens.

Configuration (`shim.toml`), read strictly; relative paths are taken from the file's directory:

    [shim]
    listen = "127.0.0.1"
    port = 2222                       # 0: any free port (reported on stdout)
    host_key = "state/ssh_host_ed25519_key"
    authorized_keys = "authorized_keys"
    signer_config = "signer.toml"     # the SignerConfig
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from signer_shim import protocol
from signer_shim.config import ConfigError, SignerConfig, read_file, read_sections
from signer_shim.hostkey import host_key_fingerprint
from signer_shim.interface import SignerError
from signer_shim.local import LocalSigner

log = logging.getLogger("signer_shim.server")

_KEYS = ("listen", "port", "host_key", "authorized_keys", "signer_config")
_PATHS = ("host_key", "authorized_keys", "signer_config")


@dataclass(frozen=True)
class ShimConfig:
    listen: str
    port: int
    host_key: Path
    authorized_keys: Path
    signer_config: Path

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
    signer_config: SignerConfig
    host_key: asyncssh.SSHKey
    authorized_keys: asyncssh.SSHAuthorizedKeys


def load(path: Path) -> Loaded:
    """Read and check the shim config, the signer config and both key files (ConfigError names
    the file and the key at fault)."""
    cfg = ShimConfig.load(path)
    signer_config = SignerConfig.load(cfg.signer_config)
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
    return Loaded(cfg, signer_config, host_key, authorized)


def sd_notify(message: str = "READY=1") -> bool:
    """Send `message` to $NOTIFY_SOCKET if set (leading @: abstract namespace); True if sent."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    target = "\0" + addr[1:] if addr.startswith("@") else addr
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(target)
            s.sendall(message.encode())
    except OSError as e:  # the service manager's problem, not a reason to stop serving
        log.warning("sd_notify %s to %s failed: %s", message, addr, e)
        return False
    return True


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


class Shim:
    """One signer, one lock, many sessions."""

    def __init__(self, signer: LocalSigner) -> None:
        self.signer = signer
        self._lock = asyncio.Lock()
        self.connections: set[asyncssh.SSHServerConnection] = set()

    async def call(self, req: protocol.Request) -> Any:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(None, self._do, req)

    def _do(self, req: protocol.Request) -> Any:
        s = self.signer
        if req.method == "info":
            return s.info()
        if req.method == "fingerprint":
            return {"fingerprint": s.fingerprint()}
        if req.method == "inventory":
            return protocol.inventory_result(s.inventory())
        raise AssertionError(f"method {req.method} passed parsing but has no handler")

    async def answer(self, line: bytes) -> bytes:
        try:
            req = protocol.parse_request(line)
        except protocol.ProtocolError as e:
            log.info("refused request %r: %s %s", e.id, e.type, e)
            return protocol.error(e.id, e.type, str(e))
        log.info("request %r key %r: %s", req.id, req.key, req.method)
        try:
            return protocol.result(req.id, await self.call(req))
        except SignerError as e:
            log.info("request %r: SignerError %s", req.id, e)
            return protocol.error(req.id, "SignerError", str(e))
        except Exception:
            log.exception("request %s (%s) failed", req.id, req.method)
            return protocol.error(req.id, "Internal", "internal error in the shim (see its log)")

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
            log.info("session from %s as %r", peer, user)
            await self._serve_lines(process)
            process.exit(0)
        except (asyncssh.BreakReceived, asyncssh.SignalReceived, asyncssh.TerminalSizeChanged,
                BrokenPipeError, ConnectionError):
            process.exit(1)


    async def _serve_lines(self, process: asyncssh.SSHServerProcess) -> None:
        """Answer each line in order until end of input. A line longer than MAX_LINE is not
        buffered: it is dropped up to its newline and answered with one error."""
        buf = b""
        discarding = False
        while True:
            chunk = await process.stdin.read(protocol.MAX_LINE)
            if not chunk:  # end of input: answer a last unterminated line, if any
                if buf.strip() and not discarding:
                    process.stdout.write(await self.answer(buf))
                return
            buf += chunk
            while (nl := buf.find(b"\n")) >= 0:
                line, buf = buf[: nl + 1], buf[nl + 1 :]
                if discarding:
                    discarding = False
                    process.stdout.write(protocol.error(
                        None, "BadRequest", f"line longer than {protocol.MAX_LINE} bytes"))
                elif line.strip():
                    process.stdout.write(await self.answer(line))
            if discarding or len(buf) > protocol.MAX_LINE:
                buf, discarding = b"", True


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
        sftp_factory=None,
    )


def bound_port(acceptor: asyncssh.SSHAcceptor) -> int:
    return int(acceptor.sockets[0].getsockname()[1])


async def serve(loaded: Loaded, stop: asyncio.Event, announce: Any = print) -> None:
    """Listen, announce the address, notify READY=1, serve until `stop` is set, then close."""
    signer = LocalSigner(loaded.signer_config)
    shim = Shim(signer)
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
    finally:
        await asyncio.get_running_loop().run_in_executor(None, signer.close)
