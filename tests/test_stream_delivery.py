"""The worker's fast path for faust's message delivery (stream/app.py): a coroutine stepped by
hand goes on as a task from where it stopped, cancellation included."""

from __future__ import annotations

import asyncio

import pytest
from mode.utils.locks import Event

from neurogate.stream.app import _Resumed, _waits_on


def test_a_stepped_coroutine_finishes_where_it_waited() -> None:
    async def main() -> None:
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        q.put_nowait(0)
        put = q.put(1)
        blocked_on = put.send(None)  # the queue is full: it waits
        task = asyncio.ensure_future(_Resumed(put, blocked_on))
        await asyncio.sleep(0.01)
        assert not task.done()
        assert await q.get() == 0
        await asyncio.wait_for(task, 1)
        assert q.get_nowait() == 1

    asyncio.run(main())


def test_cancelling_reaches_the_stepped_coroutine() -> None:
    async def main() -> None:
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        q.put_nowait(0)
        put = q.put(1)
        task = asyncio.ensure_future(_Resumed(put, put.send(None)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await q.get() == 0
        await asyncio.sleep(0.01)
        assert q.empty(), "the cancelled put must not land"

    asyncio.run(main())


def test_only_the_flow_event_wait_is_recognised() -> None:
    async def main() -> None:
        flow, other = Event(), Event()
        waiting = flow.wait()
        assert _waits_on(waiting, flow)
        assert not _waits_on(waiting, other)
        sleeping = asyncio.sleep(0)
        assert not _waits_on(sleeping, flow)
        waiting.close()
        sleeping.close()

    asyncio.run(main())
