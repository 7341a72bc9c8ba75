"""How often one client address may launch, and how a refusal is told."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """Why a launch is refused, and when to try again."""

    status: int  # 429 (with Retry-After): a full gallery is not a server error
    message: str
    retry_after_s: int
    reason: str = "capacity"  # for the metrics: capacity, per-visitor, rate, disk, broken


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
            return Refusal(429, "Too many launches from your address; please wait.", wait, "rate")
        window.append(now)
        if len(self._launches) > 10_000:  # forget idle addresses now and then
            self._launches = {k: v for k, v in self._launches.items() if v}
        return None
