"""The public gallery inside the hub: the page, the one-click launch, the thumbnails.

Routes (under /hub/, added through Authenticator.get_handlers; the per-example pages, the
status API and the verification's are in example_handlers.py, the "stopped" page in
stopped_example.py):
    GET  gallery                      the gallery (no login)
    POST gallery/launch/<example>     launch an example (XSRF-protected form; `p.<name>`
                                      fields become the app's query string)
    GET  gallery/thumbnails/<file>    thumbnails from gallery/thumbnails/

A launch logs the browser in as a temporary user (the hub's own login cookie: no token
in any URL), starts a named server with the example's image, looked up here from the
example id, and sends the browser to JupyterHub's progress page, which lands on Voila.
The gallery's caps are checked here first (so a full gallery creates no visitor) and
again by the spawner, where every start passes; so is a broken example (its last
verification failed), which only admins may launch.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import get_browser_protocol, url_path_join
from tornado import web
from tornado.httputil import url_concat

from gallery_common.gallery_file import Example
from gallery_common.image_compatibility import example_problems, local_jupyterhub_major
from gallery_hub import gallery_metrics
from gallery_hub.admission import Admission, visitor_servers
from gallery_hub.gallery_source import GallerySource
from gallery_hub.gallery_state import (
    BROKEN,
    BUILT_STATES,
    INCOMPATIBLE,
    CachedValue,
    ago,
    example_state,
    in_progress,
)
from gallery_hub.gallery_verification import GalleryVerification
from gallery_hub.launch_limits import Refusal
from gallery_hub.share_params import ParamError, query_string, share_params
from gallery_hub.spawner import LaunchRefused, broken_refusal
from gallery_hub.start_queue import StartQueue
from gallery_hub.verification import Verification
from gallery_hub.visitors import VISITOR_PREFIX, is_visitor, make_visitor
from gallery_hub.warm_pool import WarmPool

log = logging.getLogger("gallery_hub")


@dataclass
class GalleryContext:
    """What the gallery handlers share (one per hub)."""

    source: GallerySource
    built_images: CachedValue  # image name -> Environment
    builder_environments: CachedValue  # the builder's latest build of each image
    admission: Callable[[], Admission]
    start_queue: Callable[[], StartQueue]
    thumbnails_dir: str
    verification: GalleryVerification
    pool: WarmPool | None = None
    verifier: Verification | None = None

    def problems(self, example: Example, built: dict | None = None) -> list[str]:
        """Why the builder's image check says this example cannot run here ([] when it can,
        or when its image is not built or was never checked). `built`: a snapshot of
        `built_images` (read again when not given), so a card's state and its reasons agree.
        """
        environment = (self.built_images.get() if built is None else built).get(example.image_name)
        facts = environment.facts if environment is not None else None
        return example_problems(facts, local_jupyterhub_major(), example.path)


def landing_url(user, example: Example, view: str, query: str = "") -> str:
    """Where the launched example opens: Voila (with the share link's query), or JupyterLab."""
    server = user.server_url(example.id)
    path = quote(example.path)
    if view == "notebook":
        return url_path_join(server, "lab", "tree", path)
    url = url_path_join(server, "voila", "render", path)
    return f"{url}?{query}" if query else url


class GalleryBaseHandler(BaseHandler):
    def initialize(self, gallery: GalleryContext) -> None:
        self.gallery = gallery

    def thumbnail_url(self, example: Example) -> str | None:
        """The card's picture: the example's own, else its render (None: not yet)."""
        if example.image_url.startswith(("http://", "https://")):
            return example.image_url
        if example.image_url:
            return url_path_join(self.hub.base_url, "gallery", "thumbnails", example.image_url)
        version = self.gallery.verification.results().thumbnail_version(example.id)
        if version is None:
            return None
        thumbnail = url_path_join(self.hub.base_url, "gallery", example.id, "thumbnail.png")
        return f"{thumbnail}?v={version}"

    def public_origin(self) -> str:
        """scheme://host of the site, as the browser sees it (for OpenGraph's absolute URLs)."""
        public_url = self.settings.get("public_url")
        if public_url:
            return f"{public_url.scheme}://{public_url.netloc}"
        return f"{get_browser_protocol(self.request)}://{self.request.host}"

    async def built_and_building(self) -> tuple[dict, set[str]]:
        built = await asyncio.to_thread(self.gallery.built_images.get)
        environments = await asyncio.to_thread(self.gallery.builder_environments.get)
        return built, in_progress(environments)

    def card(self, example: Example, built, building, user) -> dict:
        """What the gallery, the example's page and the status API say about an example."""
        result = self.gallery.verification.result_for(example.id)
        state = example_state(example, built, building, result)
        # Built, but the image check says the hub cannot run it: say why, offer no launch.
        problems = self.gallery.problems(example, built) if state in BUILT_STATES else []
        if problems:
            state = INCOMPATIBLE
        spawner = user.spawners.get(example.id) if user is not None else None
        verifier = self.gallery.verifier
        return {
            "example": example,
            "state": state,
            "problems": problems,
            "thumbnail": self.thumbnail_url(example),
            "page": url_path_join(self.hub.base_url, "gallery", example.id),
            "running": bool(spawner and spawner.active),
            "verification": result,
            "verified_ago": ago(result.when, datetime.now(UTC)) if result else None,
            "error": result.error.summary() if result and result.error else None,
            "verifying": bool(verifier and verifier.running == example.id),
        }

    async def refuse(
        self, refusal: Refusal, example: Example | None = None, *, counted: bool = False
    ) -> None:
        """The friendly "busy" page: it counts down and tries again by itself."""
        gallery_metrics.launch_refused(
            example.id if example else "", refusal.reason, count_reason=not counted
        )
        if refusal.reason == "broken":
            await self.unavailable(refusal, example)
            return
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

    async def unavailable(self, refusal: Refusal, example: Example | None) -> None:
        """A broken example: being fixed, nothing to retry by itself."""
        self.set_status(refusal.status)
        self.set_header("Retry-After", str(refusal.retry_after_s))
        html = await self.render_template(
            "gallery_unavailable.html", message=refusal.message, example=example
        )
        self.finish(html)


class GalleryPageHandler(GalleryBaseHandler):
    async def get(self) -> None:
        gallery = self.gallery.source.current()
        built, building = await self.built_and_building()
        user = self.current_user
        cards = [self.card(example, built, building, user) for example in gallery.examples.values()]
        # Admins see how many warm servers wait for each example.
        show_warm = bool(self.gallery.pool and user is not None and user.admin)
        warm = self.gallery.pool.ready_counts() if show_warm else {}
        for card in cards:
            card["warm"] = warm.get(card["example"].id, 0)
        html = await self.render_template(
            "gallery.html",
            cards=cards,
            xsrf=self.xsrf_token.decode(),
            show_warm=show_warm,
            is_admin=bool(user is not None and user.admin),
        )
        self.finish(html)


class LaunchHandler(GalleryBaseHandler):
    async def post(self, example_id: str) -> None:
        clicked = time.monotonic()
        example = self.gallery.source.current().examples.get(example_id)
        if example is None:
            raise web.HTTPError(404, "No such example in the gallery")
        view = self.get_body_argument("view", "voila")
        if view not in ("voila", example.view):
            raise web.HTTPError(400, f"This example opens only with {example.view}")
        try:
            query = query_string(share_params(self.request.body_arguments))
        except ParamError as e:
            raise web.HTTPError(400, str(e)) from None
        built = await asyncio.to_thread(self.gallery.built_images.get)
        result = self.gallery.verification.result_for(example.id)
        state = example_state(example, built, set(), result)
        if state not in BUILT_STATES:
            raise web.HTTPError(409, f"{example.title} is not built yet; try again later")
        problems = self.gallery.problems(example, built)
        if problems:
            raise web.HTTPError(409, f"{example.title} cannot run here: {'; '.join(problems)}")

        user = self.current_user
        if state == BROKEN and not (user is not None and user.admin):
            await self.refuse(broken_refusal(example, result), example)
            return
        spawner = user.spawners.get(example.id) if user is not None else None
        if spawner is not None and spawner.active:  # already running: just go there
            gallery_metrics.launch_ended(example.id, "running")
            self.redirect(self.pending_url(user, example, view, query), status=303)
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
                gallery_metrics.launch_ended(example.id, "warm", time.monotonic() - clicked)
                self.redirect(landing_url(warm, example, view, query), status=303)
                return
            address = None  # counted above
        # A claim just made holds new starts while its app renders: this launch's own
        # work on the hub (a visitor, its OAuth client) waits for the hold too.
        await self.gallery.start_queue().unheld()
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
        spawner = user.get_or_create_spawner(example.id, "", replace_failed=True)
        spawner.launch_clicked_at = clicked  # the spawner tells the metrics when it is up
        spawner.phase = None  # GallerySpawner.start sets it once past its own checks
        spawn = asyncio.ensure_future(
            self.spawn_single_user(user, example.id, options={"image": example.image_name})
        )
        # Answer at once with the progress page; only a start refused or failed right away
        # (the spawner's own admission, a missing image) is answered here.
        await first_moments(spawn, spawner)
        if spawn.done() and spawn.exception() is not None:
            error = spawn.exception()
            self.gallery.admission().release((user.name, example.id))
            await self.forget_if_empty(user, created)
            if isinstance(error, LaunchRefused):
                await self.refuse(error.refusal, example, counted=True)
                return
            raise error
        spawn.add_done_callback(_log_failed_start)
        self.redirect(self.pending_url(user, example, view, query), status=303)

    def pending_url(self, user, example: Example, view: str, query: str = "") -> str:
        pending = url_path_join(self.hub.base_url, "spawn-pending", user.escaped_name, example.id)
        return url_concat(pending, {"next": landing_url(user, example, view, query)})

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


async def first_moments(
    spawn: asyncio.Future, spawner, grace_s: float = 0.2, limit_s: float = 3.0
) -> None:
    """Until the start has failed, or has been under way (or in line) for `grace_s`.

    Counted from when the spawner's start got past its checks, not from the click: on a
    busy hub the spawn's own bookkeeping may take longer than the grace. At most `limit_s`.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    began = None
    while not spawn.done() and loop.time() < deadline:
        if began is None and getattr(spawner, "phase", None) is not None:
            began = loop.time()
        if began is not None and loop.time() - began >= grace_s:
            return
        await asyncio.wait([spawn], timeout=0.02)


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
