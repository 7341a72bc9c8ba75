"""Gallery visitors in the end-to-end tests: launch as a stranger would, look inside."""

from __future__ import annotations

import re
import subprocess
import time

import requests

XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')
VISITOR = re.compile(r"gallery-[0-9a-f]{16}")


def docker(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, input=input, timeout=300
    )


def hub_api(stack, token, method, path, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{stack.base_url}/hub/api{path}",
        headers={"Authorization": f"token {token}"},
        timeout=60,
        **kwargs,
    )


def visitor_names(stack, admin_token) -> set[str]:
    group = hub_api(stack, admin_token, "GET", "/groups/gallery-visitors").json()
    return set(group["users"])


def anonymous_launch_form(stack) -> tuple[requests.Session, str]:
    """A fresh visitor's session and the XSRF token of its gallery page."""
    session = requests.Session()
    page = session.get(stack.url("/hub/gallery"), timeout=30)
    assert page.status_code == 200
    return session, XSRF_FIELD.search(page.text).group(1)


def launch(session, stack, xsrf, example="demo") -> requests.Response:
    return session.post(
        stack.url(f"/hub/gallery/launch/{example}"),
        data={"_xsrf": xsrf, "view": "voila"},
        allow_redirects=False,
        timeout=120,
    )


def launched_visitor(stack, example="demo") -> tuple[requests.Session, str]:
    """A new visitor whose example is up and rendered: (its session, its name)."""
    session, xsrf = anonymous_launch_form(stack)
    response = launch(session, stack, xsrf, example)
    assert response.status_code == 303, response.text
    visitor = VISITOR.search(response.headers["Location"]).group(0)
    wait_rendered(session, stack.url(f"/user/{visitor}/{example}/voila/render/app.ipynb"))
    return session, visitor


def wait_rendered(session, url: str, text: str = "The answer is 42", timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = session.get(url, timeout=60)
        if page.status_code == 200 and text in page.text:
            return
        time.sleep(1)
    raise AssertionError(f"{url} never showed {text!r}")


def container_of(visitor: str, example: str = "demo") -> str:
    """The visitor's container (DockerSpawner escapes '-' in user names as -2d)."""
    name = f"{visitor.removeprefix('gallery-')}--{example}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = docker("ps", "-q", "--filter", f"name={name}").stdout.split()
        if found:
            return found[0]
        time.sleep(1)
    raise AssertionError(f"no running container for {visitor}/{example}")


def run_inside(container: str, script: str, *args: str) -> str:
    """Run a Python script inside a user container, as its user (uid 1000)."""
    result = docker("exec", "-i", container, "python3", "-", *args, input=script)
    assert result.returncode == 0, result.stderr
    return result.stdout


def remove_visitors(stack, admin_token) -> None:
    for name in visitor_names(stack, admin_token):
        user = hub_api(stack, admin_token, "GET", f"/users/{name}").json()
        for server in user.get("servers", {}):
            hub_api(
                stack,
                admin_token,
                "DELETE",
                f"/users/{name}/servers/{server}",
                json={"remove": True},
            )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = visitor_names(stack, admin_token)
        for name in names:
            hub_api(stack, admin_token, "DELETE", f"/users/{name}")
        if not names:
            return
        time.sleep(2)
