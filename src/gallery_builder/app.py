"""The builder's web server. For now: the health endpoint the stack's healthcheck calls."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import docker
from tornado import web

from gallery_builder.health import check_docker, check_state_dir, report

log = logging.getLogger("gallery_builder")


class HealthHandler(web.RequestHandler):
    """GET /health: 200 with each check when healthy, 503 naming the failing check."""

    def initialize(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    async def get(self) -> None:
        docker_check = await asyncio.to_thread(check_docker, _docker_ping)
        status, body = report([check_state_dir(self.state_dir), docker_check])
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


def _docker_ping() -> object:
    client = docker.from_env(timeout=5)
    try:
        return client.ping()
    finally:
        client.close()


def make_app(state_dir: Path) -> web.Application:
    return web.Application([(r"/health", HealthHandler, {"state_dir": state_dir})])


async def serve(port: int, state_dir: Path) -> None:
    make_app(state_dir).listen(port)
    log.info("builder listening on port %d, state in %s", port, state_dir)
    await asyncio.Event().wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state_dir = Path(os.environ.get("GALLERY_BUILDER_STATE_DIR", "/srv/builder/state"))
    port = int(os.environ.get("GALLERY_BUILDER_PORT", "8090"))
    asyncio.run(serve(port, state_dir))


if __name__ == "__main__":
    main()
