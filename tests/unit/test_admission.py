"""Admission: the caps every visitor's server start passes, however it was asked for."""

from __future__ import annotations

from types import SimpleNamespace

from gallery_hub.admission import Admission, VisitorServers, visitor_servers
from gallery_hub.launch_limits import LaunchRateLimiter


def admission(now, **kwargs) -> Admission:
    defaults = {
        "max_servers": 3,
        "max_per_visitor": 2,
        "limiter": LaunchRateLimiter(per_minute=100, clock=lambda: now[0]),
        "clock": lambda: now[0],
    }
    return Admission(**(defaults | kwargs))


def test_the_total_cap_counts_running_and_reserved_servers():
    now = [0.0]
    gate = admission(now)
    running = VisitorServers(ready=frozenset({("a", "demo")}))
    assert gate.admit(("b", "demo"), running) is None
    assert gate.admit(("c", "demo"), running) is None
    full = gate.admit(("d", "demo"), running)
    assert full.status == 429 and "capacity" in full.message and full.retry_after_s > 0


def test_admitting_the_same_server_again_is_free():
    """The launch handler reserves; the spawner's own check then lets the same key pass."""
    now = [0.0]
    gate = admission(now, max_servers=1)
    assert gate.admit(("a", "demo"), VisitorServers()) is None
    assert gate.admit(("a", "demo"), VisitorServers(pending=frozenset({("a", "demo")}))) is None
    assert gate.admit(("b", "demo"), VisitorServers()) is not None


def test_a_running_server_passes_again_after_a_hub_restart():
    now = [0.0]
    gate = admission(now, max_servers=1)
    assert gate.admit(("a", "demo"), VisitorServers(ready=frozenset({("a", "demo")}))) is None


def test_per_visitor_cap():
    now = [0.0]
    gate = admission(now, max_servers=10, max_per_visitor=2)
    mine = VisitorServers(ready=frozenset({("a", "x"), ("a", "y")}))
    refusal = gate.admit(("a", "z"), mine)
    assert refusal.status == 429 and "2 examples running" in refusal.message
    assert gate.admit(("b", "z"), mine) is None


def test_the_address_limit_counts_only_admitted_starts():
    now = [0.0]
    gate = admission(now, max_servers=1, limiter=LaunchRateLimiter(1, clock=lambda: now[0]))
    assert gate.admit(("a", "x"), VisitorServers(), address="10.1.2.3") is None
    # refused for capacity: does not use up the address's launches
    assert "capacity" in gate.admit(("b", "x"), VisitorServers(), address="10.9.9.9").message
    gate.release(("a", "x"))
    assert gate.admit(("b", "x"), VisitorServers(), address="10.9.9.9") is None
    gate.release(("b", "x"))
    refusal = gate.admit(("c", "x"), VisitorServers(), address="10.1.2.3")
    assert refusal.status == 429 and "address" in refusal.message


def test_stale_reservations_are_forgotten_but_live_ones_are_kept():
    now = [0.0]
    gate = admission(now, max_servers=2)
    assert gate.admit(("a", "x"), VisitorServers()) is None
    assert gate.admit(("b", "x"), VisitorServers()) is None
    now[0] = 100.0
    # a's server is starting, b's never appeared (its launch failed before the spawn)
    servers = VisitorServers(pending=frozenset({("a", "x")}))
    assert gate.admit(("c", "x"), servers) is None
    assert gate.reserved() == {("a", "x"), ("c", "x")}
    assert gate.admit(("d", "x"), servers) is not None


def test_low_disk_refuses_every_start():
    now = [0.0]
    free = [10 * 2**30]
    gate = admission(now, min_free_bytes=5 * 2**30, free_bytes=lambda: free[0])
    assert gate.admit(("a", "x"), VisitorServers()) is None
    free[0] = 2**30
    refusal = gate.admit(("b", "x"), VisitorServers())
    assert refusal.status == 429 and "disk" in refusal.message
    assert gate.disk_refusal() is not None
    assert admission(now, free_bytes=lambda: 0).disk_refusal() is None  # 0 turns it off


def test_visitor_servers_snapshot():
    def spawner(ready, active):
        return SimpleNamespace(ready=ready, active=active)

    users = [
        SimpleNamespace(
            name="v1",
            visitor=True,
            spawners={"a": spawner(True, True), "b": spawner(False, True), "c": spawner(0, 0)},
        ),
        SimpleNamespace(name="admin", visitor=False, spawners={"": spawner(True, True)}),
    ]
    servers = visitor_servers(users, lambda u: u.visitor)
    assert servers.ready == {("v1", "a")}
    assert servers.pending == {("v1", "b")}
