"""The environments service over HTTP, in process: the real tornado app on a real BuildStore
in tmp_path and a real listening port, with a stub hub identity (HubOAuth asks no hub: the
tokens it knows are listed here) and a fake runner and Docker images.

Covers who may do what (401/403, the read scope), the XSRF rule for browser sessions, field
errors (400 naming the field), the 409 rules, the log stream (replay, push, Last-Event-ID),
and that docs/environments-api.yaml lists exactly the routes the app serves.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import yaml
from jupyterhub.services.auth import HubOAuth
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from gallery_builder import handlers
from gallery_builder.app import make_app
from gallery_builder.build_queue import BuildQueue
from gallery_builder.build_store import BuildState, BuildStore
from gallery_builder.builder_settings import BuilderSettings
from gallery_builder.environments import Environments, RequestRules
from gallery_builder.handlers import BuilderContext, routes
from gallery_builder.log_events import LogEvents
from gallery_common.hub_contract import (
    ADMIN_SCOPE,
    API_PREFIX,
    MANAGE_SCOPE,
    OAUTH_CLIENT_ID,
    READ_SCOPE,
    SERVICE_PREFIX,
)
from gallery_common.image_labels import make_labels

from .conftest import FakeImage, FakeImages, FakeRunner, fake_resolve

ROOT = Path(__file__).resolve().parents[2]
URL = "https://example.org/lab/demo.git"
OTHER_URL = "https://example.org/lab/other.git"
API = SERVICE_PREFIX + "api/environments"
COOKIE_SECRET = "cookie-secret-for-tests-" + "x" * 20
USERS = {
    "admin-token": {"name": "admin", "admin": True, "scopes": [ADMIN_SCOPE], "groups": []},
    "manager-token": {"name": "mia", "admin": False, "scopes": [MANAGE_SCOPE], "groups": []},
    "reader-token": {"name": "gallery", "kind": "service", "scopes": [READ_SCOPE]},
    "viewer-token": {"name": "vic", "admin": False, "scopes": ["read:users"], "groups": []},
}


class StubHubOAuth(HubOAuth):
    """HubOAuth that knows its tokens instead of asking the hub's API about them."""

    def user_for_token(self, token, use_cache=True, session_id="", *, sync=True):  # type: ignore[override]
        model = copy.deepcopy(USERS.get(token))
        if sync:
            return model

        async def answer() -> dict | None:
            return model

        return answer()


@dataclass
class Service:
    """The running app and what the tests look at behind it."""

    base: str
    store: BuildStore
    runner: FakeRunner
    images: FakeImages
    queue: BuildQueue
    client: AsyncHTTPClient

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "admin-token",
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> HTTPResponse:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"token {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes | str) else json.dumps(body)
        elif method in ("POST", "PUT"):
            data = b""
        return await self.client.fetch(
            self.base + path,
            method=method,
            body=data,
            headers=all_headers,
            raise_error=False,
            follow_redirects=False,
            allow_nonstandard_methods=True,
            **kwargs,
        )

    async def add(self, **body: Any) -> dict:
        response = await self.call("POST", API, body={"repository": URL, **body})
        assert response.code == 202, response.body
        return json.loads(response.body)

    async def ended(self, build_id: str) -> dict:
        record = await self.queue.wait(build_id)
        assert record is not None
        return record.to_json()


