"""The shim's one HSM queue (signer_shim.server.HsmQueue), in process: first come first served,
one job at a time, waiting callers told their place, and a job that has started is never
abandoned when its caller is cancelled."""

from __future__ import annotations

import asyncio
import threading
import time

from signer_shim.server import HsmQueue

WAIT = 30


def test_jobs_run_one_at_a_time_in_order_and_waiters_see_their_place() -> None:
    q = HsmQueue()
    gate = threading.Event()
    order: list[int] = []
    inside = [0, 0]  # now, most
    lock = threading.Lock()
    told: dict[int, list[int]] = {i: [] for i in range(4)}

    def job(i: int) -> int:
        with lock:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
        if i == 0:
            assert gate.wait(WAIT)
        time.sleep(0.01)
        order.append(i)
        with lock:
            inside[0] -= 1
        return i * 10

    async def scenario() -> list[int]:
        first = asyncio.ensure_future(q.run(lambda: job(0), told[0].append))
        await asyncio.sleep(0.05)
        rest = []
        for i in (1, 2, 3):
            rest.append(asyncio.ensure_future(q.run(lambda i=i: job(i), told[i].append)))
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(first, *rest))

    assert asyncio.run(scenario()) == [0, 10, 20, 30]
    q.close()
    assert order == [0, 1, 2, 3] and inside[1] == 1
    assert told[0] == [] and told[1] == [1] and told[2] == [2, 1] and told[3] == [3, 2, 1]


def test_a_cancelled_caller_does_not_cut_its_running_job_short() -> None:
    q = HsmQueue()
    gate = threading.Event()
    done: list[str] = []

    def slow() -> str:
        assert gate.wait(WAIT)
        done.append("slow")
        return "slow"

    def after() -> str:
        done.append("after")
        return "after"

    async def scenario() -> str:
        running = asyncio.ensure_future(q.run(slow))
        await asyncio.sleep(0.05)
        running.cancel()  # the client went away
        nxt = asyncio.ensure_future(q.run(after))
        await asyncio.sleep(0.05)
        assert done == [], "the next job started while the first was still running"
        gate.set()
        return await nxt

    assert asyncio.run(scenario()) == "after"
    q.close()
    assert done == ["slow", "after"]


def test_a_caller_cancelled_while_waiting_leaves_the_line() -> None:
    q = HsmQueue()
    gate = threading.Event()

    async def scenario() -> int:
        first = asyncio.ensure_future(q.run(lambda: gate.wait(WAIT)))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(q.run(lambda: "never"))
        await asyncio.sleep(0.05)
        assert len(q) == 2
        waiting.cancel()
        await asyncio.sleep(0)
        n = len(q)
        gate.set()
        await first
        return n

    assert asyncio.run(scenario()) == 1
    q.close()
