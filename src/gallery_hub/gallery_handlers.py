"""The public gallery inside the hub: the page, the one-click launch, the thumbnails.

Routes (under /hub/, added through Authenticator.get_handlers):
    GET  gallery                      the gallery (no login)
    POST gallery/launch/<example>     launch an example (XSRF-protected form)
    GET  gallery/thumbnails/<file>    thumbnails from gallery/thumbnails/

A launch logs the browser in as a temporary user (the hub's own login cookie: no token
in any URL), starts a named server with the example's image, looked up here from the
example id, and sends the browser to JupyterHub's progress page, which lands on Voila.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import quote

import docker
from jupyterhub import orm, roles
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httputil import url_concat

from gallery_common.gallery_file import Example
from gallery_hub.environments import built_environment_images
from gallery_hub.gallery_source import GallerySource, gallery_source
from gallery_hub.gallery_state import READY, CachedValue, builds_in_progress, example_state
from gallery_hub.hub_settings import HubSettings
from gallery_hub.launch_limits import LaunchRateLimiter, Refusal, capacity_refusal

log = logging.getLogger("gallery_hub")

VISITOR_PREFIX = "gallery-"
VISITOR_GROUP = "gallery-visitors"
VISITOR_ROLE = "gallery-visitor"


@dataclass
class GalleryContext:
    """What the gallery handlers share (one per hub)."""

    source: GallerySource
    built_images: CachedValue
    images_in_progress: CachedValue
    limiter: LaunchRateLimiter
    max_servers: int
    max_servers_per_visitor: int
    thumbnails_dir: str
    # (user, server) of launches under way: counted with the active servers, once each.
    launching: set[tuple[str, str]] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def is_visitor(user) -> bool:
    return user is not None and any(g.name == VISITOR_GROUP for g in user.groups)


def landing_url(user, example: Example, view: str) -> str:
    """Where the launched example opens: Voila, or JupyterLab for the notebook view."""
    server = user.server_url(example.id)
    path = quote(example.path)
    if view == "notebook":
        return url_path_join(server, "lab", "tree", path)
    return url_path_join(server, "voila", "render", path)


class GalleryBaseHandler(BaseHandler):
    def initialize(self, gallery: GalleryContext) -> None:
        self.gallery = gallery

    def thumbnail_url(self, example: Example) -> str:
        if example.image_url.startswith(("http://", "https://")):
            return example.image_url
        return url_path_join(self.hub.base_url, "gallery", "thumbnails", example.image_url)

    async def refuse(self, refusal: Refusal, example: Example | None = None) -> None:
        """The friendly "busy" page: it counts down and tries again by itself."""
        self.set_status(refusal.status)
        self.set_header("Retry-After", str(refusal.retry_after_s))
        html = await self.render_template(
            "gallery_busy.html",
            message=refusal.message,
            retry_after=refusal.retry_after_s,
            example=example,
            xsrf=self.xsrf_token.decode(),
        )
        self.finish(html)


class GalleryPageHandler(GalleryBaseHandler):
    async def get(self) -> None:
        gallery = self.gallery.source.current()
        built = await asyncio.to_thread(self.gallery.built_images.get)
        building = await asyncio.to_thread(self.gallery.images_in_progress.get)
        user = self.current_user
        running = set(user.spawners) if user is not None else set()
        cards = [
            {
                "example": example,
                "state": example_state(example, built, building),
                "thumbnail": self.thumbnail_url(example),
                "running": example.id in running and user.spawners[example.id].active,
            }
            for example in gallery.examples.values()
        ]
        html = await self.render_template(
            "gallery.html", cards=cards, xsrf=self.xsrf_token.decode()
        )
        self.finish(html)


class LaunchHandler(GalleryBaseHandler):
    async def post(self, example_id: str) -> None:
        example = self.gallery.source.current().examples.get(example_id)
        if example is None:
            raise web.HTTPError(404, "No such example in the gallery")
        view = self.get_body_argument("view", "voila")
        if view not in ("voila", example.view):
            raise web.HTTPError(400, f"This example opens only with {example.view}")
        built = await asyncio.to_thread(self.gallery.built_images.get)
        if example_state(example, built, set()) != READY:
            raise web.HTTPError(409, f"{example.title} is not built yet; try again later")

        user = self.current_user
        spawner = user.spawners.get(example.id) if user is not None else None
        if spawner is not None and spawner.active:  # already running: just go there
            self.redirect(self.pending_url(user, example, view), status=303)
            return
        refusal = self.gallery.limiter.check(self.request.remote_ip or "unknown")
        if refusal:
            await self.refuse(refusal, example)
            return

        async with self.gallery.lock:  # count and reserve together: no overshoot
            refusal = capacity_refusal(
                len(self.active_visitor_servers() | self.gallery.launching),
                max_servers=self.gallery.max_servers,
                visitor_servers=self.servers_of(user),
                max_per_visitor=self.gallery.max_servers_per_visitor,
            )
            if refusal is None:
                if user is None:  # created only once there is room: no orphaned visitors
                    user = self.create_visitor()
                    self.set_login_cookie(user)
                reservation = (user.name, example.id)
                self.gallery.launching.add(reservation)
        if refusal:
            await self.refuse(refusal, example)
            return
        try:
            user.get_or_create_spawner(example.id, "", replace_failed=True)
            await self.spawn_single_user(user, example.id, options={"image": example.image_name})
        finally:
            self.gallery.launching.discard(reservation)
        self.redirect(self.pending_url(user, example, view), status=303)

    def pending_url(self, user, example: Example, view: str) -> str:
        pending = url_path_join(self.hub.base_url, "spawn-pending", user.escaped_name, example.id)
        return url_concat(pending, {"next": landing_url(user, example, view)})

    def active_visitor_servers(self) -> set[tuple[str, str]]:
        return {
            (user.name, name)
            for user in self.users.values()
            if is_visitor(user)
            for name, spawner in user.spawners.items()
            if spawner.active
        }

    def servers_of(self, user) -> int:
        if user is None:
            return 0
        return sum(1 for spawner in user.spawners.values() if spawner.active)

    def create_visitor(self):
        """A temporary user: unguessable name, gallery-visitor role instead of `user`."""
        name = VISITOR_PREFIX + secrets.token_hex(8)
        user = self.user_from_username(name)
        db = self.db
        roles.strip_role(db, entity=user.orm_user, role="user", commit=False)
        roles.grant_role(db, entity=user.orm_user, role=VISITOR_ROLE, commit=False)
        group = orm.Group.find(db, VISITOR_GROUP)
        user.orm_user.groups.append(group)
        db.commit()
        log.info("gallery: created temporary user %s", name)
        return user


BUILDER_API = "http://builder:8090/services/environments/api"


def make_gallery_context(settings: HubSettings, token: str) -> GalleryContext:
    """Wire the gallery's parts from the hub's settings (Docker for built images)."""
    client = docker.from_env()
    return GalleryContext(
        source=gallery_source(settings.gallery_file),
        built_images=CachedValue(partial(built_environment_images, client)),
        images_in_progress=CachedValue(partial(builds_in_progress, BUILDER_API, token)),
        limiter=LaunchRateLimiter(settings.launches_per_minute),
        max_servers=settings.max_servers,
        max_servers_per_visitor=settings.max_servers_per_visitor,
        thumbnails_dir=str(settings.thumbnails_dir),
    )


def gallery_handlers(gallery: GalleryContext) -> list[tuple]:
    kwargs = {"gallery": gallery}
    return [
        (r"/gallery", GalleryPageHandler, kwargs),
        (r"/gallery/launch/([a-z0-9-]{1,30})", LaunchHandler, kwargs),
        (r"/gallery/thumbnails/(.*)", web.StaticFileHandler, {"path": gallery.thumbnails_dir}),
    ]
