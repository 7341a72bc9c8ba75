"""Wake the Server-Sent-Event streams of a build when its log or state changes."""

from __future__ import annotations

import asyncio
from collections import defaultdict


class LogEvents:
    """One asyncio.Event per listener; `notify(build_id)` sets them all.

    Listeners re-read the store after waking, so a missed wake-up costs nothing:
    events only say "look again", never carry data.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Event]] = defaultdict(set)

    def subscribe(self, build_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._listeners[build_id].add(event)
        return event

    def unsubscribe(self, build_id: str, event: asyncio.Event) -> None:
        listeners = self._listeners.get(build_id)
        if listeners is not None:
            listeners.discard(event)
            if not listeners:
                del self._listeners[build_id]

    def notify(self, build_id: str) -> None:
        for event in self._listeners.get(build_id, ()):
            event.set()