@asynccontextmanager
async def serve(tmp_path: Path) -> AsyncIterator[Service]:
    settings = BuilderSettings.from_env({"GALLERY_BUILDER_STATE_DIR": str(tmp_path / "state")})
    store = BuildStore(tmp_path / "state" / "builds.sqlite")
    events = LogEvents()
    runner = FakeRunner()
    queue = BuildQueue(store, runner, timeout_s=30, on_event=events.notify)
    images = FakeImages()
    rules = RequestRules(max_memory_gb=16, max_cpu=8, resolve=fake_resolve)
    hub_auth = StubHubOAuth(
        api_token="service-token",
        api_url="http://hub.invalid/hub/api",
        hub_prefix="/hub/",
        base_url=SERVICE_PREFIX,
        oauth_client_id=OAUTH_CLIENT_ID,
        oauth_redirect_uri=SERVICE_PREFIX + "oauth_callback",
        access_scopes=set(handlers.ACCESS_SCOPES),
    )
    environments = Environments(store, queue, images, rules, min_free_disk_gb=5, stack="local")
    ctx = BuilderContext(settings, environments, events, hub_auth)
    app = make_app(ctx, images, COOKIE_SECRET)  # type: ignore[arg-type]
    server = app.listen(0, address="127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    client = AsyncHTTPClient(force_instance=True)
    queue.start()
    try:
        yield Service(f"http://127.0.0.1:{port}", store, runner, images, queue, client)
    finally:
        client.close()
        server.stop()
        await queue.stop()
        store.close()


def scenario(test: Callable[[Service], Any]) -> Callable[[Path], None]:
    """Turn `async def test(service)` into a pytest test that gets a fresh service."""

    def run(tmp_path: Path) -> None:
        async def main() -> None:
            async with serve(tmp_path) as service:
                await test(service)

        asyncio.run(main())

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def body(response: HTTPResponse) -> Any:
    return json.loads(response.body) if response.body else None


# --- who may ------------------------------------------------------------------------------


@scenario
async def test_anonymous_requests_get_401(service: Service) -> None:
    response = await service.call("GET", API, token=None)
    assert response.code == 401
    assert "log in" in body(response)["error"]
    assert response.headers["Cache-Control"] == "no-store"
    posted = await service.call("POST", API, token=None, body={"repository": URL})
    assert posted.code == 401
    assert service.store.list() == []


@scenario
async def test_unknown_tokens_get_401(service: Service) -> None:
    assert (await service.call("GET", API, token="made-up")).code == 401


@scenario
async def test_users_without_the_scopes_get_403(service: Service) -> None:
    listed = await service.call("GET", API, token="viewer-token")
    assert listed.code == 403
    assert MANAGE_SCOPE in body(listed)["error"]
    added = await service.call("POST", API, token="viewer-token", body={"repository": URL})
    assert added.code == 403
    assert service.store.list() == []


@scenario
async def test_the_read_scope_may_list_but_not_change(service: Service) -> None:
    await service.add(name="demo")
    listed = await service.call("GET", API, token="reader-token")
    assert listed.code == 200
    assert [e["name"] for e in body(listed)["environments"]] == ["demo"]
    build_id = body(listed)["environments"][0]["id"]
    assert (await service.call("GET", f"{API}/{build_id}", token="reader-token")).code == 403
    refused = await service.call("POST", API, token="reader-token", body={"repository": URL})
    assert refused.code == 403
    for path in (f"{API}/{build_id}/rebuild", f"{API}/{build_id}/cancel"):
        assert (await service.call("POST", path, token="reader-token")).code == 403
    assert (await service.call("DELETE", f"{API}/{build_id}", token="reader-token")).code == 403


@scenario
async def test_admins_and_managers_may_manage(service: Service) -> None:
    for token in ("admin-token", "manager-token"):
        response = await service.call(
            "POST", API, token=token, body={"repository": URL, "name": f"by-{token[:5]}"}
        )
        assert response.code == 202, response.body


# --- browser sessions and XSRF --------------------------------------------------------------


def session_cookie(token: str) -> str:
    value = web.create_signed_value(COOKIE_SECRET, OAUTH_CLIENT_ID, token).decode()
    return f"{OAUTH_CLIENT_ID}={value}"


@scenario
async def test_a_browser_session_needs_the_xsrf_token_to_post(service: Service) -> None:
    login = session_cookie("admin-token")
    page = await service.call(
        "GET", SERVICE_PREFIX, token=None, headers={"Cookie": login, "Sec-Fetch-Mode": "navigate"}
    )
    assert page.code == 200
    html = page.body.decode()
    assert 'id="environments-page"' in html
    token = re.search(r'<meta name="xsrf-token" content="([^"]+)"', html)[1]
    xsrf_cookie = SimpleCookie(page.headers["Set-Cookie"])["_xsrf"].value
    cookies = f"{login}; _xsrf={xsrf_cookie}"

    listed = await service.call("GET", API, token=None, headers={"Cookie": cookies})
    assert listed.code == 200
    refused = await service.call(
        "POST", API, token=None, headers={"Cookie": cookies}, body={"repository": URL}
    )
    assert refused.code == 403
    assert "XSRF" in body(refused)["error"]
    assert service.store.list() == []
    accepted = await service.call(
        "POST",
        API,
        token=None,
        headers={"Cookie": cookies, "X-XSRFToken": token},
        body={"repository": URL},
    )
    assert accepted.code == 202, accepted.body


@scenario
async def test_the_page_sends_anonymous_visitors_to_the_hub_login(service: Service) -> None:
    page = await service.call("GET", SERVICE_PREFIX, token=None)
    assert page.code == 302
    assert page.headers["Location"].startswith("/hub/api/oauth2/authorize?")


@scenario
async def test_the_page_refuses_users_without_the_scopes(service: Service) -> None:
    page = await service.call("GET", SERVICE_PREFIX, token="viewer-token")
    assert page.code == 403


# --- adding ---------------------------------------------------------------------------------


@scenario
async def test_add_queues_a_build_and_lists_it(service: Service) -> None:
    build = await service.add(name="demo", memory=2, cpu="0.5")
    assert re.fullmatch(r"[0-9a-f]{32}", build["id"])
    assert (build["name"], build["repository"], build["memory_gb"], build["cpu"]) == (
        "demo",
        URL,
        2.0,
        0.5,
    )
    ended = await service.ended(build["id"])
    assert (ended["state"], ended["image"]) == ("built", "demo:main")
    one = await service.call("GET", f"{API}/{build['id']}")
    assert body(one) == ended
    answer = body(await service.call("GET", API))
    assert answer["environments"] == [{**ended, "previous": []}]
    assert set(answer["disk"]) == {"total_bytes", "used_bytes", "free_bytes", "min_free_bytes"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"repository": "http://127.0.0.1/repo.git"}, "repository"),
        ({"repository": "file:///srv/repo.git"}, "repository"),
        ({"repository": "/etc/passwd"}, "repository"),
        ({"repository": "http://hub:8081/hub/api"}, "repository"),
        ({"ref": "main"}, "repository"),
        ({"repository": URL, "ref": "a..b"}, "ref"),
        ({"repository": URL, "name": "Bad Name"}, "name"),
        ({"repository": URL, "memory": "lots"}, "memory"),
        ({"repository": URL, "memory": 100000}, "memory"),
        ({"repository": URL, "cpu": 0}, "cpu"),
        ({"repository": URL, "colour": "red"}, "colour"),
        ({"repository": URL, "credentials": {"username": "u"}}, "password"),
        ([1, 2], "body"),
    ],
)
def test_bad_fields_are_refused_with_400_naming_the_field(tmp_path, payload, field) -> None:
    async def check(service: Service) -> None:
        response = await service.call("POST", API, body=payload)
        assert response.code == 400, response.body
        answer = body(response)
        assert answer["field"] == field
        assert answer["error"] == f"{field}: {answer['message']}"
        assert service.store.list() == []

    scenario(check)(tmp_path)


