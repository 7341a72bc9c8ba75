"""HTTP handlers of the environments service: the page, the REST API, the log stream.

Routes (under the service prefix, hub_contract.SERVICE_PREFIX = /services/environments/):
    GET    ""                                  the Environments page
    GET    api/environments                    list (latest build of each image)
    POST   api/environments                    add: validate, queue a build -> 202
    GET    api/environments/default-name       the name a repository URL gets by default
    GET    api/environments/{id}               one build
    DELETE api/environments/{id}               delete the image and its builds
    POST   api/environments/{id}/rebuild       build the ref again -> 202
    POST   api/environments/{id}/cancel        cancel a queued or running build
    POST   api/environments/{id}/fill          fill the image's data (a job of its own) -> 202
    POST   api/environments/{id}/rollback      make a previous image current again
    POST   api/environments/prune              remove images no environment references
    GET    api/environments/{id}/log           Server-Sent Events, resumable
    GET    oauth_callback                      JupyterHub OAuth
    GET    metrics                             Prometheus (metrics_handler.py, read:metrics)
Who may: JupyterHub admins (scope admin-ui) and holders of custom:environments:manage,
checked by JupyterHub's own HubOAuth against the token's scopes; holders of
custom:environments:read may list; others get 403, anonymous requests 401.

The handlers translate between HTTP and `Environments`, which holds every rule. Every
refusal is a 4xx naming the field or the reason; Docker being unreachable is a 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from docker.errors import DockerException
from jupyterhub.services.auth import (
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    UserNotAllowed,
)
from requests.exceptions import RequestException
from tornado import web
from tornado.iostream import StreamClosedError

from gallery_builder.after_build import AfterBuild, annotate, queue_fill
from gallery_builder.build_metrics import BuildMetrics
from gallery_builder.build_request import ValidationError, derive_name
from gallery_builder.build_store import TERMINAL_STATES, BuildRecord
from gallery_builder.builder_settings import BuilderSettings
from gallery_builder.docker_errors import describe_docker_error
from gallery_builder.environments import Conflict, Environments, NotFound
from gallery_builder.log_events import LogEvents
from gallery_builder.page import STATIC_DIR, render_environments_page
from gallery_common.hub_contract import ADMIN_SCOPE, MANAGE_SCOPE, READ_SCOPE, SERVICE_PREFIX

log = logging.getLogger("gallery_builder")

# Either scope lets a token manage: the custom one (environment managers) or admin-ui,
# which only JupyterHub admins hold (the built-in admin role cannot be given extra scopes).
MANAGE_SCOPES = frozenset({MANAGE_SCOPE, ADMIN_SCOPE})
# Read-only listing, e.g. for the hub's gallery to show which examples are being built.
ACCESS_SCOPES = MANAGE_SCOPES | {READ_SCOPE}
KEEPALIVE_SECONDS = 15.0
# Builds run by the build-image command in another process append to the store without
# waking the stream: it also looks again this often.
RECHECK_SECONDS = 2.0
BUILD_ID_PATTERN = r"[0-9a-f]{32}"
# Request bodies larger than this are refused (400) before they are read whole.
MAX_BODY_BYTES = 1024 * 1024
# sqlite's integers are 64-bit: a larger Last-Event-ID means "after everything".
_MAX_EVENT_ID = 2**62
# Third-party browser assets (xterm.js), copied there by builder/Dockerfile.
VENDOR_DIR = os.environ.get("GALLERY_BUILDER_VENDOR_DIR", "/srv/builder-vendor")


@dataclass
class BuilderContext:
    """What the handlers share: passed to each handler's initialize()."""

    settings: BuilderSettings
    environments: Environments
    events: LogEvents
    hub_auth: HubOAuth
    # The image check and data fill after builds; None: neither (tests of other parts).
    after_build: AfterBuild | None = None
    metrics: BuildMetrics | None = None


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """Authenticates through the hub; remembers whether a known user was refused."""

    def initialize(self, ctx: BuilderContext) -> None:
        self.ctx = ctx
        self.environments = ctx.environments
        self.hub_auth = ctx.hub_auth
        self.refused_user: dict | None = None

    def check_hub_user(self, model: dict) -> dict:
        try:
            return super().check_hub_user(model)
        except UserNotAllowed:
            self.refused_user = model
            raise

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")


