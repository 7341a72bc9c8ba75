"""How many launches the gallery accepts: per client address and in total."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """Why a launch is refused, and when to try again."""

    status: int  # always 429 (with Retry-After): a full gallery is not a server error
    message: str
    retry_after_s: int


class LaunchRateLimiter:
    """A sliding one-minute window of launches per key (the client's address)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._launches: dict[str, deque[float]] = {}

    def check(self, key: str) -> Refusal | None:
        """Count a launch for `key`, or refuse it when the window is full."""
        now = self.clock()
        window = self._launches.setdefault(key, deque())
        while window and now - window[0] >= 60:
            window.popleft()
        if len(window) >= self.per_minute:
            wait = int(60 - (now - window[0])) + 1
            return Refusal(429, "Too many launches from your address; please wait.", wait)
        window.append(now)
        if len(self._launches) > 10_000:  # forget idle addresses now and then
            self._launches = {k: v for k, v in self._launches.items() if v}
        return None


def capacity_refusal(
    active: int, *, max_servers: int, visitor_servers: int, max_per_visitor: int
) -> Refusal | None:
    """Refuse a new server when the gallery or this visitor has as many as allowed."""
    if visitor_servers >= max_per_visitor:
        return Refusal(
            429,
            f"You already have {visitor_servers} examples running, the most one visitor may "
            "have. Close one, or wait for it to stop when idle.",
            30,
        )
    if active >= max_servers:
        return Refusal(429, "The gallery is at capacity right now.", 15)
    return None
