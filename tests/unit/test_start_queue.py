"""The start queue: N at a time, in arrival order, each knowing its place."""

from __future__ import annotations

import asyncio

import pytest

from gallery_hub.start_queue import StartQueue


def test_starts_run_n_at_a_time_in_arrival_order():
    async def scenario():
        queue = StartQueue(2)
        order, running, most = [], set(), [0]
        gates = {k: asyncio.Event() for k in "abcde"}

        async def start(key):
            async with queue.turn(key):
                running.add(key)
                most[0] = max(most[0], len(running))
                order.append(key)
                await gates[key].wait()
                running.discard(key)

        tasks = [asyncio.ensure_future(start(k)) for k in "abcde"]
        await asyncio.sleep(0.01)
        assert [queue.position(k) for k in "abcde"] == [0, 0, 1, 2, 3]
        assert queue.waiting() == 3 and queue.busy() == 5
        for key in "abcde":
            gates[key].set()
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        assert order == list("abcde") and most[0] == 2
        assert queue.position("a") is None and queue.busy() == 0

    asyncio.run(scenario())


def test_a_waiter_that_gives_up_leaves_the_line():
    async def scenario():
        queue = StartQueue(1)
        release = asyncio.Event()

        async def hold():
            async with queue.turn("first"):
                await release.wait()

        async def wait(key):
            async with queue.turn(key):
                return key

        holder = asyncio.ensure_future(hold())
        await asyncio.sleep(0)
        quitter = asyncio.ensure_future(wait("quitter"))
        patient = asyncio.ensure_future(wait("patient"))
        await asyncio.sleep(0.01)
        assert queue.position("patient") == 2
        quitter.cancel()
        await asyncio.sleep(0.01)
        assert queue.position("patient") == 1
        release.set()
        assert await patient == "patient"
        await holder
        assert queue.busy() == 0

    asyncio.run(scenario())


def test_an_error_inside_frees_the_slot():
    async def scenario():
        queue = StartQueue(1)

        async def fail():
            async with queue.turn("x"):
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await fail()
        async with queue.turn("y"):
            assert queue.position("y") == 0

    asyncio.run(scenario())