class APIHandler(BaseHandler):
    """JSON in and out; 401/403 instead of a login redirect; refusals become 400/404/409."""

    # Requests holders of the read scope alone may make (method names).
    read_only_methods: frozenset[str] = frozenset()

    async def prepare(self) -> None:
        await self.hub_auth.get_user(self, sync=False)
        if self.current_user is None:
            if self.refused_user is not None:
                raise web.HTTPError(403, f"admins and holders of {MANAGE_SCOPE} only")
            if self.request.method != "GET" and self.get_cookie(self.hub_auth.cookie_name):
                # HubOAuth ignores the login cookie of a POST without a valid XSRF token.
                raise web.HTTPError(403, "XSRF token missing or wrong: send X-XSRFToken")
            raise web.HTTPError(401, "log in to the hub, or send Authorization: token <token>")
        if self.request.method not in self.read_only_methods and not self.hub_auth.check_scopes(
            MANAGE_SCOPES, self.current_user
        ):
            raise web.HTTPError(403, f"admins and holders of {MANAGE_SCOPE} only")
        # After authentication, so token-authenticated scripts are exempt (as in JupyterHub).
        if self.request.method not in ("GET", "HEAD", "OPTIONS"):
            self.check_xsrf_cookie()

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[no-untyped-def]
        if isinstance(value, DockerException | RequestException):
            log.warning("%s %s: Docker: %s", self.request.method, self.request.path, value)
            return
        if isinstance(value, ValidationError | NotFound | Conflict):
            log.info("%s %s: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)

    def json_body(self) -> Any:
        if not self.request.body:
            return {}
        try:
            return json.loads(self.request.body)
        except (ValueError, RecursionError):  # RecursionError: nested beyond reason
            raise web.HTTPError(400, "the request body is not valid JSON") from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        body: dict[str, Any] = {"error": self._reason}
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, ValidationError):
            self.set_status(400)
            body = {"error": str(error), "field": error.field, "message": error.message}
        elif isinstance(error, NotFound | Conflict):
            self.set_status(404 if isinstance(error, NotFound) else 409)
            body = {"error": str(error)}
        elif isinstance(error, DockerException | RequestException):
            self.set_status(503)
            body = {"error": f"Docker: {describe_docker_error(error)}"}
        elif isinstance(error, web.HTTPError) and error.log_message:
            body = {"error": error.log_message % error.args if error.args else error.log_message}
        self.finish(body)

    def send_build(self, record: BuildRecord, status: int = 200) -> None:
        self.set_status(status)
        self.finish(record.to_json())

    def log_change(self, what: str, record: BuildRecord) -> None:
        log.info("%s %s of %s (%s)", what, record.id, record.image, self.current_user["name"])


class EnvironmentsAPIHandler(APIHandler):
    read_only_methods = frozenset({"GET"})

    async def get(self) -> None:
        overview = await self.environments.overview()
        # Each with `check`: what the image check found (after_build.compatibility_view).
        overview["environments"] = await annotate(overview["environments"], self.ctx.after_build)
        self.finish(overview)

    async def post(self) -> None:
        request = await self.environments.rules.parse_async(self.json_body())
        record = await self.environments.add(request)
        self.log_change("queued build", record)
        self.send_build(record, 202)


class DefaultNameAPIHandler(APIHandler):
    """The name the server gives an environment whose name is left blank (for the form)."""

    async def get(self) -> None:
        self.finish({"name": derive_name(self.get_argument("repository", ""))})


class EnvironmentAPIHandler(APIHandler):
    async def get(self, build_id: str) -> None:
        self.send_build(await self.environments.get(build_id))

    async def delete(self, build_id: str) -> None:
        record = await self.environments.delete(build_id)
        self.log_change("deleted environment", record)
        self.set_status(204)
        self.finish()


class RebuildAPIHandler(APIHandler):
    async def post(self, build_id: str) -> None:
        record = await self.environments.rebuild(build_id, self.json_body())
        self.log_change("queued rebuild", record)
        self.send_build(record, 202)


class CancelAPIHandler(APIHandler):
    async def post(self, build_id: str) -> None:
        record = await self.environments.cancel(build_id)
        self.log_change("cancelled build", record)
        self.send_build(record)


