"""A visitor back at an example the culler stopped: "This example has stopped", Launch again.

The idle culler stops idle examples, removes their named servers and deletes visitors
with no server left (`--cull-users`). The visitor's browser still has the app's URL,
`/user/gallery-<hex>/<example>/...`, which then reaches the hub (the proxy's route is
gone); JupyterHub would send it to the login page (the visitor no longer exists) or to
its "server not running" page for a default server nobody has. This handler sits in
front of JupyterHub's own for visitors' URLs and answers a browser with the gallery's
"stopped" page instead, carrying the share link's parameters to Launch again. A server
that still exists but stopped (or failed) keeps JupyterHub's page (not_running.html).
"""

from __future__ import annotations

from jupyterhub.handlers.base import UserUrlHandler
from tornado.httputil import parse_qs_bytes

from gallery_hub.gallery_handlers import GalleryContext
from gallery_hub.share_params import PREFIX, ParamError, form_fields, share_params
from gallery_hub.visitors import VISITOR_PREFIX

VISITOR_URL = rf"/user/(?P<user_name>{VISITOR_PREFIX}[0-9a-f]{{16}})(?P<user_path>/.*)?"


class StoppedExampleHandler(UserUrlHandler):
    def initialize(self, gallery: GalleryContext) -> None:
        self.gallery = gallery

    async def get(self, user_name: str, user_path: str | None):
        example_id = (user_path or "/").lstrip("/").split("/", 1)[0]
        example = self.gallery.source.current().examples.get(example_id)
        browser = "text/html" in self.request.headers.get("Accept", "")
        if example is None or not browser or not self.stopped(user_name, example_id):
            return await super().get(user_name, user_path)
        self.set_status(424)  # as JupyterHub's own "server not running" page
        html = await self.render_template(
            "gallery_stopped.html",
            example=example,
            fields=self.launch_fields(),
            xsrf=self.xsrf_token.decode(),
        )
        self.finish(html)

    def stopped(self, user_name: str, example_id: str) -> bool:
        """The visitor is gone, or it is this visitor and its example's server is gone."""
        user = self.find_user(user_name)
        if user is None:
            return True
        current = self.current_user
        if current is None or current.name != user_name:
            return False
        return example_id not in user.orm_user.orm_spawners

    def launch_fields(self) -> list[tuple[str, str]]:
        """The stopped app's query string, as the Launch form's `p.<name>` fields."""
        query = parse_qs_bytes(self.request.query, keep_blank_values=True)
        try:
            return form_fields(share_params({PREFIX + k: v for k, v in query.items()}))
        except ParamError:
            return []


def stopped_example_handlers(gallery: GalleryContext) -> list[tuple]:
    """Before JupyterHub's own /user/ handler (the authenticator's handlers come first)."""
    return [(VISITOR_URL, StoppedExampleHandler, {"gallery": gallery})]
