"""Log listeners are woken by notify and forgotten when they leave."""

import asyncio

from gallery_builder.log_events import LogEvents


def test_notify_wakes_every_listener_of_that_build_only():
    async def scenario():
        events = LogEvents()
        a, b, other = events.subscribe("x"), events.subscribe("x"), events.subscribe("y")
        events.notify("x")
        assert a.is_set() and b.is_set()
        assert not other.is_set()
        events.unsubscribe("x", a)
        a.clear()
        b.clear()
        events.notify("x")
        assert b.is_set() and not a.is_set()  # a has left
        events.unsubscribe("x", b)
        events.unsubscribe("x", b)  # leaving twice is harmless
        events.notify("x")  # no listeners: nothing happens

    asyncio.run(scenario())
