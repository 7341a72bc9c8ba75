"""The warm pool: examples already started and rendered once, waiting for a click.

`gallery.yaml` asks for `warm: N` servers of an example (`GALLERY_WARM_MAX` in total).
Each is a pre-created visitor in the group `gallery-warm` (out of the idle culler's
reach) whose server for that example is started, has rendered the example once and holds the
next render's kernel started ahead (spare_kernel.py): only then is it ready. A
click claims one (`WarmPool.claim`, synchronous, so a warm server goes to one browser
only): the browser gets that visitor's login cookie and lands on the app; the visitor
joins `gallery-visitors`, its clock starts at the click, and a replacement starts in
the background. For CLAIM_FIRST_S after a claim no other server begins to start (a hold
on the start queue): the claimed app renders first, the crowd's cold launches wait.

The pool starts its servers through the hub's own REST API, with a token limited to its
group, so every start passes the spawner's admission like any other (warm servers count
toward GALLERY_MAX_SERVERS). It starts one at a time, only while no visitor's launch
waits for a start slot, and not within REFILL_DELAY_S of a claim: a server start takes
~2 CPU-seconds, which the claimed app's first render (~1 s) would otherwise share. It
retires warm servers whose example left the gallery or asks for fewer, whose image was
rebuilt, or that are older than half of GALLERY_MAX_AGE. All of it is in JupyterHub's
database (the group, the servers): the pool survives restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from jupyterhub import orm
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from gallery_common.gallery_file import Example
from gallery_hub.background_loop import run_steps
from gallery_hub.gallery_source import GallerySource
from gallery_hub.hub_api_client import HubAPI
from gallery_hub.spawner import DEFAULT_CPU_SHARES
from gallery_hub.visitors import VISITOR_PREFIX, WARM_GROUP, claim_warm_visitor, make_visitor

log = logging.getLogger("gallery_hub")

# Seconds after a claim before the pool starts a replacement (measured on 2 cores: the
# claimed render took 1.1-1.9 s while a replacement started next to it, ~0.8 s without).
REFILL_DELAY_S = 5.0
# Seconds after a claim in which no other server begins to start (the start queue's
# hold): the claimed app's render gets the CPU first, cold launches wait that long.
CLAIM_FIRST_S = 1.5
# How long a primed server may take to have its spare kernel answering (at its low CPU
# weight ~1.2 s here); past it, the server is handed out without one.
SPARE_WAIT_S = 20.0


@dataclass(frozen=True)
class WarmServer:
    """One warm visitor's server, as the pool plans with it."""

    user: str
    example: str
    image_id: str | None  # the image the container runs; None: not known yet
    started: datetime | None
    ready: bool  # started and rendered once: can be handed out


@dataclass(frozen=True)
class Plan:
    start: list[str] = field(default_factory=list)  # example ids, in order
    retire: list[WarmServer] = field(default_factory=list)


def plan_pool(
    wanted: dict[str, int],
    servers: list[WarmServer],
    image_ids: dict[str, str | None],
    *,
    max_total: int,
    room: int,
    max_age_s: float,
    now: datetime,
) -> Plan:
    """What to start and what to retire so the pool matches the gallery.

    `wanted`: warm servers per example (only built examples); `image_ids`: the image each
    example runs now; `room`: servers the gallery's cap still allows.
    """
    retire: list[WarmServer] = []
    kept: dict[str, list[WarmServer]] = {}
    for server in servers:
        stale = (
            wanted.get(server.example, 0) == 0
            or (server.image_id is not None and server.image_id != image_ids.get(server.example))
            or (
                server.started is not None
                and (now - server.started).total_seconds() > max_age_s / 2
            )
        )
        (retire.append(server) if stale else kept.setdefault(server.example, []).append(server))
    for example, group in kept.items():
        # Too many (the gallery asks for fewer): keep the ready ones, then the newest.
        group.sort(key=lambda s: (not s.ready, -(s.started or now).timestamp()))
        retire += group[wanted[example] :]
        del group[wanted[example] :]
    total = sum(len(group) for group in kept.values())
    start: list[str] = []
    budget = max(0, min(max_total - total, room))
    missing = {e: n - len(kept.get(e, [])) for e, n in sorted(wanted.items()) if n > 0}
    while budget > 0 and any(n > 0 for n in missing.values()):
        # The example with the fewest warm servers first (round robin).
        example = min(
            (e for e, n in missing.items() if n > 0), key=lambda e: wanted[e] - missing[e]
        )
        start.append(example)
        missing[example] -= 1
        budget -= 1
    return Plan(start=start, retire=retire)