@scenario
async def test_a_body_that_is_not_json_is_refused(service: Service) -> None:
    response = await service.call("POST", API, body="{not json")
    assert response.code == 400
    assert body(response) == {"error": "the request body is not valid JSON"}


@scenario
async def test_the_default_name_comes_from_the_server(service: Service) -> None:
    for repository, name in (
        ("https://example.org/lab/My.Repo.git", "my.repo"),
        ("git@example.com:lab/repo.git", "repo"),
        ("example.com:repo", "example.com-repo"),  # scp-like needs a user: not a path
        ("", "environment"),
    ):
        response = await service.call(
            "GET", f"{API}/default-name?repository={repository}", token="manager-token"
        )
        assert (response.code, body(response)) == (200, {"name": name})


@scenario
async def test_a_name_another_repository_uses_is_a_conflict(service: Service) -> None:
    await service.ended((await service.add(name="demo"))["id"])
    response = await service.call("POST", API, body={"repository": OTHER_URL, "name": "demo"})
    assert response.code == 409
    assert body(response) == {"error": f"the name 'demo' is already used by {URL}"}
    assert len(service.store.list()) == 1


# --- rebuild, cancel, delete ----------------------------------------------------------------


@scenario
async def test_rebuild_reuses_a_built_commit(service: Service) -> None:
    first = await service.ended((await service.add(name="demo", memory=1))["id"])
    response = await service.call("POST", f"{API}/{first['id']}/rebuild")
    assert response.code == 202
    again = await service.ended(body(response)["id"])
    assert (again["state"], again["reused"], again["memory_gb"]) == ("built", True, 1.0)
    assert service.runner.calls[-1].name == "demo"


