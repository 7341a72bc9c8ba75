"""The warm pool's plan, and claims that hand a warm server to one browser only."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from types import SimpleNamespace

from gallery_hub import warm_pool
from gallery_hub.visitors import VISITOR_GROUP, WARM_GROUP
from gallery_hub.warm_pool import WarmPool, WarmServer, plan_pool

NOW = datetime(2026, 1, 1, 12, 0, 0)
IMAGES = {"a": "sha256:a1", "b": "sha256:b1"}


def server(user, example, image="current", age_s=60, ready=True):
    image_id = IMAGES[example] if image == "current" else image
    return WarmServer(user, example, image_id, NOW - timedelta(seconds=age_s), ready)


def plan(wanted, servers, *, max_total=10, room=10, max_age_s=14400):
    return plan_pool(
        wanted, servers, IMAGES, max_total=max_total, room=room, max_age_s=max_age_s, now=NOW
    )


def test_an_empty_pool_fills_round_robin_within_its_bounds():
    assert plan({"a": 2, "b": 1}, []).start == ["a", "b", "a"]
    assert plan({"a": 2, "b": 1}, [], max_total=2).start == ["a", "b"]
    assert plan({"a": 2, "b": 1}, [], room=1).start == ["a"]
    assert plan({"a": 2}, [server("u1", "a"), server("u2", "a")]).start == []


def test_servers_the_gallery_no_longer_wants_are_retired():
    servers = [server("u1", "a"), server("u2", "b"), server("u3", "a", ready=False)]
    result = plan({"a": 1}, servers)
    # b left the gallery; a asks for one: the ready one stays.
    assert {s.user for s in result.retire} == {"u2", "u3"}
    assert result.start == []


def test_a_rebuilt_image_replaces_its_warm_servers():
    result = plan({"a": 1}, [server("u1", "a", image="sha256:old")])
    assert [s.user for s in result.retire] == ["u1"] and result.start == ["a"]


def test_old_warm_servers_are_recycled_before_max_age_counts_against_a_visitor():
    result = plan({"a": 1}, [server("u1", "a", age_s=8000)], max_age_s=14400)
    assert [s.user for s in result.retire] == ["u1"] and result.start == ["a"]


def test_starting_servers_count_as_warm():
    assert plan({"a": 1}, [server("u1", "a", ready=False)]).start == []


def make_pool(users):
    app = SimpleNamespace(users=users, db=SimpleNamespace(commit=lambda: None))
    return WarmPool(
        app,
        source=None,
        api_url="http://127.0.0.1:8081/hub/api",
        token="t",
        max_warm=5,
        max_age_s=14400,
        room=lambda: 10,
        launches_waiting=lambda: 0,
        image_ids=dict,
        container_images=dict,
    )


def warm_user(name, ready=True):
    spawner = SimpleNamespace(
        ready=ready, orm_spawner=SimpleNamespace(started=NOW, last_activity=NOW)
    )
    orm_user = SimpleNamespace(groups=[SimpleNamespace(name=WARM_GROUP)], last_activity=NOW)
    return SimpleNamespace(name=name, spawners={"a": spawner}, orm_user=orm_user)


def test_a_warm_server_is_claimed_once_and_its_clock_starts_at_the_click(monkeypatch):
    moved = []
    monkeypatch.setattr(warm_pool, "claim_warm_visitor", lambda db, u: moved.append(u))
    users = {"w1": warm_user("w1"), "w2": warm_user("w2", ready=False)}
    pool = make_pool(users)
    pool._ready = {"a": ["w1", "w2"]}

    async def clicks():
        return [pool.claim("a") for _ in range(3)]

    claimed, second, third = asyncio.run(clicks())
    assert claimed is users["w1"] and moved == [users["w1"].orm_user]
    assert claimed.spawners["a"].orm_spawner.started > NOW
    # w2 is not ready (its server stopped meanwhile): nobody gets it; nothing is left.
    assert second is None
    assert third is None and pool.ready_counts() == {"a": 0}


def test_a_replacement_waits_until_the_claimed_app_has_rendered(monkeypatch):
    monkeypatch.setattr(warm_pool, "claim_warm_visitor", lambda db, u: None)
    now = [100.0]
    pool = make_pool({"w1": warm_user("w1")})
    pool.clock = lambda: now[0]
    pool.refill_delay_s = 0.05
    pool._ready = {"a": ["w1"]}
    assert pool._may_start()

    async def click_then_wait():
        assert pool.claim("a") is not None
        blocked = pool._may_start()
        pool._wake.clear()
        now[0] += 0.05
        async with asyncio.timeout(2):
            await pool._wake.wait()  # the pool looks again once the delay is over
        return blocked

    assert asyncio.run(click_then_wait()) is False
    assert pool._may_start()
    pool.launches_waiting = lambda: 1  # a visitor waiting for a start slot goes first
    assert not pool._may_start()


def test_a_claim_holds_other_starts_so_the_claimed_app_renders_first(monkeypatch):
    monkeypatch.setattr(warm_pool, "claim_warm_visitor", lambda db, u: None)
    holds = []
    pool = make_pool({"w1": warm_user("w1")})
    pool.hold_starts = holds.append
    pool._ready = {"a": ["w1"]}

    async def clicks():
        return pool.claim("a"), pool.claim("a")

    claimed, none = asyncio.run(clicks())
    assert claimed is not None and none is None
    assert holds == [warm_pool.CLAIM_FIRST_S]  # one hold per claim, none without one


def test_claims_of_an_example_without_warm_servers_find_none():
    assert make_pool({}).claim("nothing") is None


def test_claimed_visitors_join_the_culled_group():
    from gallery_hub.visitors import claim_warm_visitor

    class Db:
        def __init__(self):
            self.groups = {n: SimpleNamespace(name=n) for n in (VISITOR_GROUP, WARM_GROUP)}

        def commit(self):
            pass

    db = Db()
    user = SimpleNamespace(groups=[db.groups[WARM_GROUP]])
    import jupyterhub.orm as orm

    original = orm.Group.find
    orm.Group.find = classmethod(lambda cls, d, name: d.groups[name])
    try:
        claim_warm_visitor(db, user)
    finally:
        orm.Group.find = original
    assert [g.name for g in user.groups] == [VISITOR_GROUP]


def test_a_warm_server_gets_its_full_cpu_priority_back_once_ready_not_at_the_click(monkeypatch):
    monkeypatch.setattr(warm_pool, "claim_warm_visitor", lambda db, u: None)
    user = warm_user("w1")
    user.spawners["a"].container_id = "c1"
    pool = make_pool({"w1": user})
    updates = []
    pool.set_cpu_shares = lambda container, shares: updates.append((container, shares))

    async def ready_then_click():
        await pool._make_ready(server("w1", "a"), user.spawners["a"])
        assert updates == [("c1", 1024)] and pool.ready_counts() == {"a": 1}
        assert pool.claim("a") is user

    asyncio.run(ready_then_click())
    assert updates == [("c1", 1024)]  # the click itself called no Docker


class KernelList:
    """Answers GET api/kernels with one listing after another (the last one repeats)."""

    def __init__(self, *listings):
        self.listings = list(listings)
        self.asked = 0

    async def fetch(self, url, headers):
        listing = self.listings[min(self.asked, len(self.listings) - 1)]
        self.asked += 1
        return SimpleNamespace(body=json.dumps(listing).encode())


def test_a_primed_server_is_ready_once_its_spare_kernel_answers(monkeypatch, caplog):
    pool = make_pool({})
    warm = server("w1", "a")
    client = KernelList([], [{"execution_state": "starting"}], [{"execution_state": "idle"}])
    asyncio.run(pool._wait_for_spare(client, "http://w1/api/kernels", {}, warm))
    assert client.asked == 3 and "no spare kernel" not in caplog.text

    monkeypatch.setattr(warm_pool, "SPARE_WAIT_S", 0.05)
    never = KernelList([])
    asyncio.run(pool._wait_for_spare(never, "http://w1/api/kernels", {}, warm))
    assert never.asked >= 1 and "w1's a has no spare kernel" in caplog.text