class WarmPool:
    """Keeps the warm servers `gallery.yaml` asks for, and hands them out."""

    def __init__(
        self,
        app,
        *,
        source: GallerySource,
        api_url: str,
        token: str,
        max_warm: int,
        max_age_s: float,
        room: Callable[[], int],
        launches_waiting: Callable[[], int],
        image_ids: Callable[[set[str]], dict[str, str | None]],
        container_images: Callable[[dict[str, str]], dict[str, str | None]],
        set_cpu_shares: Callable[[str, int], None] = lambda container, shares: None,
        hold_starts: Callable[[float], None] = lambda seconds: None,
        interval_s: float = 5.0,
        refill_delay_s: float = REFILL_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app = app
        self.source = source
        self.hub_api = HubAPI(api_url, token)
        self.max_warm = max_warm
        self.max_age_s = max_age_s
        self.room = room
        self.launches_waiting = launches_waiting
        self.image_ids = image_ids
        self.container_images = container_images
        self.set_cpu_shares = set_cpu_shares
        self.hold_starts = hold_starts
        self.interval_s = interval_s
        self.refill_delay_s = refill_delay_s
        self.clock = clock
        self._refill_after = 0.0  # clock() before which no replacement starts
        # example id -> names of warm visitors whose server is ready and rendered once
        self._ready: dict[str, list[str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- the click ------------------------------------------------------------------

    def claim(self, example_id: str):
        """A ready warm visitor of the example, now an ordinary visitor; or None.

        Synchronous (no await): two clicks can never get the same one.
        """
        names = self._ready.get(example_id, [])
        while names:
            user = self._user(names.pop(0))
            spawner = user.spawners.get(example_id) if user is not None else None
            if spawner is None or not spawner.ready:
                continue
            claim_warm_visitor(self.app.db, user.orm_user)
            now = datetime.now(UTC).replace(tzinfo=None)
            # The visitor's time (idle and max age) counts from the click.
            user.orm_user.last_activity = now
            spawner.orm_spawner.started = spawner.orm_spawner.last_activity = now
            self.app.db.commit()
            log.info("warm pool: %s claimed %s's %s", "a click", user.name, example_id)
            self._refill_after = self.clock() + self.refill_delay_s
            self.hold_starts(CLAIM_FIRST_S)
            asyncio.get_running_loop().call_later(self.refill_delay_s, self.wake)
            return user
        return None

    def ready_counts(self) -> dict[str, int]:
        return {example: len(names) for example, names in self._ready.items()}

    # -- the background loop ------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await asyncio.sleep(self.interval_s)  # let the hub finish starting (its servers)
        await run_steps(self.reconcile, self._wake, self.interval_s, "warm pool")

    def _user(self, name: str):
        try:
            return self.app.users[name]
        except KeyError:
            return None

    def warm_users(self) -> list:
        group = orm.Group.find(self.app.db, WARM_GROUP)
        return [self.app.users[u.name] for u in group.users] if group is not None else []

    async def reconcile(self) -> bool:
        """One step toward the plan; True if there is more to do right away."""
        examples = {e.id: e for e in self.source.current().examples.values()}
        wanted_raw = {e.id: e.warm for e in examples.values() if e.warm}
        images = await asyncio.to_thread(
            self.image_ids, {examples[e].image_name for e in wanted_raw}
        )
        wanted = self._fit(
            {e: n for e, n in wanted_raw.items() if images.get(examples[e].image_name)}
        )
        users = self.warm_users()
        servers = await self._servers(users)
        plan = plan_pool(
            wanted,
            servers,
            {e: images.get(examples[e].image_name) for e in examples},
            max_total=self.max_warm,
            room=self.room(),
            max_age_s=self.max_age_s,
            now=datetime.now(UTC).replace(tzinfo=None),
        )
        for server in plan.retire:
            await self._retire(server.user)
        # Users without a server (a start that failed, a crash) are removed too.
        named = {s.user for s in servers}
        for user in users:
            if user.name not in named and not any(s.active for s in user.spawners.values()):
                await self._retire(user.name)
        for server in servers:
            primed = server.user in self._ready.get(server.example, [])
            if server.ready and not primed and server not in plan.retire:
                await self._prime(server, examples[server.example])
        if plan.start and self._may_start():
            await self._start(examples[plan.start[0]])
            return len(plan.start) > 1
        return False

    def _may_start(self) -> bool:
        """No visitor's launch waits for a start slot, and no claim was just rendering."""
        return not self.launches_waiting() and self.clock() >= self._refill_after

    def _fit(self, wanted: dict[str, int]) -> dict[str, int]:
        """At most max_warm in all; trimmed from the examples that ask for the most."""
        wanted = dict(wanted)
        while sum(wanted.values()) > self.max_warm:
            biggest = max(sorted(wanted), key=lambda e: wanted[e])
            wanted[biggest] -= 1
        return {e: n for e, n in wanted.items() if n > 0}

    async def _servers(self, users) -> list[WarmServer]:
        found = []
        ids = {}
        for user in users:
            for name, spawner in user.spawners.items():
                if spawner.active and getattr(spawner, "container_id", ""):
                    ids[f"{user.name}/{name}"] = spawner.container_id
        containers = await asyncio.to_thread(self.container_images, ids) if ids else {}
        for user in users:
            for name, spawner in user.spawners.items():
                if not spawner.active:
                    continue
                found.append(
                    WarmServer(
                        user=user.name,
                        example=name,
                        image_id=containers.get(f"{user.name}/{name}"),
                        started=spawner.orm_spawner.started,
                        ready=spawner.ready,
                    )
                )
        return found

    # -- actions, through the hub's API ---------------------------------------------------

    async def _api(self, method: str, path: str, body: dict | None = None):
        return await self.hub_api.request(method, path, body)

    async def _start(self, example: Example) -> None:
        name = VISITOR_PREFIX + secrets.token_hex(8)
        orm_user = orm.User(name=name)
        self.app.db.add(orm_user)
        self.app.db.commit()
        make_visitor(self.app.db, orm_user, WARM_GROUP)
        self.app.users.add(orm_user)
        answer = await self._api(
            "POST", f"/users/{name}/servers/{example.id}", {"image": example.image_name}
        )
        if answer.code not in (201, 202):
            log.warning(
                "warm pool: could not start %s for %s: %s %s",
                example.id,
                name,
                answer.code,
                answer.body[:300],
            )
            await self._retire(name)
            return
        log.info("warm pool: starting %s for %s", example.id, name)
        spawner = self.app.users[name].spawners[example.id]
        while spawner.pending == "spawn":
            await asyncio.sleep(0.2)
        if spawner.ready:
            server = WarmServer(name, example.id, None, spawner.orm_spawner.started, True)
            await self._prime(server, example)

    async def _prime(self, server: WarmServer, example: Example) -> None:
        """Render the example once, then stop the kernels that left behind."""
        user = self._user(server.user)
        spawner = user.spawners.get(server.example) if user is not None else None
        if spawner is None or not spawner.ready or spawner.server is None:
            return
        base = spawner.server.url  # http://<container>:8888/user/<name>/<example>/
        # A short-lived token of the warm visitor, good for this one server only.
        minted = await self._api(
            "POST",
            f"/users/{server.user}/tokens",
            {
                "scopes": [f"access:servers!server={server.user}/{server.example}"],
                "expires_in": 600,
                "note": "warm pool: render once",
            },
        )
        if minted.code != 201:
            log.warning("warm pool: no token to render %s: %s", server.user, minted.code)
            return
        token = json.loads(minted.body)
        headers = {"Authorization": f"token {token['token']}"}
        client = AsyncHTTPClient()
        page = f"{base}voila/render/{quote(example.path)}"
        try:
            rendered = await client.fetch(
                page, headers=headers, request_timeout=300, follow_redirects=False
            )
            kernels = await client.fetch(f"{base}api/kernels", headers=headers)
            for kernel in json.loads(kernels.body):
                await client.fetch(
                    f"{base}api/kernels/{kernel['id']}", method="DELETE", headers=headers
                )
            await self._wait_for_spare(client, f"{base}api/kernels", headers, server)
        except (OSError, HTTPClientError) as e:
            log.warning("warm pool: %s's %s did not render: %s", server.user, server.example, e)
            await self._retire(server.user)
            return
        finally:
            await self._api("DELETE", f"/users/{server.user}/tokens/{token['id']}")
        if rendered.code != 200:
            await self._retire(server.user)
            return
        if user.name in [u.name for u in self.warm_users()]:
            await self._make_ready(server, spawner)

    async def _make_ready(self, server: WarmServer, spawner) -> None:
        """Claimable from now on, at full CPU priority: the start and the first render ran
        at a low one; a claim then waits for no Docker call (under a crowd, Docker answered
        it seconds late while the claimed app rendered at the low priority)."""
        if getattr(spawner, "container_id", ""):
            try:
                await asyncio.to_thread(
                    self.set_cpu_shares, spawner.container_id, DEFAULT_CPU_SHARES
                )
            except Exception as e:  # it runs, only at a lower priority
                log.warning("warm pool: %s's CPU priority stays low: %s", server.user, e)
        self._ready.setdefault(server.example, []).append(server.user)
        log.info("warm pool: %s's %s is ready", server.user, server.example)

    async def _wait_for_spare(self, client, kernels_url: str, headers, server) -> None:
        """Until the kernel the server starts once its first render's is gone answers."""
        deadline = time.monotonic() + SPARE_WAIT_S
        while time.monotonic() < deadline:
            kernels = json.loads((await client.fetch(kernels_url, headers=headers)).body)
            if any(kernel.get("execution_state") == "idle" for kernel in kernels):
                return
            await asyncio.sleep(0.2)
        log.warning("warm pool: %s's %s has no spare kernel", server.user, server.example)

    async def _retire(self, name: str) -> None:
        for names in self._ready.values():
            if name in names:
                names.remove(name)
        user = self._user(name)
        if user is None or name not in [u.name for u in self.warm_users()]:
            return  # claimed meanwhile: it is a visitor's now
        # JupyterHub deletes a user only once its named servers are stopped.
        for server, spawner in list(user.spawners.items()):
            if spawner.active:
                await self._api("DELETE", f"/users/{name}/servers/{server}", {"remove": True})
        for _ in range(300):
            if not any(s.active for s in user.spawners.values()):
                break
            await asyncio.sleep(0.2)
        answer = await self._api("DELETE", f"/users/{name}")
        if answer.code not in (204, 404):
            log.warning("warm pool: could not remove %s: %s", name, answer.code)
        else:
            log.info("warm pool: retired %s", name)
