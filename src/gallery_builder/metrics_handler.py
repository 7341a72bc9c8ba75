"""GET /services/environments/metrics: the builder's Prometheus metrics (build_metrics.py).

For tokens with JupyterHub's `read:metrics` scope (Prometheus sends
`Authorization: Bearer <token>`); 401 without a token, 403 without the scope.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST
from tornado import web

from gallery_builder.handlers import BuilderContext

METRICS_SCOPE = "read:metrics"


class MetricsHandler(web.RequestHandler):
    def initialize(self, ctx: BuilderContext) -> None:
        self.ctx = ctx

    async def get(self) -> None:
        if self.ctx.metrics is None:
            raise web.HTTPError(404)
        hub_auth = self.ctx.hub_auth
        if not hub_auth.get_token(self, in_cookie=False):
            raise web.HTTPError(401, "send Authorization: Bearer <token with read:metrics>")
        user = await hub_auth.get_user(self, sync=False)
        if user is None or not hub_auth.check_scopes({METRICS_SCOPE}, user):
            raise web.HTTPError(403, f"the token needs the scope {METRICS_SCOPE}")
        queue = self.ctx.environments.queue
        body = await asyncio.to_thread(
            self.ctx.metrics.exposition, len(queue.queued()), len(queue.running())
        )
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
