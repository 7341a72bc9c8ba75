"""Admission instead of failure: at most N servers start at once, the rest wait in line.

Starting a server is CPU-bound (a container, then Python imports); twenty at once on two
cores all finish late and some time out. Here they start `concurrency` at a time, in the
order they asked, and each one knows its place in line (the progress page shows it).
A hold (`hold`) lets no new start begin for a moment, e.g. while a claimed warm server
renders its first page: starts under way go on, the next ones wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Hashable


class StartQueue:
    def __init__(self, concurrency: int):
        self.concurrency = max(1, concurrency)
        self._starting: set[Hashable] = set()
        self._waiting: deque[tuple[Hashable, asyncio.Future]] = deque()
        self._held_until = 0.0  # the loop's clock: no start begins before it

    @contextlib.asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[None]:
        """Wait for a start slot (in arrival order), hold it for the block."""
        if len(self._starting) >= self.concurrency or self._waiting or self._held():
            ticket = asyncio.get_running_loop().create_future()
            self._waiting.append((key, ticket))
            try:
                await ticket
            except BaseException:
                self._forget(key, ticket)
                raise
        self._starting.add(key)
        try:
            yield
        finally:
            self._starting.discard(key)
            self._next()

    def hold(self, seconds: float) -> None:
        """No new start for `seconds` from now (an earlier, longer hold stays)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        if until > self._held_until:
            self._held_until = until
            loop.call_at(until, self._end_hold, until)

    def _end_hold(self, until: float) -> None:
        if self._held_until == until:  # not prolonged since (that one has its own timer)
            self._held_until = 0.0
            self._next()

    async def unheld(self) -> None:
        """Return once no hold is on (at once when there is none)."""
        while self._held():
            await asyncio.sleep(self._held_until - asyncio.get_running_loop().time())

    def _held(self) -> bool:
        return self._held_until > asyncio.get_running_loop().time()

    def position(self, key: Hashable) -> int | None:
        """0: starting now; n: n starts ahead of it; None: not in line."""
        if key in self._starting:
            return 0
        for index, (waiting, _) in enumerate(self._waiting):
            if waiting == key:
                return index + 1
        return None

    def waiting(self) -> int:
        return len(self._waiting)

    def busy(self) -> int:
        return len(self._starting) + len(self._waiting)

    def _next(self) -> None:
        if self._held():
            return  # the hold's own timer calls again when it ends
        while self._waiting and len(self._starting) < self.concurrency:
            key, ticket = self._waiting.popleft()
            if not ticket.done():
                self._starting.add(key)  # reserved now; turn() adds it again, harmless
                ticket.set_result(None)

    def _forget(self, key: Hashable, ticket: asyncio.Future) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove((key, ticket))
        if ticket.done() and not ticket.cancelled():
            # It was handed a slot it will not use: pass the slot on.
            self._starting.discard(key)
            self._next()
