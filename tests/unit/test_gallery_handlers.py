"""The gallery's pages in a real JupyterHub, in-process: no Docker, no proxy process.

A JupyterHub app is initialized with the gallery's authenticator and a spawner whose
Docker parts are replaced; its tornado application is served on a loopback port and
driven over HTTP, as a browser would (cookies, XSRF tokens, redirects).
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import ClassVar
from urllib.parse import urlencode

import pytest
import yaml
from jupyterhub.app import JupyterHub
from jupyterhub.proxy import Proxy
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer

from gallery_common.image_compatibility import ImageFacts
from gallery_common.image_labels import MARKER_LABEL, MARKER_VALUE, parse_labels
from gallery_hub import authenticator as authenticator_module
from gallery_hub.environments import Environment
from gallery_hub.gallery_limits import GalleryLimits
from gallery_hub.spawner import GallerySpawner
from gallery_hub.visitors import VISITOR_GROUP, WARM_GROUP, visitor_role

XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')
# What the image check found, per image (tests fill it in).
FACTS: dict = {}

GALLERY = {
    "examples": {
        "demo": {
            "title": "Demo",
            "description": "The answer.",
            "path": "app.ipynb",
            "repo_url": "https://git.example.org/demo",
            "image_name": "gallery-demo:main",
            "image_url": "d.svg",
        },
        "unbuilt": {
            "title": "Not yet",
            "path": "app.ipynb",
            "repo_url": "https://git.example.org/none",
            "image_name": "none:v1",
            "image_url": "d.svg",
        },
    }
}


class MemoryProxy(Proxy):
    """Routes in a dict: what JupyterHub needs of a proxy, without a process."""

    should_start = False
    routes: ClassVar[dict] = {}

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


class StubSpawner(GallerySpawner):
    """The gallery's rules and gate, then a server that "starts" at once."""

    started: ClassVar[list] = []

    async def start_environment(self):
        self.started.append((self.user.name, self.name, self.user_options.get("image")))
        return ("127.0.0.1", 1)

    async def wait_until_answering(self, url):
        pass

    async def poll(self):
        return None

    async def stop(self, now=False):
        self.release()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Cookies and an HTTP client, against the in-process hub."""

    def __init__(self, base: str):
        self.base = base
        self.cookies: dict[str, str] = {}
        self.client = AsyncHTTPClient(force_instance=True)

    async def request(self, method, path, body=None):
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        request = HTTPRequest(
            self.base + path,
            method=method,
            headers=headers,
            body=urlencode(body) if body is not None else None,
            follow_redirects=False,
        )
        answer = await self.client.fetch(request, raise_error=False)
        for header in answer.headers.get_list("Set-Cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return answer

    async def gallery_form(self):
        page = await self.request("GET", "/hub/gallery")
        match = XSRF_FIELD.search(page.body.decode())
        return page, match.group(1) if match else None

    async def launch(self, example="demo"):
        _, xsrf = await self.gallery_form()
        return await self.request(
            "POST", f"/hub/gallery/launch/{example}", {"_xsrf": xsrf, "view": "voila"}
        )


@pytest.fixture
def hub_config(tmp_path, monkeypatch):
    gallery = tmp_path / "gallery.yaml"
    gallery.write_text(yaml.safe_dump(GALLERY))
    labels = parse_labels({MARKER_LABEL: MARKER_VALUE})
    FACTS.clear()  # a test may say what the image check found in an image

    def built(client):
        return {
            "gallery-demo:main": Environment(
                "gallery-demo:main", labels, FACTS.get("gallery-demo:main")
            )
        }

    monkeypatch.setattr(authenticator_module, "built_environments", built)
    StubSpawner.started = []
    MemoryProxy.routes = {}
    GalleryLimits.clear_instance()
    JupyterHub.clear_instance()

    def make(**limits):
        app = JupyterHub.instance(
            db_url="sqlite://",
            cookie_secret=b"x" * 32,
            hub_port=free_port(),
            allow_named_servers=True,
            authenticator_class="gallery_hub.authenticator.GalleryAuthenticator",
            spawner_class=StubSpawner,
            proxy_class=MemoryProxy,
            template_paths=["hub/templates"],
            load_groups={VISITOR_GROUP: {"users": []}, WARM_GROUP: {"users": []}},
            load_roles=[visitor_role()],
        )
        app.config.GalleryHandlersMixin.gallery_file = str(gallery)
        app.config.GalleryHandlersMixin.thumbnails_dir = str(tmp_path)
        app.config.GallerySpawner.gallery_file = str(gallery)
        app.config.Authenticator.allowed_users = {"admin"}
        for name, value in limits.items():
            setattr(app.config.GalleryLimits, name, value)
        return app

    yield make
    GalleryLimits.clear_instance()
    JupyterHub.clear_instance()


def serve(make, scenario, **limits):
    """Initialize a hub, serve it on a loopback port, run `scenario(app, browser_factory)`."""

    async def main():
        app = make(**limits)
        await app.initialize([])
        port = free_port()
        server = HTTPServer(app.tornado_application, xheaders=True)
        server.listen(port, "127.0.0.1")
        try:
            await scenario(app, lambda: Browser(f"http://127.0.0.1:{port}"))
        finally:
            server.stop()

    asyncio.run(main())


def test_the_gallery_shows_each_example_with_its_state(hub_config):
    async def scenario(app, browser):
        page, xsrf = await browser().gallery_form()
        html = page.body.decode()
        assert page.code == 200 and xsrf
        assert 'data-example="demo" data-state="ready"' in html
        assert 'data-example="unbuilt" data-state="not-built"' in html

    serve(hub_config, scenario)


def test_an_example_whose_image_cannot_run_says_why_and_is_not_launched(hub_config):
    FACTS["gallery-demo:main"] = ImageFacts(jupyterhub="1.4.0", singleuser=True)

    async def scenario(app, browser):
        visitor = browser()
        page, _ = await visitor.gallery_form()
        html = page.body.decode()
        assert 'data-example="demo" data-state="incompatible"' in html
        assert "the image has jupyterhub 1.4.0, the hub runs JupyterHub 6" in html
        assert "launch-form" not in html.split('data-example="demo"')[1].split("</article>")[0]
        # A launch anyway (no form offers one: the XSRF token from the cookie).
        answer = await visitor.request(
            "POST", "/hub/gallery/launch/demo", {"_xsrf": visitor.cookies["_xsrf"]}
        )
        assert answer.code == 409 and b"cannot run here" in answer.body
        assert StubSpawner.started == []

    serve(hub_config, scenario)


def test_a_launch_makes_a_visitor_and_answers_with_the_progress_page(hub_config):
    async def scenario(app, browser):
        visitor = browser()
        answer = await visitor.launch()
        assert answer.code == 303
        location = answer.headers["Location"]
        assert re.match(r"/hub/spawn-pending/gallery-[0-9a-f]{16}/demo\?next=", location)
        name = re.search(r"gallery-[0-9a-f]{16}", location).group(0)
        assert "jupyterhub-hub-login" in visitor.cookies
        await asyncio.sleep(0.3)
        assert StubSpawner.started == [(name, "demo", "gallery-demo:main")]
        user = app.users[name]
        assert [g.name for g in user.groups] == [VISITOR_GROUP]
        assert [r.name for r in user.orm_user.roles] == []  # the role comes from the group
        # The same browser again: its running example, no second visitor.
        again = await visitor.launch()
        assert again.code == 303 and name in again.headers["Location"]
        assert len(StubSpawner.started) == 1

    serve(hub_config, scenario)


def test_a_cold_launch_during_a_claims_hold_makes_its_visitor_after_the_hold(hub_config):
    async def scenario(app, browser):
        visitor = browser()
        _, xsrf = await visitor.gallery_form()
        GalleryLimits.instance().start_queue().hold(0.5)  # what a claim does
        launch = asyncio.ensure_future(
            visitor.request("POST", "/hub/gallery/launch/demo", {"_xsrf": xsrf, "view": "voila"})
        )
        await asyncio.sleep(0.3)
        assert not launch.done() and visitors(app) == []  # no work on the hub yet
        answer = await asyncio.wait_for(launch, 5)
        assert answer.code == 303 and len(visitors(app)) == 1

    serve(hub_config, scenario)


def test_unknown_unbuilt_and_unsigned_launches_are_refused(hub_config):
    async def scenario(app, browser):
        visitor = browser()
        assert (await visitor.launch("no-such-example")).code == 404
        assert (await visitor.launch("unbuilt")).code == 409
        no_xsrf = await visitor.request("POST", "/hub/gallery/launch/demo", {"view": "voila"})
        assert no_xsrf.code == 403
        _, xsrf = await visitor.gallery_form()
        wrong_view = await visitor.request(
            "POST", "/hub/gallery/launch/demo", {"_xsrf": xsrf, "view": "lab"}
        )
        assert wrong_view.code == 400
        assert StubSpawner.started == []

    serve(hub_config, scenario)


def test_a_full_gallery_gives_the_busy_page_and_leaves_no_visitor(hub_config):
    async def scenario(app, browser):
        first = await browser().launch()
        assert first.code == 303
        await asyncio.sleep(0.3)
        busy = await browser().launch()
        assert busy.code == 429 and int(busy.headers["Retry-After"]) > 0
        assert "capacity" in busy.body.decode()
        visitors = [u for u in app.users.values() if u.name.startswith("gallery-")]
        assert len(visitors) == 1

    serve(hub_config, scenario, max_servers=1)


def test_the_address_limit_applies_to_launches(hub_config):
    async def scenario(app, browser):
        assert (await browser().launch()).code == 303
        refused = await browser().launch()
        assert refused.code == 429 and "address" in refused.body.decode()

    serve(hub_config, scenario, launches_per_minute=1)


def test_the_visitors_default_role_is_removed_at_start(hub_config):
    async def scenario(app, browser):
        # What an older release left: a visitor holding JupyterHub's default role.
        answer = await browser().launch()
        name = re.search(r"gallery-[0-9a-f]{16}", answer.headers["Location"]).group(0)
        from jupyterhub import orm, roles

        orm_user = orm.User.find(app.db, name)
        roles.grant_role(app.db, entity=orm_user, rolename="user")
        repaired = authenticator_module.strip_default_role_from_visitors(app.db)
        assert repaired == 1 and orm_user.roles == []

    serve(hub_config, scenario)


def visitors(app) -> list[str]:
    return [u.name for u in app.users.values() if u.name.startswith("gallery-")]


def test_a_start_that_fails_at_once_leaves_no_visitor(hub_config, monkeypatch):
    async def broken(self):
        raise RuntimeError("the image is gone")

    monkeypatch.setattr(StubSpawner, "start_environment", broken)

    async def scenario(app, browser):
        answer = await browser().launch()
        assert answer.code == 500
        assert visitors(app) == []

    serve(hub_config, scenario)


def test_a_start_that_fails_at_once_on_a_busy_hub_still_leaves_no_visitor(hub_config, monkeypatch):
    """The grace counts from the spawner's start, not the click: half a second of the hub's
    own bookkeeping first does not turn a failure at once into a progress page."""

    async def broken(self):
        raise RuntimeError("the image is gone")

    original = StubSpawner.start

    async def slow_start(self):
        await asyncio.sleep(0.5)
        return await original(self)

    monkeypatch.setattr(StubSpawner, "start_environment", broken)
    monkeypatch.setattr(StubSpawner, "start", slow_start)

    async def scenario(app, browser):
        answer = await browser().launch()
        assert answer.code == 500
        assert visitors(app) == []

    serve(hub_config, scenario)


def test_a_start_refused_by_the_spawners_own_check_gives_the_busy_page(hub_config, monkeypatch):
    from gallery_hub.launch_limits import Refusal
    from gallery_hub.spawner import LaunchRefused

    def refuse(self):
        raise LaunchRefused(Refusal(429, "The gallery is low on disk space right now.", 60))

    monkeypatch.setattr(StubSpawner, "admit", refuse)

    async def scenario(app, browser):
        answer = await browser().launch()
        assert answer.code == 429 and answer.headers["Retry-After"] == "60"
        assert "low on disk space" in answer.body.decode()
        assert visitors(app) == []

    serve(hub_config, scenario)


def test_a_click_on_an_example_with_a_warm_server_lands_on_the_app(
    hub_config, tmp_path, monkeypatch
):
    gallery = tmp_path / "gallery.yaml"
    warm_gallery = {"examples": {"demo": {**GALLERY["examples"]["demo"], "warm": 1}}}
    gallery.write_text(yaml.safe_dump(warm_gallery))
    from gallery_hub.warm_pool import WarmPool

    handed = []

    def claim(self, example_id):
        from jupyterhub import orm

        from gallery_hub.visitors import make_visitor

        orm_user = orm.User(name="gallery-0123456789abcdef")
        self.app.db.add(orm_user)
        self.app.db.commit()
        make_visitor(self.app.db, orm_user)
        handed.append(example_id)
        return self.app.users.add(orm_user)

    monkeypatch.setattr(WarmPool, "claim", claim)
    monkeypatch.setattr(WarmPool, "start", lambda self: None)

    def make(**limits):
        app = hub_config(**limits)
        app.config.GalleryHandlersMixin.warm_pool_token = "pool-token"
        return app

    async def scenario(app, browser):
        visitor = browser()
        answer = await visitor.launch()
        assert answer.code == 303
        assert answer.headers["Location"] == (
            "/user/gallery-0123456789abcdef/demo/voila/render/app.ipynb"
        )
        assert handed == ["demo"] and "jupyterhub-hub-login" in visitor.cookies
        assert StubSpawner.started == []  # nothing started for this click

    serve(make, scenario)


def test_thumbnails_are_served_or_linked(hub_config, tmp_path):
    (tmp_path / "d.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")

    async def scenario(app, browser):
        page, _ = await browser().gallery_form()
        assert 'src="/hub/gallery/thumbnails/d.svg"' in page.body.decode()
        image = await browser().request("GET", "/hub/gallery/thumbnails/d.svg")
        assert image.code == 200 and b"<svg" in image.body

    serve(hub_config, scenario)
