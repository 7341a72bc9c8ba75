"""Whether one more gallery server may start: the one decision every start passes.

The launch button, JupyterHub's REST API, `/hub/spawn` and restarts all end in the
spawner's `start()`, which asks `Admission.admit()`. The launch handler asks first (before
it creates a visitor), so a full gallery never leaves a visitor without a server; the
spawner's own call then finds the reservation and lets it through.

Pure logic (no tornado, no Docker): the caller passes a snapshot of the visitors' servers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gallery_hub.launch_limits import LaunchRateLimiter, Refusal

# A visitor's server: (user name, server name).
ServerKey = tuple[str, str]

# How long a reservation counts while its server is not yet pending (the launch handler
# creates the visitor and its spawner right after reserving).
RESERVATION_GRACE_S = 30.0


@dataclass(frozen=True)
class VisitorServers:
    """The visitors' servers right now: started (ready) and starting (pending)."""

    ready: frozenset[ServerKey] = frozenset()
    pending: frozenset[ServerKey] = frozenset()


@dataclass
class Admission:
    """Caps on visitors' servers: in total, per visitor, per client address, by free disk."""

    max_servers: int
    max_per_visitor: int
    limiter: LaunchRateLimiter
    min_free_bytes: int = 0
    free_bytes: Callable[[], int] = lambda: 2**62
    clock: Callable[[], float] = time.monotonic
    _reserved: dict[ServerKey, float] = field(default_factory=dict)

    def admit(
        self, key: ServerKey, servers: VisitorServers, *, address: str | None = None
    ) -> Refusal | None:
        """Reserve room for `key`, or say why not. Admitting the same key again is free."""
        now = self.clock()
        self._forget_stale(servers, now)
        if key in self._reserved or key in servers.ready:
            return None
        refusal = self.disk_refusal()
        if refusal:
            return refusal
        counted = servers.ready | self._reserved.keys()
        mine = sum(1 for user, _ in counted if user == key[0])
        if mine >= self.max_per_visitor:
            return Refusal(
                429,
                f"You already have {mine} examples running, the most one visitor may have. "
                "Close one, or wait for it to stop when idle.",
                30,
                "per-visitor",
            )
        if len(counted) >= self.max_servers:
            return Refusal(429, "The gallery is at capacity right now.", 15)
        if address is not None:
            refusal = self.limiter.check(address)
            if refusal:
                return refusal
        self._reserved[key] = now
        return None

    def release(self, key: ServerKey) -> None:
        """The server stopped (or never started): its room is free again."""
        self._reserved.pop(key, None)

    def disk_refusal(self) -> Refusal | None:
        """Refuse while the Docker data root has less free space than configured."""
        if self.min_free_bytes <= 0:
            return None
        if self.free_bytes() < self.min_free_bytes:
            return Refusal(
                429,
                "The gallery is low on disk space right now; please try again later.",
                60,
                "disk",
            )
        return None

    def in_use(self, servers: VisitorServers) -> int:
        """Visitors' servers counted against the cap now (running and admitted)."""
        self._forget_stale(servers, self.clock())
        return len(servers.ready | self._reserved.keys())

    def reserved(self) -> set[ServerKey]:
        return set(self._reserved)

    def _forget_stale(self, servers: VisitorServers, now: float) -> None:
        """Drop reservations whose server is neither starting nor running any more."""
        live = servers.ready | servers.pending
        for key, at in list(self._reserved.items()):
            if key not in live and now - at > RESERVATION_GRACE_S:
                del self._reserved[key]


def visitor_servers(users: Iterable, is_visitor: Callable[[object], bool]) -> VisitorServers:
    """Snapshot of the visitors' servers from JupyterHub's users (User objects)."""
    ready: set[ServerKey] = set()
    pending: set[ServerKey] = set()
    for user in users:
        if not is_visitor(user):
            continue
        for name, spawner in user.spawners.items():
            if spawner.ready:
                ready.add((user.name, name))
            elif spawner.active:
                pending.add((user.name, name))
    return VisitorServers(frozenset(ready), frozenset(pending))