@scenario
async def test_rebuild_takes_only_credentials(service: Service) -> None:
    first = await service.ended((await service.add(name="demo"))["id"])
    response = await service.call("POST", f"{API}/{first['id']}/rebuild", body={"ref": "x"})
    assert response.code == 400
    assert body(response)["field"] == "body"
    with_credentials = await service.call(
        "POST",
        f"{API}/{first['id']}/rebuild",
        body={"credentials": {"username": "u", "password": "p"}},
    )
    assert with_credentials.code == 202
    assert service.runner.calls[-1].credentials.username == "u"


@scenario
async def test_a_local_build_cannot_be_rebuilt_through_the_api(service: Service) -> None:
    record = service.store.create(name="mine", image="mine:main", repository="file:///repo")
    service.store.set_state(record.id, BuildState.FAILED, reason="x")
    response = await service.call("POST", f"{API}/{record.id}/rebuild")
    assert response.code == 400
    assert body(response)["field"] == "repository"


@scenario
async def test_unknown_builds_are_404(service: Service) -> None:
    missing = "0" * 32
    for method, path in (
        ("GET", f"{API}/{missing}"),
        ("DELETE", f"{API}/{missing}"),
        ("POST", f"{API}/{missing}/rebuild"),
        ("POST", f"{API}/{missing}/cancel"),
        ("GET", f"{API}/{missing}/log"),
    ):
        response = await service.call(method, path)
        assert response.code == 404, (method, path)
        assert body(response) == {"error": f"no build {missing}"}
    assert (await service.call("GET", f"{API}/not-an-id")).code == 404


@scenario
async def test_cancel_a_running_build_and_not_an_ended_one(service: Service) -> None:
    service.runner.gate = asyncio.Event()
    build = await service.add(name="demo")
    response = await service.call("POST", f"{API}/{build['id']}/cancel")
    assert response.code == 200
    assert body(response)["state"] == "cancelled"
    again = await service.call("POST", f"{API}/{build['id']}/cancel")
    assert again.code == 409
    assert body(again) == {"error": f"build {build['id']} has already ended (cancelled)"}


@scenario
async def test_delete_removes_the_image_and_every_build_of_it(service: Service) -> None:
    first = await service.ended((await service.add(name="demo"))["id"])
    second = await service.ended(
        body(await service.call("POST", f"{API}/{first['id']}/rebuild"))["id"]
    )
    service.images.images["demo:main"] = FakeImage("sha256:1", {})
    response = await service.call("DELETE", f"{API}/{second['id']}")
    assert (response.code, response.body) == (204, b"")
    assert ("remove-pruning", "demo:main") in service.images.calls
    assert service.store.list() == []


