"""The service's background loops stop even when a cancel is lost on the way.

Python 3.11's asyncio.wait_for (psycopg_pool waits for a connection with it, procrastinate for notifications) returns
the awaited result instead of raising when the cancel arrives just as the result does (gh-86296, fixed in 3.12). The
loop that got the result goes on, and a stop() that cancelled it once waited for it forever: the service's shutdown
(and one test in about twenty) hung. Each loop below loses its first cancel that way."""

from __future__ import annotations

import asyncio

from graph.context import Context
from service.worker import RunWorkers
from tools.background import stop_task
from tools.database import open_database
from tools.notify.config import parse_notify_config
from tools.notify.outbox import OutboxDispatcher

WAIT = 30.0  # only a hang detector: a stop that works ends in about a second


def losing_first_cancel(result=None):
    """A coroutine function that waits until cancelled and, the first time only, returns `result` instead of raising
    (what 3.11's wait_for does when the awaited answer comes with the cancel)."""
    lost = []

    async def wait(*args, **kwargs):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost:
                raise
            lost.append(True)
        return result

    return wait


async def ended(coro) -> bool:
    """Whether `coro` ends within WAIT seconds (left running otherwise, so that a hang fails instead of blocking)."""
    done, _ = await asyncio.wait({asyncio.ensure_future(coro)}, timeout=WAIT)
    return bool(done)


async def test_stop_task_cancels_again_a_task_that_lost_its_cancel():
    wait = losing_first_cancel()

    async def loop_until_cancelled():
        while True:
            await wait()

    task = asyncio.create_task(loop_until_cancelled())
    await asyncio.sleep(0)
    assert await ended(stop_task(task))
    assert task.cancelled()


async def test_stop_task_leaves_the_exception_a_task_ended_with_on_it_instead_of_raising_it():
    async def fails_when_cancelled():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("clean-up failed") from None

    task = asyncio.create_task(fails_when_cancelled())
    await asyncio.sleep(0)
    await stop_task(task)  # the task ends at the first cancel: no hang to guard against; raising fails the test
    assert isinstance(task.exception(), RuntimeError)


async def test_the_notification_dispatcher_stops_when_a_cancel_is_lost():
    config = parse_notify_config({"public_url": "https://copilot.example", "channels": {}, "routes": []})
    dispatcher = OutboxDispatcher(None, config)
    dispatcher.run_once = losing_first_cancel(0)
    dispatcher.start(poll_seconds=0.01)
    await asyncio.sleep(0.05)
    assert await ended(dispatcher.stop())


async def test_the_run_workers_stop_when_a_cancel_is_lost(database_url, tmp_path):
    async with open_database(database_url) as db:
        workers = RunWorkers(db, Context(output_dir=str(tmp_path)))
        workers.sweep = losing_first_cancel(0)
        await workers.start()
        await asyncio.sleep(0.5)
        assert workers.running()
        assert await ended(workers.stop())
        assert not workers.running()
