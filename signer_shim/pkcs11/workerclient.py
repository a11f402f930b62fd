"""Talking to one worker process: spawn it with the token's environment, send requests, relay
progress, and turn a dead worker into a SignerError instead of a hang.

Resource handling: the worker is our child; `close()` ends its stdin (it exits on EOF), waits
briefly and kills it only if it does not go. Its stderr goes to a log file in the state directory
(or is discarded), so a library's chatter never reaches the protocol stream or the console.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from signer_shim.interface import Progress, SignerError
from signer_shim.pkcs11.softhsm import child_env
from signer_shim.pkcs11.wire import decode, encode

#: One worker of this process opens its token at a time. SoftHSM writes the token object on
#: every login (its flags), and a process initialising or logging in while another one does
#: that was seen to fail (GeneralError) when a pool's workers opened together.
_OPEN_LOCK = threading.Lock()


class WorkerClient:
    def __init__(
        self, module: Path, softhsm2_conf: Path, token_label: str, user_pin: str,
        log_path: Path | None = None, launcher: Sequence[str] = (),
    ) -> None:
        """`launcher`: an argv prefix the worker runs under, e.g. `nsenter` into the mount
        and IPC namespaces of a private opencryptoki (staging/okc.py)."""
        self._lock = threading.Lock()
        self._next_id = 0
        log: IO[bytes] | int = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [*launcher, sys.executable, "-m", "signer_shim.pkcs11.worker",
                 "--module", str(module), "--label", token_label],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                env=child_env(softhsm2_conf),
                # the folder holding signer_shim, not signer_shim/ (where `import pkcs11`
                # would find this package instead of python-pkcs11)
                cwd=str(Path(__file__).resolve().parents[2]),
            )
        finally:
            if not isinstance(log, int):
                log.close()
        try:
            self.call("ping")  # the slow part, Python and python-pkcs11 starting, in parallel
            with _OPEN_LOCK:
                self.call("open", {"pin": user_pin})
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<WorkerClient pid={self.pid}>"

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def call(self, method: str, params: dict[str, Any] | None = None,
             progress: Progress | None = None) -> Any:
        """One request, answered in order; progress messages go to `progress` as they come."""
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            assert self._proc.stdin is not None and self._proc.stdout is not None
            try:
                request = {"id": rid, "method": method, "params": params or {}}
                self._proc.stdin.write(encode(request))
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                raise self._died(method) from None
            deferred: BaseException | None = None  # a progress callback's error, raised at the end
            while True:
                line = self._proc.stdout.readline()
                if not line:
                    raise self._died(method)
                msg = decode(line)
                if msg["id"] != rid:
                    raise SignerError(f"worker answered request {msg['id']}, expected {rid}")
                if "progress" in msg:
                    if progress is not None and deferred is None:
                        p = msg["progress"]
                        try:
                            progress(p["done"], p["total"], p["what"])
                        except Exception as e:  # keep reading: the stream must stay in step
                            deferred = e
                    continue
                if deferred is not None:
                    raise deferred
                if "error" in msg:
                    e = msg["error"]
                    raise SignerError(f"HSM {method} failed: {e['type']}: {e['message']}")
                return msg["result"]

    def _died(self, method: str) -> SignerError:
        try:
            rc = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        how = f"signal {-rc}" if rc is not None and rc < 0 else f"status {rc}"
        return SignerError(f"the HSM worker (pid {self.pid}) ended ({how}) during {method}")

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None and not stream.closed:
                # closing flushes: a worker that died leaves a broken pipe
                with contextlib.suppress(OSError):
                    stream.close()
