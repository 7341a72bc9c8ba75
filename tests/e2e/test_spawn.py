"""Users start a server in a built environment: limits, Voila, data, isolation."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import requests
from playwright.sync_api import expect

from .browser import chromium
from .environments_client import EnvironmentsClient
from .hub_login import login

DATA_MOUNT = "/home/jovyan/gallery/data"


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout


def hub_api(stack, token: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{stack.base_url}/hub/api{path}",
        headers={"Authorization": f"token {token}"},
        timeout=60,
        **kwargs,
    )


def wait_ready(stack, token: str, user: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = hub_api(stack, token, "GET", f"/users/{user}").json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return server
        time.sleep(1)
    raise AssertionError(f"{user}'s server is not ready after {timeout}s")


@pytest.fixture(scope="module")
def environment(stack, admin_token, gitserver) -> str:
    client = EnvironmentsClient(stack.base_url, admin_token)
    response = client.create(
        repository=f"{gitserver}/public/demo.git", name="spawn-demo", memory=0.5, cpu=0.5
    )
    assert response.status_code == 202, response.text
    build = client.wait(response.json()["id"])
    assert build["state"] == "built", client.log_text(build["id"])[-2000:]
    yield build["image"]
    hub_api(stack, admin_token, "DELETE", "/users/admin/server")
    time.sleep(3)
    client.request("DELETE", f"/{build['id']}")


@pytest.fixture(scope="module")
def admin_server(stack, admin_password, environment, artifacts) -> str:
    """The admin picks the environment on the spawn page and starts it, in a browser."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(stack.url("/hub/login?next=/hub/spawn"))
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", admin_password)
        page.click("input[type=submit]")
        choice = page.locator(f"label[data-image='{environment}']")
        expect(choice).to_be_visible()
        expect(choice).to_contain_text("spawn-demo")
        expect(choice).to_contain_text("0.5 GB")
        page.screenshot(path=str(artifacts / "spawn-page.png"))
        choice.locator("input[name=image]").check()
        page.locator("form#spawn_form [type=submit]").click()
        page.wait_for_url(re.compile(r".*/user/admin/.*"), timeout=120_000)
        page.goto(stack.url("/user/admin/voila/render/app.ipynb"))
        expect(page.get_by_text("The answer is 42")).to_be_visible(timeout=60_000)
        page.screenshot(path=str(artifacts / "voila-notebook.png"))
        page.goto(stack.url("/user/admin/voila/render/app.py"))
        expect(page.get_by_text("Hello from the NeuroLang Gallery demo app")).to_be_visible(
            timeout=60_000
        )
    return f"{stack.project}-user-admin"


