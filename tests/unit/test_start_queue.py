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


def test_a_hold_lets_no_new_start_begin_until_it_ends_then_fills_every_free_slot():
    async def scenario():
        queue = StartQueue(2)
        began: list[str] = []

        async def start(key):
            async with queue.turn(key):
                began.append(key)
                await asyncio.sleep(1)

        queue.hold(0.2)
        tasks = [asyncio.ensure_future(start(k)) for k in "abc"]
        await asyncio.sleep(0.1)
        assert began == [] and [queue.position(k) for k in "abc"] == [1, 2, 3]
        await asyncio.sleep(0.2)
        assert began == ["a", "b"]  # both free slots, not one
        assert queue.position("c") == 1
        for task in tasks:
            task.cancel()

    asyncio.run(scenario())


def test_a_start_under_way_goes_on_through_a_hold_and_its_slot_waits_for_the_end():
    async def scenario():
        queue = StartQueue(1)
        began: list[str] = []
        first_done = asyncio.Event()

        async def start(key, seconds):
            async with queue.turn(key):
                began.append(key)
                await asyncio.sleep(seconds)
            if key == "a":
                first_done.set()

        a = asyncio.ensure_future(start("a", 0.05))
        await asyncio.sleep(0.01)
        queue.hold(0.3)
        b = asyncio.ensure_future(start("b", 0))
        await first_done.wait()
        await asyncio.sleep(0.05)
        assert began == ["a"]  # a finished inside the hold; b still waits
        await asyncio.wait_for(b, 1)
        assert began == ["a", "b"]
        await a

    asyncio.run(scenario())


def test_a_longer_hold_wins_and_a_shorter_one_does_not_cut_it():
    async def scenario():
        queue = StartQueue(1)
        loop = asyncio.get_running_loop()
        queue.hold(0.3)
        queue.hold(0.05)  # shorter: the 0.3 s stays
        started = loop.time()
        async with queue.turn("a"):
            waited = loop.time() - started
        assert waited >= 0.25

    asyncio.run(scenario())


def test_unheld_returns_at_once_without_a_hold_and_at_its_end_with_one():
    async def scenario():
        queue = StartQueue(2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await queue.unheld()
        assert loop.time() - started < 0.05
        queue.hold(0.2)
        await queue.unheld()
        assert loop.time() - started >= 0.19

    asyncio.run(scenario())
