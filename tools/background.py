"""Stopping the background tasks of the service's event loop."""

from __future__ import annotations

import asyncio

# Python 3.11's asyncio.wait_for returns the awaited result instead of raising when a cancel arrives just as the
# result does (gh-86296, fixed in 3.12); psycopg_pool waits for a connection with it, procrastinate for a
# notification. The task that got the result goes on with its cancel lost, so it is cancelled again when it has not
# ended after this long; a cancelled task's own clean-up (a statement or two on the database) takes milliseconds.
RECANCEL_SECONDS = 2.0


async def stop_task(task: asyncio.Task) -> None:
    """Cancel `task` until it has ended. Its outcome is left on it: cancelled, or the exception it raised."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
    if not task.cancelled():
        task.exception()  # retrieved, so that asyncio does not log it as never retrieved; the caller may read it