def test_container_has_the_environment_limits_and_safety(admin_server):
    inspect = json.loads(docker("inspect", admin_server))[0]
    host = inspect["HostConfig"]
    assert host["Memory"] == 512 * 1024**2
    assert host.get("NanoCpus") == 500_000_000 or (
        host.get("CpuQuota") and host["CpuQuota"] / host["CpuPeriod"] == 0.5
    )
    assert host["PidsLimit"] == 512
    assert "no-new-privileges" in host["SecurityOpt"]
    assert inspect["Config"]["User"] == "1000"
    mounts = {m["Destination"]: m for m in inspect["Mounts"]}
    assert mounts[DATA_MOUNT]["RW"] is False
    assert mounts[DATA_MOUNT]["Name"].endswith("-gallery-data")
    assert "/var/run/docker.sock" not in mounts
    # The limits are really enforced by the kernel.
    limit = docker("exec", admin_server, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert int(limit) == 512 * 1024**2


def user_session(stack, admin_password):
    """A logged-in session that has also been through the server's own OAuth login."""
    session, _ = login(stack.base_url, "admin", admin_password)
    page = session.get(stack.url("/user/admin/voila/render/app.py"), timeout=60)
    assert page.status_code == 200
    return session


def test_user_api_through_traefik_with_the_users_cookie(stack, admin_password, admin_server):
    session = user_session(stack, admin_password)
    status = session.get(stack.url("/user/admin/api/status"), timeout=30)
    assert status.status_code == 200
    assert "started" in status.json()


def test_another_user_cannot_reach_the_server(stack, admin_token, admin_server):
    hub_api(stack, admin_token, "POST", "/users/e2e-other")
    token = hub_api(stack, admin_token, "POST", "/users/e2e-other/tokens", json={}).json()["token"]
    response = requests.get(
        stack.url("/user/admin/api/status"),
        headers={"Authorization": f"token {token}"},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code in (302, 403)
    if response.status_code == 302:
        assert "/user/admin/" not in response.headers["Location"].split("?")[0]


def test_the_api_refuses_an_image_that_is_not_an_environment(stack, admin_token, admin_server):
    hub_api(stack, admin_token, "POST", "/users/e2e-api")
    for image in ["neurolang-gallery/hub:latest", "python:3.12-slim", "no-such-image:1"]:
        response = hub_api(
            stack, admin_token, "POST", "/users/e2e-api/server", json={"image": image}
        )
        assert response.status_code == 400, (image, response.text)
        assert f"Image {image} is not a built environment" in response.json()["message"]
    assert not docker("ps", "-aq", "--filter", f"name={stack.project}-user-e2e-api")


def test_the_api_starts_a_named_server_in_an_environment(stack, admin_token, environment):
    response = hub_api(
        stack, admin_token, "POST", "/users/e2e-api/servers/second", json={"image": environment}
    )
    assert response.status_code in (201, 202), response.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        server = hub_api(stack, admin_token, "GET", "/users/e2e-api").json()["servers"]["second"]
        if server.get("ready"):
            break
        time.sleep(1)
    assert server["ready"]
    assert server["user_options"]["image"] == environment
    hub_api(stack, admin_token, "DELETE", "/users/e2e-api/servers/second")


PROBE = """
import os, socket
print("socket", os.path.exists("/var/run/docker.sock"))
for host, port in [("builder", 8090), ("traefik", 8080), ("traefik", 80), ("hub", 8001)]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(host, port, "open")
    except OSError as e:
        print(host, port, "closed", type(e).__name__)
"""


def test_a_user_container_cannot_reach_docker_or_the_stacks_internals(admin_server):
    out = docker("exec", admin_server, "python3", "-c", PROBE)
    assert "socket False" in out
    assert "open" not in out, out


def test_an_environment_in_use_cannot_be_deleted(stack, admin_token, environment, admin_server):
    client = EnvironmentsClient(stack.base_url, admin_token)
    build = next(e for e in client.list() if e["image"] == environment)
    refused = client.request("DELETE", f"/{build['id']}")
    assert refused.status_code == 409
    assert "in use by 1 server(s)" in refused.json()["error"]
    assert docker("image", "inspect", environment, check=False)


def test_servers_survive_a_hub_restart(stack, admin_token, admin_password, admin_server):
    stack.compose("restart", "hub")
    stack.wait_healthy()
    server = wait_ready(stack, admin_token, "admin")
    assert server["ready"] is True
    session = user_session(stack, admin_password)
    assert session.get(stack.url("/user/admin/api/status"), timeout=30).status_code == 200


def test_a_server_whose_container_vanished_is_marked_stopped(stack, admin_token, environment):
    started = hub_api(
        stack, admin_token, "POST", "/users/e2e-api/servers/vanish", json={"image": environment}
    )
    assert started.status_code in (201, 202), started.text
    deadline = time.monotonic() + 120
    while (
        not hub_api(stack, admin_token, "GET", "/users/e2e-api")
        .json()["servers"]
        .get("vanish", {})
        .get("ready")
    ):
        assert time.monotonic() < deadline, "the server never became ready"
        time.sleep(1)
    docker("rm", "-f", f"{stack.project}-user-e2e-2dapi--vanish")
    stack.compose("restart", "hub")
    stack.wait_healthy()
    servers = hub_api(stack, admin_token, "GET", "/users/e2e-api").json()["servers"]
    assert not servers.get("vanish", {}).get("ready")