@scenario
async def test_delete_is_refused_while_a_build_runs_or_a_server_uses_the_image(
    service: Service,
) -> None:
    service.runner.gate = asyncio.Event()
    build = await service.add(name="demo")
    running = await service.call("DELETE", f"{API}/{build['id']}")
    assert running.code == 409
    assert "queued or running: cancel it first" in body(running)["error"]
    service.runner.gate.set()
    await service.ended(build["id"])
    service.images.running["demo:main"] = ["jupyter-alice"]
    in_use = await service.call("DELETE", f"{API}/{build['id']}")
    assert in_use.code == 409
    assert body(in_use) == {
        "error": "demo:main is in use by 1 server(s): jupyter-alice; stop them first"
    }
    # A stopped container blocks it too (Docker would refuse): 409 naming it, never a 500.
    service.images.running.clear()
    service.images.stopped["demo:main"] = ["jupyter-bob"]
    stopped = await service.call("DELETE", f"{API}/{build['id']}")
    assert stopped.code == 409 and "jupyter-bob" in body(stopped)["error"]
    assert len(service.store.list()) == 1


# --- the log stream -------------------------------------------------------------------------


def parse_events(text: str) -> list[tuple[str, int | None, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            event_id = int(fields["id"]) if "id" in fields else None
            events.append((fields.get("event", "message"), event_id, json.loads(fields["data"])))
    return events


@scenario
async def test_the_log_is_replayed_and_resumable(service: Service) -> None:
    # Hold the build until its first line is stored: the two lines are two stored chunks.
    service.runner.gate = asyncio.Event()
    started = await service.add(name="demo")
    async with asyncio.timeout(5):
        while not service.store.read_log(started["id"]):
            await asyncio.sleep(0.01)
    service.runner.gate.set()
    build = await service.ended(started["id"])
    response = await service.call("GET", f"{API}/{build['id']}/log")
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    events = parse_events(response.body.decode())
    logs = [(event_id, data) for kind, event_id, data in events if kind == "log"]
    assert [data for _, data in logs] == [
        f"Building demo (build {build['id']})\n",
        "repo2docker output\n",
    ]
    assert events[-1] == ("state", None, build)
    resumed = await service.call(
        "GET", f"{API}/{build['id']}/log", headers={"Last-Event-ID": str(logs[0][0])}
    )
    assert [e[2] for e in parse_events(resumed.body.decode())] == ["repo2docker output\n", build]
    bad = await service.call("GET", f"{API}/{build['id']}/log", headers={"Last-Event-ID": "x"})
    assert bad.code == 400


@scenario
async def test_the_log_streams_while_the_build_runs(service: Service) -> None:
    service.runner.gate = asyncio.Event()
    build = await service.add(name="demo")
    received: list[bytes] = []

    def chunk(data: bytes) -> None:
        received.append(data)
        if b"Building demo" in b"".join(received):
            service.runner.gate.set()  # the first line arrived live: let the build finish

    response = await service.call(
        "GET", f"{API}/{build['id']}/log", streaming_callback=chunk, request_timeout=20
    )
    assert response.code == 200
    events = parse_events(b"".join(received).decode())
    assert [kind for kind, _, _ in events] == ["log", "log", "state"]
    assert events[-1][2]["state"] == "built"


# --- the routes and their description -------------------------------------------------------

METHODS = ("get", "post", "put", "patch", "delete")


def served_api_routes() -> set[tuple[str, str]]:
    """(method, path) of every API route, paths written as in the OpenAPI file."""
    prefix = API_PREFIX.rstrip("/")
    served = set()
    for pattern, handler, *_ in routes(None):  # type: ignore[arg-type]
        if not pattern.startswith(prefix + "/"):
            continue
        path = pattern[len(prefix) :].replace(f"({handlers.BUILD_ID_PATTERN})", "{id}")
        for method in METHODS:
            if method in vars(handler):
                served.add((method, path))
    return served


def test_the_api_description_lists_exactly_the_served_routes() -> None:
    spec = yaml.safe_load((ROOT / "docs" / "environments-api.yaml").read_text())
    assert spec["servers"] == [{"url": API_PREFIX.rstrip("/")}]
    described = {
        (method, path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in METHODS
    }
    assert described == served_api_routes()


def test_every_route_is_under_the_service_prefix() -> None:
    assert all(pattern.startswith(SERVICE_PREFIX) for pattern, *_ in routes(None))  # type: ignore[arg-type]


@scenario
async def test_health_reports_each_check(service: Service) -> None:
    # FakeImages has no Docker client: the docker check fails, the state dir check passes.
    response = await service.call("GET", "/health", token=None)
    assert response.code == 503
    checks = body(response)["checks"]
    assert (checks["state_dir"]["ok"], checks["docker"]["ok"]) == (True, False)


# --- roll back, prune, the disk floor --------------------------------------------------------


def _labels(commit: str, built: str) -> dict[str, str]:
    return make_labels(
        repository=URL,
        ref="main",
        commit=commit,
        display_name="demo",
        build_time=datetime.fromisoformat(built),
        stack="local",
    )


@scenario
async def test_roll_back_makes_the_previous_image_current_again(service: Service) -> None:
    build = await service.ended((await service.add(name="demo"))["id"])
    none_yet = await service.call("POST", f"{API}/{build['id']}/rollback", body={})
    assert none_yet.code == 409 and "no previous image" in body(none_yet)["error"]
    service.images.images["demo:main"] = FakeImage(
        "sha256:new", _labels("b" * 40, "2026-06-02T00:00:00+00:00")
    )
    service.images.images["demo:gallery-previous-main-old"] = FakeImage(
        "sha256:old", _labels("a" * 40, "2026-06-01T00:00:00+00:00"), size=77
    )
    listed = body(await service.call("GET", API))["environments"][0]["previous"]
    assert [(p["image"], p["commit"], p["size"]) for p in listed] == [
        ("demo:gallery-previous-main-old", "a" * 40, 77)
    ]
    wrong = await service.call("POST", f"{API}/{build['id']}/rollback", body={"image": "x:y"})
    assert wrong.code == 400 and body(wrong)["field"] == "image"
    bad = await service.call("POST", f"{API}/{build['id']}/rollback", body=[1])
    assert bad.code == 400 and body(bad)["field"] == "body"
    rolled = await service.call("POST", f"{API}/{build['id']}/rollback", body={})
    assert rolled.code == 200, rolled.body
    current = body(rolled)
    assert (current["state"], current["resolved_commit"], current["reused"]) == (
        "built",
        "a" * 40,
        True,
    )
    assert service.images.images["demo:main"].id == "sha256:old"
    assert service.images.images["demo:gallery-previous-main-new"].id == "sha256:new"
    assert "demo:gallery-previous-main-old" not in service.images.images
    listed = body(await service.call("GET", API))["environments"]
    assert [e["id"] for e in listed] == [current["id"]]
    assert [p["image"] for p in listed[0]["previous"]] == ["demo:gallery-previous-main-new"]


@scenario
async def test_prune_removes_only_what_no_environment_references(service: Service) -> None:
    await service.ended((await service.add(name="demo"))["id"])
    labels = _labels("a" * 40, "2026-06-01T00:00:00+00:00")
    service.images.images["demo:main"] = FakeImage("sha256:cur", labels)
    service.images.images["demo:gallery-previous-main-old"] = FakeImage("sha256:old", labels)
    service.images.images["gone:main"] = FakeImage("sha256:gone", labels, size=1000)
    service.images.images["used:main"] = FakeImage("sha256:used", labels)
    service.images.running["used:main"] = ["jupyter-alice"]
    other_stack = {**labels, "org.neurolang-gallery.stack": "another-stack"}
    service.images.images["theirs:main"] = FakeImage("sha256:theirs", other_stack)
    answer = await service.call("POST", f"{API}/prune")
    assert answer.code == 200, answer.body
    assert body(answer) == {
        "removed": ["gone:main"],
        "kept": [{"image": "used:main", "used_by": ["jupyter-alice"]}],
        "freed_bytes": 1000,
    }
    assert {"demo:main", "demo:gallery-previous-main-old", "used:main", "theirs:main"} <= set(
        service.images.images
    )


@scenario
async def test_builds_are_refused_with_a_reason_below_the_free_disk_floor(service: Service) -> None:
    service.images.free_bytes = 2 * 1024**3
    refused = await service.call("POST", API, body={"repository": URL})
    assert refused.code == 409
    assert (
        "only 2.0 GB free on Docker's data root, below GALLERY_MIN_FREE_DISK_GB (5 GB)"
        in (body(refused)["error"])
    )
    assert service.store.list() == []
    disk = body(await service.call("GET", API))["disk"]
    assert disk["free_bytes"] == 2 * 1024**3 and disk["min_free_bytes"] == 5 * 1024**3


@scenario
async def test_credentials_in_the_url_get_a_400_naming_the_field(service: Service) -> None:
    answer = await service.call("POST", API, body={"repository": "https://me@example.org/x.git"})
    assert answer.code == 400
    assert body(answer) == {
        "error": "repository: put credentials in the credentials fields, not in the URL",
        "field": "repository",
        "message": "put credentials in the credentials fields, not in the URL",
    }


FUZZ_SEED = 20261201


def _fuzz_values(rng: random.Random) -> list[Any]:
    huge = "x" * 200_000
    values: list[Any] = [
        None,
        True,
        0,
        -1,
        1e308,
        10**30,
        "",
        " ",
        huge,
        "\ud800",
        "\x00",
        "é" * 5000,
        [],
        [1, [2, [3]]],
        {},
        {"a": {"b": {}}},
        "http://",
        URL,
        "../../etc/passwd",
    ]
    return values + [rng.choice(values) for _ in range(10)]


@scenario
async def test_no_request_body_header_or_path_gets_a_500(service: Service) -> None:
    """Fuzz: malformed JSON, wrong types, huge strings, unknown ids; never a 500."""
    rng = random.Random(FUZZ_SEED)
    build = await service.ended((await service.add(name="demo"))["id"])
    answers: list[tuple[str, int]] = []
    raw_bodies = [b"{", b"[" * 50_000, b"\xff\xfe", b"null", b"1e999", b'{"a":' * 2000, b'"s"']
    for raw in raw_bodies:
        for path in (API, f"{API}/{build['id']}/rebuild", f"{API}/{build['id']}/rollback"):
            answer = await service.call("POST", path, body=raw)
            answers.append((f"{path} {raw[:20]!r}", answer.code))
    fields = ["repository", "ref", "name", "memory", "cpu", "credentials", "colour"]
    for _ in range(150):
        payload = {
            field: rng.choice(_fuzz_values(rng)) for field in rng.sample(fields, rng.randint(1, 4))
        }
        if rng.random() < 0.3:
            payload["credentials"] = {"username": rng.choice(_fuzz_values(rng)), "password": "p"}
        answer = await service.call("POST", API, body=payload)
        answers.append((repr(payload)[:80], answer.code))
    for method, path in [
        ("GET", f"{API}/{'0' * 32}"),
        ("DELETE", f"{API}/{'0' * 32}"),
        ("POST", f"{API}/{'0' * 32}/rebuild"),
        ("POST", f"{API}/{'0' * 32}/cancel"),
        ("POST", f"{API}/{'0' * 32}/rollback"),
        ("GET", f"{API}/{'0' * 32}/log"),
        ("GET", f"{API}/NOT-AN-ID"),
        ("GET", f"{API}/default-name?repository=" + "%F0%9F" * 3000),
        ("GET", f"{API}/{build['id']}/log?after=" + "9" * 40),
        ("GET", f"{API}/{build['id']}/log?after=-5"),
        ("GET", f"{API}/{build['id']}/log?after=" + "1" * 5000),
    ]:
        answer = await service.call(method, path)
        answers.append((path[-40:], answer.code))
    headers = {"Last-Event-ID": "99999999999999999999999999"}
    answer = await service.call("GET", f"{API}/{build['id']}/log", headers=headers)
    answers.append(("Last-Event-ID", answer.code))
    assert [a for a in answers if a[1] >= 500] == []
    assert all(code < 500 for _, code in answers)


def test_the_builder_stops_at_once_on_sigterm():
    """As a container's PID 1 it has no default SIGTERM action: it must stop by itself."""
    import os
    import signal

    from gallery_builder.app import stopped

    async def main():
        waiting = asyncio.ensure_future(stopped())
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(waiting, 5)

    asyncio.run(main())
