"""The builder's web server: the environments service and its health endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from jupyterhub.services.auth import HubOAuth
from tornado import web

from gallery_builder.after_build import AfterBuild
from gallery_builder.build_metrics import BuildMetrics
from gallery_builder.build_queue import BuildQueue
from gallery_builder.build_setup import build_boxes, build_runner, fetch_guard
from gallery_builder.build_store import BuildStore
from gallery_builder.builder_settings import BuilderSettings
from gallery_builder.data_fill import FillSettings
from gallery_builder.docker_images import DockerImages
from gallery_builder.environments import Environments, RequestRules
from gallery_builder.handlers import ACCESS_SCOPES, MAX_BODY_BYTES, BuilderContext, routes
from gallery_builder.health import check_docker, check_state_dir, report
from gallery_builder.log_events import LogEvents
from gallery_builder.metrics_handler import MetricsHandler
from gallery_builder.page import make_template_env
from gallery_common.hub_contract import (
    BUILDER_PORT,
    HUB_API_URL,
    OAUTH_CLIENT_ID,
    SERVICE_PREFIX,
    SERVICE_TOKEN_FILE,
)
from gallery_common.secret_files import read_or_create_secret

log = logging.getLogger("gallery_builder")

INTERRUPTED_REASON = "the builder restarted while this build was queued or running"
# How often previous images that a container kept are looked at again.
SWEEP_SECONDS = 15.0


class HealthHandler(web.RequestHandler):
    """GET /health: 200 with each check when healthy, 503 naming the failing check."""

    def initialize(self, state_dir: Path, images: DockerImages) -> None:
        self.state_dir = state_dir
        self.images = images

    async def get(self) -> None:
        # The builder's one Docker client: no new connection for every healthcheck.
        docker_check = await asyncio.to_thread(check_docker, lambda: self.images.api.ping())
        status, body = report([check_state_dir(self.state_dir), docker_check])
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


def read_service_token(path: Path, wait_s: float = 120) -> str:
    """The API token the hub generated for this service (the hub starts first)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            token = ""
        if token:
            return token
        if time.monotonic() > deadline:
            raise SystemExit(f"no service token at {path}: is the hub running?")
        time.sleep(1)


def make_hub_auth(api_token: str) -> HubOAuth:
    """JupyterHub's own OAuth client for services; the singleton its handlers look up."""
    return HubOAuth.instance(
        api_token=api_token,
        api_url=HUB_API_URL,
        hub_prefix="/hub/",
        base_url=SERVICE_PREFIX,
        oauth_client_id=OAUTH_CLIENT_ID,
        oauth_redirect_uri=SERVICE_PREFIX + "oauth_callback",
        access_scopes=set(ACCESS_SCOPES),
    )


def log_request(handler: web.RequestHandler) -> None:
    """Access log without query strings: they may carry an XSRF token."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING
    elapsed_ms = 1000.0 * handler.request.request_time()
    logging.getLogger("tornado.access").log(
        level, "%d %s %s %.2fms", status, handler.request.method, handler.request.path, elapsed_ms
    )


def make_app(ctx: BuilderContext, images: DockerImages, cookie_secret: str) -> web.Application:
    """The builder's tornado application: /health and the service's routes."""
    return web.Application(
        [
            (r"/health", HealthHandler, {"state_dir": ctx.settings.state_dir, "images": images}),
            *routes(ctx),
            (SERVICE_PREFIX + "metrics", MetricsHandler, {"ctx": ctx}),
        ],
        cookie_secret=cookie_secret,
        template_env=make_template_env(),
        # XSRF is checked after authentication (APIHandler.prepare), as JupyterHub does.
        xsrf_cookies=False,
        log_function=log_request,
    )


async def serve(settings: BuilderSettings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.state_dir.chmod(0o700)
    store = BuildStore(settings.state_dir / "builds.sqlite")
    interrupted = store.fail_interrupted(INTERRUPTED_REASON)
    if interrupted:
        log.warning("marked %d interrupted build(s) as failed", len(interrupted))
    events = LogEvents()
    images = DockerImages()
    # No build runs yet: temporary tags and boxes of builds cut off by a restart can go.
    leftovers = await asyncio.to_thread(images.remove_build_leftovers)
    if leftovers:
        log.warning("removed leftovers of interrupted builds: %s", ", ".join(leftovers))
    boxes = await asyncio.to_thread(build_boxes(settings, images).remove_leftovers)
    if boxes:
        log.warning("removed %d build box(es) of interrupted builds", boxes)
    guard = fetch_guard(settings, images)
    runner = build_runner(settings, images, guard=guard, spare_box=True, spare_repo2docker=True)
    # The first build need not wait for its box, nor for repo2docker's start-up.
    runner.make_spare_box()
    runner.make_spare_repo2docker()
    # After each build: the image check, and the data fill (gallery_builder.after_build).
    after_build = AfterBuild(
        runner,
        images=images,
        gallery_file=Path(os.environ.get("GALLERY_FILE_PATH", "/srv/gallery/gallery.yaml")),
        fill=FillSettings.from_env(os.environ),
    )
    if after_build.filler is not None:
        fills = await asyncio.to_thread(after_build.filler.remove_leftovers)
        if fills:
            log.warning("removed %d container(s) of interrupted data fills", fills)
    queue = BuildQueue(
        store,
        after_build,
        concurrency=settings.concurrency,
        timeout_s=settings.timeout_s,
        on_event=events.notify,
    )
    hub_auth = make_hub_auth(read_service_token(Path(SERVICE_TOKEN_FILE)))
    rules = RequestRules.from_settings(settings, host_addresses=guard.host_addresses)
    environments = Environments(
        store,
        queue,
        images,
        rules,
        keep_previous=settings.keep_previous,
        min_free_disk_gb=settings.min_free_disk_gb,
        stack=settings.stack,
    )
    metrics = BuildMetrics(store.list, lambda: images.api)
    ctx = BuilderContext(
        settings, environments, events, hub_auth, after_build=after_build, metrics=metrics
    )
    cookie_secret, _ = read_or_create_secret(settings.state_dir / "cookie-secret")
    queue.start()
    make_app(ctx, images, cookie_secret).listen(BUILDER_PORT, max_body_size=MAX_BODY_BYTES)
    log.info("builder listening on port %d, state in %s", BUILDER_PORT, settings.state_dir)
    sweeper = asyncio.create_task(sweep_forever(environments), name="sweep-previous-images")
    try:
        await stopped()
    finally:
        sweeper.cancel()
        await queue.stop()
        await runner.settle()  # the last builds' boxes are gone before the builder is
        await runner.end_spares()
        store.close()


async def stopped() -> None:
    """Until the container is stopped: as PID 1 the builder has no default SIGTERM action, so
    without this `docker stop` would wait its 10 s and kill it before the records are closed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("builder stopping")


async def sweep_forever(environments: Environments, every_s: float = SWEEP_SECONDS) -> None:
    """Remove previous images a container kept, once it is gone (and at start)."""
    while True:
        try:
            for note in await environments.sweep():
                if note.startswith("Removed"):
                    log.info("%s", note)
        except Exception:  # Docker away for a moment: try again next time
            log.exception("could not sweep previous images")
        await asyncio.sleep(every_s)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(BuilderSettings.from_env(os.environ)))


if __name__ == "__main__":
    main()