class FillAPIHandler(APIHandler):
    async def post(self, build_id: str) -> None:
        if self.ctx.after_build is None:
            raise Conflict("data fills are not configured on this builder")
        record = await queue_fill(self.environments, self.ctx.after_build, build_id)
        self.log_change("queued data fill", record)
        self.send_build(record, 202)


class RollbackAPIHandler(APIHandler):
    async def post(self, build_id: str) -> None:
        record = await self.environments.rollback(build_id, self.json_body())
        self.log_change("rolled back", record)
        self.send_build(record)


class PruneAPIHandler(APIHandler):
    async def post(self) -> None:
        result = await self.environments.prune()
        log.info("pruned %s (%s)", result["removed"] or "nothing", self.current_user["name"])
        self.finish(result)


class LogStreamHandler(APIHandler):
    """The build log as Server-Sent Events: replay, then push; resumable by Last-Event-ID."""

    async def get(self, build_id: str) -> None:
        await self.environments.get(build_id)
        after = self._last_event_id()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("X-Accel-Buffering", "no")
        store = self.environments.store
        wake = self.ctx.events.subscribe(build_id)
        quiet = 0.0
        try:
            while True:
                wake.clear()
                chunks = await asyncio.to_thread(store.read_log, build_id, after)
                record = await asyncio.to_thread(store.get, build_id)
                for seq, text in chunks:
                    self.write(f"id: {seq}\nevent: log\ndata: {json.dumps(text)}\n\n")
                    after = seq
                if record is None or record.state in TERMINAL_STATES:
                    state = record.to_json() if record else {"state": "deleted"}
                    self.write(f"event: state\ndata: {json.dumps(state)}\n\n")
                    await self.flush()
                    return
                await self.flush()
                try:
                    await asyncio.wait_for(wake.wait(), RECHECK_SECONDS)
                    quiet = 0.0
                except TimeoutError:
                    quiet += RECHECK_SECONDS
                    if quiet >= KEEPALIVE_SECONDS:
                        self.write(": keepalive\n\n")
                        quiet = 0.0
        except StreamClosedError:
            return
        finally:
            self.ctx.events.unsubscribe(build_id, wake)

    def _last_event_id(self) -> int:
        raw = self.request.headers.get("Last-Event-ID") or self.get_argument("after", "0")
        try:
            return min(max(0, int(raw)), _MAX_EVENT_ID)
        except ValueError:
            raise web.HTTPError(400, "Last-Event-ID must be a whole number") from None


class PageHandler(BaseHandler):
    """The Environments page; anonymous visitors are sent through the hub's login."""

    @web.authenticated
    def get(self) -> None:
        settings = self.ctx.settings
        html = render_environments_page(
            self.application.settings["template_env"],
            user=self.current_user,
            xsrf_token=self.xsrf_token.decode(),
            prefix=SERVICE_PREFIX,
            static_prefix=SERVICE_PREFIX + "static/",
            max_memory_gb=settings.max_memory_gb,
            max_cpu=settings.max_cpu,
        )
        self.finish(html)


def routes(ctx: BuilderContext) -> list[tuple]:
    """Every route of the service, under hub_contract.SERVICE_PREFIX."""
    prefix = SERVICE_PREFIX
    api = prefix + "api/environments"
    args = {"ctx": ctx}
    return [
        (prefix, PageHandler, args),
        (prefix + "oauth_callback", HubOAuthCallbackHandler, {}),
        (api, EnvironmentsAPIHandler, args),
        (api + "/default-name", DefaultNameAPIHandler, args),
        (api + "/prune", PruneAPIHandler, args),
        (rf"{api}/({BUILD_ID_PATTERN})", EnvironmentAPIHandler, args),
        (rf"{api}/({BUILD_ID_PATTERN})/rebuild", RebuildAPIHandler, args),
        (rf"{api}/({BUILD_ID_PATTERN})/cancel", CancelAPIHandler, args),
        (rf"{api}/({BUILD_ID_PATTERN})/fill", FillAPIHandler, args),
        (rf"{api}/({BUILD_ID_PATTERN})/rollback", RollbackAPIHandler, args),
        (rf"{api}/({BUILD_ID_PATTERN})/log", LogStreamHandler, args),
        (prefix + r"static/vendor/(.*)", web.StaticFileHandler, {"path": VENDOR_DIR}),
        (prefix + r"static/(.*)", web.StaticFileHandler, {"path": str(STATIC_DIR)}),
    ]
