"""One key generation spread over several worker processes on one token.

Why processes: python-pkcs11 must never be called from two threads of one process (it makes
SoftHSM drop its own locking), and RSA generation is CPU-bound, so a second core needs a second
process with its own PKCS#11 session. Each helper here is a fresh
`python -m signer_shim.pkcs11.worker`; one thread talks to each over its pipes, and only the
calling thread reports progress.

Why the helpers write blind (`check: false`): while several processes write to one SoftHSM2
token, a process's view of the others' objects is unreliable (stale listings, invalid handles;
docs/signer.md), so no helper reads. The caller lists and checks the keys once every helper has
stopped, from a process that did not write.

Why all helpers open their sessions before any writes: SoftHSM writes the token object on every
login, and a process initialising or logging in while another one writes was seen to fail
(`open`: GeneralError); so helpers open one at a time (signer_shim.pkcs11.workerclient) and then
wait for each other.

Why one key per request: the shares stay even (an RSA key's time depends on the primes it
finds), and when one helper fails the others stop after their current key instead of being
killed in the middle of one.

Crash semantics are the caller's: every key carries its planned locator, so a retry after any
failure (a helper killed mid-key included) finds the pairs already made, repairs half pairs and
makes the rest (signer_shim.planning.generation_todo).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from signer_shim.interface import SignerError
from signer_shim.pkcs11.workerclient import WorkerClient

#: Makes one logged-in worker process (a new one on every call).
Spawn = Callable[[], WorkerClient]
#: (keys made so far, keys to make), called in the caller's thread.
CountProgress = Callable[[int, int], None]


def generate(
    spawn: Spawn,
    keys: Sequence[Mapping[str, str]],
    workers: int,
    progress: CountProgress | None = None,
) -> list[str]:
    """Make `keys` ({"locator", "algorithm"}) over min(workers, len(keys)) fresh processes.

    Returns the locators made, in the order they were finished. Any helper's failure (its
    process dying included) stops the others after their current key and is raised as a
    SignerError once all have stopped; an error raised by `progress` stops them too and is
    raised as it is. The helpers are closed before this returns, whatever happened.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    todo = deque({"locator": k["locator"], "algorithm": k["algorithm"]} for k in keys)
    total = len(todo)
    n = min(workers, total)
    events: queue.Queue[tuple[str, int, Any]] = queue.Queue()
    stop = threading.Event()
    take_lock = threading.Lock()
    # No helper writes before all are open: SoftHSM failed logins (GeneralError) made while
    # another process was writing to the token (see the module's docstring).
    opened = threading.Barrier(max(n, 1))

    def take() -> dict[str, str] | None:
        with take_lock:
            return None if stop.is_set() or not todo else todo.popleft()

    def run(i: int) -> None:
        client: WorkerClient | None = None
        try:
            try:
                client = spawn()
            except BaseException:
                opened.abort()
                raise
            opened.wait()
            while (k := take()) is not None:
                client.call("generate", {"keys": [k], "check": False})
                events.put(("made", i, k["locator"]))
        except threading.BrokenBarrierError:
            pass  # another helper did not open: it reports why
        except BaseException as e:  # reported to the caller's thread, which raises it
            stop.set()
            events.put(("failed", i, e))
        finally:
            try:
                if client is not None:
                    client.close()
            finally:
                events.put(("ended", i, None))

    threads = [threading.Thread(target=run, args=(i,), name=f"pool-{i + 1}", daemon=True)
               for i in range(n)]
    made: list[str] = []
    failures: list[tuple[int, BaseException]] = []
    deferred: Exception | None = None
    ended = 0
    try:
        for t in threads:
            t.start()
        while ended < n:
            kind, i, value = events.get()
            if kind == "made":
                made.append(value)
                if progress is not None and deferred is None:
                    try:
                        progress(len(made), total)
                    except Exception as e:  # stop handing out keys, raise once all stopped
                        deferred = e
                        stop.set()
            elif kind == "failed":
                failures.append((i, value))
            else:
                ended += 1
    finally:
        stop.set()  # on an interrupt too: helpers finish their current key and close
        for t in threads:
            t.join()
    if failures:
        i, e = failures[0]
        raise SignerError(f"key generation stopped after {len(made)} of {total} keys: "
                          f"worker {i + 1} of {n}: {e}") from e
    if deferred is not None:
        raise deferred
    return made
