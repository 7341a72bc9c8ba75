"""An anonymous visitor stays inside the one example it launched.

Every way out is tried from where a stranger would try it: with the visitor's own
cookie against the hub, and from inside the visitor's running container.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .harness import OUTSIDE_HOST, run, start_outside
from .visitors import (
    VISITOR,
    anonymous_launch_form,
    container_of,
    docker,
    hub_api,
    launch,
    launched_visitor,
    remove_visitors,
    run_inside,
    visitor_names,
    wait_rendered,
)

OUTSIDE_MARKER = "hello from the outside test server"

TCP_PROBE = """
import json, socket, sys
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(host, port, "open")
    except OSError as e:
        print(host, port, "closed", type(e).__name__)
"""

# urllib honours the container's HTTP_PROXY / NO_PROXY, as a notebook's downloads do.
HTTP_PROBE = """
import json, sys, urllib.request
for url in json.loads(sys.argv[1]):
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            print(url, answer.status, answer.read(200).decode(errors="replace").strip())
    except Exception as e:
        print(url, "refused", getattr(e, "code", type(e).__name__))
"""

FORGED_REQUESTS = """
import sys, urllib.request
for i in range(20):
    request = urllib.request.Request(
        "http://hub:8081/hub/gallery",
        headers={"X-Real-Ip": f"203.0.113.{i + 1}", "X-Forwarded-For": f"198.51.100.{i + 1}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
print("sent")
"""


@pytest.fixture(scope="module")
def outside(stack) -> str:
    """The tests' "internet": a web server on a network only the egress proxy joins."""
    name = start_outside(stack, "outside", "index.html", OUTSIDE_MARKER)
    yield f"http://{OUTSIDE_HOST}/"
    run(["docker", "rm", "-f", name], check=False)


@pytest.fixture(scope="module")
def visitor(stack, demo_image, admin_token):
    """A visitor with its demo example running: (session, name, container id)."""
    remove_visitors(stack, admin_token)
    session, name = launched_visitor(stack)
    return session, name, container_of(name)


def host_addresses() -> set[str]:
    """Every IPv4 address of this host (its bridges' gateways among them), but loopback."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True)
    found = set(re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out.stdout))
    for network in docker("network", "ls", "-q").stdout.split():
        inspect = json.loads(docker("network", "inspect", network).stdout)[0]
        for config in (inspect.get("IPAM") or {}).get("Config") or []:
            if config.get("Gateway"):
                found.add(config["Gateway"])
    return {a for a in found if not a.startswith("127.")}


class Listener:
    """A TCP port open on every interface of this host; counts who connects."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))  # noqa: S104 (the point: is it reachable?)
        self.sock.listen(16)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections: list[tuple] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.open:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.connections.append(peer)
            conn.close()

    def close(self):
        self.open = False
        self.sock.close()


def test_a_visitors_cookie_starts_no_server_beyond_the_caps(stack, demo_image, admin_token):
    remove_visitors(stack, admin_token)
    with stack.hub_settings(GALLERY_MAX_SERVERS="1", GALLERY_LAUNCHES_PER_MINUTE="100"):
        session, name = launched_visitor(stack)
        headers = {"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")}

        def api(method, path, body=None):
            return session.request(
                method, stack.url(f"/hub/api{path}"), json=body, headers=headers, timeout=60
            )

        # Over the gallery's cap, however the start is asked for: 429.
        full = api("POST", f"/users/{name}/servers/pyapp", {"image": demo_image})
        assert full.status_code == 429, full.text
        assert "capacity" in full.json()["message"]
        spawn_get = session.get(stack.url(f"/hub/spawn/{name}/pyapp"), allow_redirects=False)
        assert spawn_get.status_code == 429, spawn_get.text[:500]
        spawn_post = session.post(
            stack.url(f"/hub/spawn/{name}/pyapp"),
            data={"_xsrf": headers["X-XSRFToken"], "image": demo_image},
            allow_redirects=False,
        )
        assert spawn_post.status_code == 429, spawn_post.text[:500]
        # What visitors may never do: 403.
        default = api("POST", f"/users/{name}/server", {"image": demo_image})
        assert default.status_code == 403, default.text
        free_form = api("POST", f"/users/{name}/servers/mine", {"image": demo_image})
        assert free_form.status_code == 403, free_form.text
        assert session.get(stack.url("/hub/spawn"), allow_redirects=False).status_code == 403
        other_user = api("POST", "/users/admin/servers/x", {"image": demo_image})
        assert other_user.status_code in (403, 404)

        # Another stranger meets the busy page, and is not left behind as a visitor.
        stranger, xsrf = anonymous_launch_form(stack)
        busy = launch(stranger, stack, xsrf)
        assert busy.status_code == 429 and "capacity" in busy.text
        assert visitor_names(stack, admin_token) == {name}

        servers = hub_api(stack, admin_token, "GET", f"/users/{name}").json()["servers"]
        assert [s for s, model in servers.items() if model["ready"] or model["pending"]] == ["demo"]
    remove_visitors(stack, admin_token)


def test_the_spawn_page_never_lists_environments_to_visitors(stack, visitor):
    session, name, _ = visitor
    page = session.get(stack.url(f"/hub/spawn/{name}/pyapp"), allow_redirects=False)
    assert "environment-choices" not in page.text
    assert "gallery-demo:main" not in page.text


def test_visitors_keep_exactly_their_role_through_hub_restarts(stack, visitor, admin_token):
    session, name, container = visitor
    for _ in range(2):
        stack.compose("restart", "hub")
        stack.wait_healthy()
    wait_rendered(session, stack.url(f"/user/{name}/demo/voila/render/app.ipynb"))
    model = hub_api(stack, admin_token, "GET", f"/users/{name}").json()
    assert model["roles"] == [] and model["groups"] == ["gallery-visitors"]
    group = hub_api(stack, admin_token, "GET", "/groups/gallery-visitors").json()
    assert group["roles"] == ["gallery-visitor"]
    headers = {"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")}
    token = session.post(
        stack.url(f"/hub/api/users/{name}/tokens"), json={}, headers=headers, timeout=30
    )
    assert token.status_code == 403, token.text
    assert session.get(stack.url("/hub/api/users"), headers=headers).status_code == 403
    assert session.get(stack.url("/hub/api/users/admin"), headers=headers).status_code in (
        403,
        404,
    )
    me = session.get(stack.url("/hub/api/user"), headers=headers).json()
    assert not [s for s in me["scopes"] if s.startswith(("tokens", "admin", "list:"))]
    assert docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() == "true"


