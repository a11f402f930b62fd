"""The ZAP handler: which console may connect, and as whom.

CURVE without a ZAP handler encrypts but admits anyone, so the server binds this handler to
`inproc://zeromq.zap.01` in its own context *before* it binds any console socket. libzmq asks it
about every handshake; it admits a CURVE client whose public key is enrolled and answers the
officer id as User-Id, which the server then reads off every message (`frame.get("User-Id")`).
Everything else (NULL, PLAIN, GSSAPI, an unknown CURVE key, a malformed request) is refused with
status 400 and logged with the mechanism and the key or user name.

A client whose mechanism differs from the server's (NULL or PLAIN against a CURVE server) fails
the ZMTP handshake before ZAP is asked; `watch_handshakes` logs those from a socket monitor.

`decide` is pure (request frames in, reply frames out); `serve_zap` is its trio loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio
import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from coordinator.bus.curve import Enrolment
from coordinator.bus.zmqtrio import TrioSocket

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
log = logging.getLogger("keyrite.bus.zap")

__all__ = ["ZAP_ENDPOINT", "Verdict", "decide", "serve_zap", "watch_handshakes"]


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    mechanism: str
    key: str  # Z85 public key, PLAIN user name, or "" (NULL)
    officer: str  # the User-Id given, "" when refused
    reason: str


def judge(enrolment: Enrolment, mechanism: bytes, credentials: list[bytes]) -> Verdict:
    """Admit only an enrolled CURVE key."""
    mech = mechanism.decode("ascii", "replace")
    if mechanism == b"CURVE":
        if len(credentials) != 1 or len(credentials[0]) != 32:
            return Verdict(False, mech, "", "", "malformed CURVE credentials")
        key = z85.encode(credentials[0]).decode()
        officer = enrolment.officer_for(key)
        if officer is None:
            return Verdict(False, mech, key, "", "CURVE key not enrolled")
        return Verdict(True, mech, key, officer, "OK")
    if mechanism == b"PLAIN":
        user = credentials[0].decode("utf-8", "replace") if credentials else ""
        return Verdict(False, mech, user, "", "PLAIN is not accepted")
    return Verdict(False, mech, "", "", f"{mech or 'no'} mechanism is not accepted")


def decide(enrolment: Enrolment, request: list[bytes]) -> tuple[list[bytes], Verdict]:
    """ZAP request (as read from the ROUTER: routing id, empty, version, request id, domain,
    address, identity, mechanism, credentials...) -> reply frames and the verdict."""
    if len(request) < 8 or request[1] != b"" or request[2] != b"1.0":
        routing = request[:1]
        verdict = Verdict(False, "?", "", "", "malformed ZAP request")
        rid = request[3] if len(request) > 3 else b""
        return routing + [b"", b"1.0", rid, b"400", b"malformed", b"", b""], verdict
    routing, _, _, rid, _domain, _address, _identity, mechanism, *credentials = request
    verdict = judge(enrolment, mechanism, credentials)
    if verdict.admitted:
        status, text, user = b"200", b"OK", verdict.officer.encode()
    else:
        status, text, user = b"400", verdict.reason.encode(), b""
    return [routing, b"", b"1.0", rid, status, text, user, b""], verdict


async def serve_zap(
    ctx: zmq.Context,
    enrolment: Enrolment,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer ZAP requests until cancelled; started (bound) before any console socket binds."""
    sock = TrioSocket(ctx.socket(zmq.ROUTER))
    try:
        sock.zmq.setsockopt(zmq.LINGER, 0)
        sock.zmq.bind(ZAP_ENDPOINT)
        task_status.started()
        while True:
            request = await sock.recv_multipart()
            reply, verdict = decide(enrolment, request)
            address = request[5].decode("utf-8", "replace") if len(request) > 5 else "?"
            if verdict.admitted:
                log.info(
                    "admitted %s (CURVE key %s) from %s", verdict.officer, verdict.key, address
                )
            else:
                log.warning(
                    "refused %s client (key %r) from %s: %s",
                    verdict.mechanism,
                    verdict.key,
                    address,
                    verdict.reason,
                )
            await sock.send_multipart(reply)
    finally:
        sock.close()


_FAILURES = {
    # A NULL or PLAIN client against a CURVE server ends here (seen: errno 32, EPIPE): the
    # mechanisms differ in the ZMTP greeting and the peer hangs up before ZAP is asked.
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed (not a CURVE client?)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed (protocol error or mechanism mismatch)",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused by the ZAP handler",
}


async def watch_handshakes(sock: zmq.Socket, name: str) -> None:
    """Log every failed handshake on `sock`, so that a refused NULL or PLAIN client (which ZAP
    never hears of) leaves a trace too. The monitor gives no key or mechanism for those."""
    monitor = TrioSocket(sock.get_monitor_socket(sum(_FAILURES)))
    try:
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            endpoint = event["endpoint"]
            endpoint = endpoint.decode() if isinstance(endpoint, bytes) else endpoint
            what = _FAILURES.get(event["event"], str(event["event"]))
            log.warning("%s %s: refused a client: %s (%s)", name, endpoint, what, event["value"])
    finally:
        sock.disable_monitor()
        monitor.close()
