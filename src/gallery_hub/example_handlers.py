"""One page per example, the status API, the badge, and the verification's pictures.

Routes (under /hub/):
    GET  gallery/api/examples               every example's state, image, commit, last
                                            verification and servers (JSON, public; the
                                            traceback only for admins)
    GET  gallery/<id>                       the example's page: OpenGraph and Twitter-card
                                            tags; a share link's `p.<name>` parameters are
                                            shown and passed to Launch
    GET  gallery/<id>/badge.svg             its state as a badge
    GET  gallery/<id>/thumbnail.png         the thumbnail made from its render
    GET  gallery/<id>/screenshot.png        the last verification's screenshot (admins)
    POST gallery/<id>/verify                verify it now (admins)
    POST gallery/verification/login         the verifier's browser logs in as the system
                                            visitor (one-time secret in a header)
"""

from __future__ import annotations

from pathlib import Path

from jupyterhub.utils import url_path_join
from tornado import web

from gallery_common.gallery_file import Example
from gallery_common.verifier_contract import LOGIN_HEADER
from gallery_hub.admission import visitor_servers
from gallery_hub.badge import badge_svg
from gallery_hub.gallery_handlers import GalleryBaseHandler, GalleryContext
from gallery_hub.share_params import ParamError, form_fields, share_params
from gallery_hub.system_visitor import ensure_system_visitor
from gallery_hub.visitors import is_visitor

EXAMPLE_ID = r"([a-z][a-z0-9-]{0,29})"
STATE_WORDS = {
    "verified": "verified",
    "broken": "broken",
    "incompatible": "cannot run here",
    "ready": "ready",
    "building": "building",
    "not-built": "not built",
}


class ExampleHandler(GalleryBaseHandler):
    def example(self, example_id: str) -> Example:
        example = self.gallery.source.current().examples.get(example_id)
        if example is None:
            raise web.HTTPError(404, "No such example in the gallery")
        return example

    def require_admin(self) -> None:
        if self.current_user is None or not self.current_user.admin:
            raise web.HTTPError(403, "Only admins may see or do this")


class ExamplePageHandler(ExampleHandler):
    async def get(self, example_id: str) -> None:
        example = self.example(example_id)
        try:
            params = share_params(self.request.query_arguments)
        except ParamError as e:
            raise web.HTTPError(400, str(e)) from None
        built, building = await self.built_and_building()
        user = self.current_user
        card = self.card(example, built, building, user)
        origin = self.public_origin()
        thumbnail = card["thumbnail"]
        if thumbnail and not thumbnail.startswith(("http://", "https://")):
            thumbnail = origin + thumbnail
        html = await self.render_template(
            "gallery_example.html",
            card=card,
            params=params,
            fields=form_fields(params),
            page_url=origin + self.request.uri,
            og_image=thumbnail,
            is_admin=bool(user is not None and user.admin),
            xsrf=self.xsrf_token.decode(),
        )
        self.finish(html)


class ExamplesAPIHandler(ExampleHandler):
    async def get(self) -> None:
        built, building = await self.built_and_building()
        user = self.current_user
        admin = bool(user is not None and user.admin)
        servers = visitor_servers(self.users.values(), is_visitor)
        examples = []
        for example in self.gallery.source.current().examples.values():
            card = self.card(example, built, building, None)
            environment = built.get(example.image_name)
            result = card["verification"]
            verification = None
            if result is not None:
                verification = {
                    "passed": result.passed,
                    "at": result.at,
                    "render_s": result.render_s,
                    "total_s": result.total_s,
                    "image_id": result.image_id,
                    "error": _error_json(result.error, admin),
                }
            examples.append(
                {
                    "id": example.id,
                    "title": example.title,
                    "state": card["state"],
                    "image": example.image_name,
                    "commit": environment.labels.commit if environment else None,
                    "building": example.image_name in building,
                    "verifying": card["verifying"],
                    "last_verification": verification,
                    "servers_running": sum(1 for _, name in servers.ready if name == example.id),
                    "servers_starting": sum(1 for _, name in servers.pending if name == example.id),
                    "page_url": card["page"],
                    "badge_url": url_path_join(card["page"], "badge.svg"),
                    "thumbnail_url": card["thumbnail"],
                }
            )
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish({"examples": examples})


def _error_json(error, admin: bool) -> dict | None:
    if error is None:
        return None
    data = error.to_json()
    if not admin:
        data.pop("traceback", None)  # what raised and where, not the code around it
    return data


class BadgeHandler(ExampleHandler):
    async def get(self, example_id: str) -> None:
        example = self.example(example_id)
        built, building = await self.built_and_building()
        state = self.card(example, built, building, None)["state"]
        self.set_header("Content-Type", "image/svg+xml; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, max-age=0")
        self.finish(badge_svg("gallery", STATE_WORDS.get(state, state), state))


class PictureHandler(ExampleHandler):
    """The verification's PNGs: the thumbnail for everyone, the screenshot for admins."""

    def initialize(self, gallery: GalleryContext, kind: str) -> None:
        super().initialize(gallery)
        self.kind = kind

    async def get(self, example_id: str) -> None:
        self.example(example_id)
        results = self.gallery.verification.results()
        if self.kind == "screenshot":
            self.require_admin()
            path: Path = results.screenshot_path(example_id)
            self.set_header("Cache-Control", "private, no-store")
        else:
            path = results.thumbnail_path(example_id)
            self.set_header("Cache-Control", "public, max-age=300")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise web.HTTPError(404, "Not verified yet") from None
        self.set_header("Content-Type", "image/png")
        self.finish(data)


class VerifyNowHandler(ExampleHandler):
    @web.authenticated
    async def post(self, example_id: str) -> None:
        example = self.example(example_id)
        self.require_admin()
        if self.gallery.verifier is None:
            raise web.HTTPError(409, "Verification is off on this gallery")
        self.gallery.verifier.request(example.id)
        self.redirect(url_path_join(self.hub.base_url, "gallery", example.id), status=303)


class VerifierLoginHandler(GalleryBaseHandler):
    """The verifier's browser becomes the system visitor: the hub's own login cookie."""

    def check_xsrf_cookie(self) -> None:
        """The one-time secret in a header is the proof here; no form, no cookie yet."""

    async def post(self) -> None:
        secret = self.request.headers.get(LOGIN_HEADER, "")
        verifier = self.gallery.verifier
        if not secret or verifier is None or not verifier.accept_login(secret):
            raise web.HTTPError(403, "Not a login of the gallery's verification")
        self.set_login_cookie(ensure_system_visitor(verifier.app))
        self.set_status(204)
        self.finish()


def example_handlers(gallery: GalleryContext) -> list[tuple]:
    kwargs = {"gallery": gallery}
    return [
        (r"/gallery/api/examples", ExamplesAPIHandler, kwargs),
        (r"/gallery/verification/login", VerifierLoginHandler, kwargs),
        (rf"/gallery/{EXAMPLE_ID}", ExamplePageHandler, kwargs),
        (rf"/gallery/{EXAMPLE_ID}/badge\.svg", BadgeHandler, kwargs),
        (rf"/gallery/{EXAMPLE_ID}/thumbnail\.png", PictureHandler, {**kwargs, "kind": "thumb"}),
        (
            rf"/gallery/{EXAMPLE_ID}/screenshot\.png",
            PictureHandler,
            {**kwargs, "kind": "screenshot"},
        ),
        (rf"/gallery/{EXAMPLE_ID}/verify", VerifyNowHandler, kwargs),
    ]