def test_no_raw_connection_from_a_visitor_container_reaches_the_host(stack, visitor):
    _, _, container = visitor
    listener = Listener()
    try:
        targets = [
            [address, port]
            for address in sorted(host_addresses())
            for port in (listener.port, stack.http_port)
        ]
        targets += [["127.0.0.1", stack.http_port], ["169.254.169.254", 80]]
        targets += [["hub", 8000], ["builder", 8090], ["traefik", 80], ["traefik", 8082]]
        out = run_inside(container, TCP_PROBE, json.dumps(targets))
        time.sleep(1)
    finally:
        listener.close()
    assert " open" not in out, out
    assert listener.connections == []
    # What it needs is there: the hub's API and the egress proxy.
    needed = run_inside(container, TCP_PROBE, json.dumps([["hub", 8081], ["egress", 3128]]))
    assert needed.count(" open") == 2, needed


def test_the_egress_proxy_reaches_the_outside_but_nothing_private(stack, visitor, outside):
    _, _, container = visitor
    gateway = json.loads(docker("network", "inspect", f"{stack.project}-users").stdout)[0]
    gateway = gateway["IPAM"]["Config"][0]["Gateway"]
    urls = [
        outside,
        "http://169.254.169.254/latest/meta-data/",
        f"http://{gateway}:{stack.http_port}/",
        "http://172.17.0.1/",
        "http://10.20.30.40/",
        "http://[::1]/",  # squid must refuse it, not fall over
        "http://hub:8081/hub/health",  # NO_PROXY: the hub's API, directly
    ]
    out = run_inside(container, HTTP_PROBE, json.dumps(urls)).splitlines()
    answers = dict(line.split(" ", 1) for line in out)
    assert answers[outside].startswith("200") and OUTSIDE_MARKER in answers[outside]
    for url in urls[1:6]:
        assert answers[url] == "refused 403", (url, answers[url])
    assert answers["http://hub:8081/hub/health"].startswith("200")
    egress = stack.compose("ps", "--format", "json", "egress").stdout
    assert json.loads(egress.splitlines()[0])["Health"] == "healthy"
    assert "TCP_DENIED/403" in stack.logs("egress")


