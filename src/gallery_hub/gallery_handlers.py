"""The public gallery inside the hub: the page, the one-click launch, the thumbnails.

Routes (under /hub/, added through Authenticator.get_handlers):
    GET  gallery                      the gallery (no login)
    POST gallery/launch/<example>     launch an example (XSRF-protected form)
    GET  gallery/thumbnails/<file>    thumbnails from gallery/thumbnails/

A launch logs the browser in as a temporary user (the hub's own login cookie: no token
in any URL), starts a named server with the example's image, looked up here from the
example id, and sends the browser to JupyterHub's progress page, which lands on Voila.
The gallery's caps are checked here first (so a full gallery creates no visitor) and
again by the spawner, where every start passes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httputil import url_concat

from gallery_common.gallery_file import Example
from gallery_hub.admission import Admission, visitor_servers
from gallery_hub.gallery_source import GallerySource
from gallery_hub.gallery_state import READY, CachedValue, example_state
from gallery_hub.launch_limits import Refusal
from gallery_hub.spawner import LaunchRefused
from gallery_hub.visitors import VISITOR_PREFIX, is_visitor, make_visitor
from gallery_hub.warm_pool import WarmPool

log = logging.getLogger("gallery_hub")


@dataclass
class GalleryContext:
    """What the gallery handlers share (one per hub)."""

    source: GallerySource
    built_images: CachedValue
    images_in_progress: CachedValue
    admission: Callable[[], Admission]
    thumbnails_dir: str
    pool: WarmPool | None = None


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
        # Admins see how many warm servers wait for each example.
        show_warm = bool(self.gallery.pool and user is not None and user.admin)
        warm = self.gallery.pool.ready_counts() if show_warm else {}
        for card in cards:
            card["warm"] = warm.get(card["example"].id, 0)
        html = await self.render_template(
            "gallery.html", cards=cards, xsrf=self.xsrf_token.decode(), show_warm=show_warm
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
        address = self.request.remote_ip or "unknown"
        if user is None and self.gallery.pool is not None and example.warm:
            refusal = self.gallery.admission().limiter.check(address)
            if refusal:
                await self.refuse(refusal, example)
                return
            warm = self.gallery.pool.claim(example.id)
            if warm is not None:  # started and rendered already: straight to the app
                self.set_login_cookie(warm)
                self.redirect(landing_url(warm, example, view), status=303)
                return
            address = None  # counted above
        if user is None or is_visitor(user):
            # Reserve room before a visitor exists: a full gallery leaves no visitor behind.
            name = user.name if user is not None else VISITOR_PREFIX + secrets.token_hex(8)
            refusal = self.gallery.admission().admit(
                (name, example.id),
                visitor_servers(self.users.values(), is_visitor),
                address=address,
            )
            if refusal:
                await self.refuse(refusal, example)
                return
        created = user is None
        if created:
            user = self.create_visitor(name)
            self.set_login_cookie(user)
        user.get_or_create_spawner(example.id, "", replace_failed=True)
        spawn = asyncio.ensure_future(
            self.spawn_single_user(user, example.id, options={"image": example.image_name})
        )
        # Answer at once with the progress page; only a start refused right away (by the
        # spawner's own admission) is answered here.
        await asyncio.wait([spawn], timeout=0.2)
        if spawn.done() and spawn.exception() is not None:
            error = spawn.exception()
            self.gallery.admission().release((user.name, example.id))
            await self.forget_if_empty(user, created)
            if isinstance(error, LaunchRefused):
                await self.refuse(error.refusal, example)
                return
            raise error
        spawn.add_done_callback(_log_failed_start)
        self.redirect(self.pending_url(user, example, view), status=303)

    def pending_url(self, user, example: Example, view: str) -> str:
        pending = url_path_join(self.hub.base_url, "spawn-pending", user.escaped_name, example.id)
        return url_concat(pending, {"next": landing_url(user, example, view)})

    def create_visitor(self, name: str):
        """A temporary user: unguessable name, the visitors' group, no default role."""
        user = self.user_from_username(name)
        make_visitor(self.db, user.orm_user)
        log.info("gallery: created temporary user %s", name)
        return user

    async def forget_if_empty(self, user, created: bool) -> None:
        """A visitor this launch created and that has no server is removed again."""
        if not created or any(s.active for s in user.spawners.values()):
            return
        self.clear_login_cookie()
        await user.delete_spawners()
        self.users.delete(user)
        self._jupyterhub_user = None  # this request's page must not show the removed user
        log.info("gallery: removed temporary user %s (its launch failed)", user.name)


def _log_failed_start(spawn: asyncio.Future) -> None:
    """A start that fails later shows on the progress page; retrieve it for asyncio."""
    if not spawn.cancelled() and spawn.exception() is not None:
        log.info("gallery: a launch failed after its progress page: %s", spawn.exception())


def gallery_handlers(gallery: GalleryContext) -> list[tuple]:
    kwargs = {"gallery": gallery}
    return [
        (r"/gallery", GalleryPageHandler, kwargs),
        (r"/gallery/launch/([a-z0-9-]{1,30})", LaunchHandler, kwargs),
        (r"/gallery/thumbnails/(.*)", web.StaticFileHandler, {"path": gallery.thumbnails_dir}),
    ]