def test_with_egress_none_nothing_leaves_the_users_network(stack, visitor, outside):
    _, _, earlier = visitor
    with stack.settings(("egress", "hub"), GALLERY_USER_EGRESS="none"):
        _, name = launched_visitor(stack, "demo")
        container = container_of(name)
        env = docker("inspect", "-f", "{{json .Config.Env}}", container).stdout
        assert "HTTP_PROXY" not in env
        direct = run_inside(container, HTTP_PROBE, json.dumps([outside]))
        assert "refused" in direct, direct
        explicit = run_inside(
            container,
            HTTP_PROBE.replace(
                "urllib.request.urlopen(url",
                "urllib.request.build_opener(urllib.request.ProxyHandler("
                "{'http': 'http://egress:3128'})).open(url",
            ),
            json.dumps([outside]),
        )
        assert "refused 403" in explicit, explicit
        # The visitor from before the change kept its server through the recreation.
        assert docker("inspect", "-f", "{{.State.Running}}", earlier).stdout.strip() == "true"
        through_old_proxy = run_inside(earlier, HTTP_PROBE, json.dumps([outside]))
        assert "refused 403" in through_old_proxy, through_old_proxy


def test_forged_client_addresses_from_a_container_are_not_believed(stack, visitor):
    _, _, container = visitor
    address = docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
    ).stdout.strip()
    since = stack.compose("exec", "-T", "hub", "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    assert "sent" in run_inside(container, FORGED_REQUESTS)
    time.sleep(1)
    log = stack.compose("logs", "--no-color", "--since", since, "hub").stdout
    lines = [line for line in log.splitlines() if "GET /hub/gallery" in line]
    assert len([line for line in lines if f"@{address})" in line]) >= 20, lines
    assert "203.0.113." not in log and "198.51.100." not in log


def test_a_visitor_container_is_bounded(stack, visitor):
    _, _, container = visitor
    fill = docker(
        "exec", container, "sh", "-c", "dd if=/dev/zero of=/tmp/big bs=1M count=400; df -m /tmp"
    )
    assert "No space left on device" in fill.stderr, fill.stderr
    assert int(docker("exec", container, "stat", "-c", "%s", "/tmp/big").stdout) <= 256 * 2**20
    docker("exec", container, "rm", "-f", "/tmp/big")

    host = json.loads(docker("inspect", container).stdout)[0]["HostConfig"]
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "2", "max-size": "10m"},
    }
    # A process that prints without end: 30 MB into the server's own stdout.
    flood = docker(
        "exec",
        container,
        "sh",
        "-c",
        "python3 -c \"import sys; [sys.stdout.write('x' * 99999 + '\\n') for _ in range(300)]\""
        " > /proc/1/fd/1",
    )
    assert flood.returncode == 0, flood.stderr
    log_path = Path(docker("inspect", "-f", "{{.LogPath}}", container).stdout.strip())
    time.sleep(2)
    total = sum(p.stat().st_size for p in log_path.parent.glob(log_path.name + "*"))
    assert total <= 2 * 10 * 2**20 + 2**20, total


def test_low_disk_turns_launches_away_with_the_busy_page(stack, demo_image, admin_token):
    remove_visitors(stack, admin_token)
    with stack.hub_settings(GALLERY_MIN_FREE_DISK_GB="100000"):
        session, xsrf = anonymous_launch_form(stack)
        refused = launch(session, stack, xsrf)
        assert refused.status_code == 429, refused.text[:500]
        assert "disk space" in refused.text and int(refused.headers["Retry-After"]) > 0
        assert visitor_names(stack, admin_token) == set()
    assert not VISITOR.search(refused.text)
