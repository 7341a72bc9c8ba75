"""Benchmark: a gallery click until the rendered app, cold and from the warm pool.

Brings up the real stack (as the end-to-end tests do), builds the demo environment and, in
one run, measures:
- floor: `docker run` of the image with the command and limits the stack gives a visitor
  (`jupyterhub-singleuser` with Voila; same CPU, memory, pids, capabilities, user and
  /tmp), answering to a stand-in of the hub's API (benchmarks/standin_hub.py, in its own
  container), until Voila answers with the notebook's output: the least any launch could
  take; and the CPU its container used until then (times 20, over the host's cores: the
  least time a crowd of 20 can take). Also shown: Jupyter Server with Voila alone (what
  jupyterhub-singleuser adds);
- cold: 20 sequential launches, each a new visitor, from the POST of the Launch form until
  the rendered page holds the output (p50, p95; ratio and difference to the floor);
- warm: 20 sequential launches of an example with a warm server, the pool refilled
  between them (p50, p95);
- crowd floors: 20 of the floor's `docker run` asked for at the same moment, until the
  last renders: all started together, and 2 at a time as the stack starts them (what
  the host allows a crowd without the hub);
- 20 simultaneous cold launches (20 visitors, each on the gallery page already, click
  Launch at the same moment; counted from that click): time until the last is rendered
  (and its ratio to the crowd floor 2 at a time), failures, how long launches waited in
  line;
- 20 simultaneous launches against a pool of 5: time until the first 5 are rendered;
- memory: an idle warm server, and the hub's RSS with 40 servers running.

Usage: .venv/bin/python -m benchmarks.gallery_launch [--launches 20] [--crowd 20]
It removes everything it started, also when it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import requests
import yaml

from tests.e2e import harness as e2e
from tests.e2e.environments_client import EnvironmentsClient
from tests.e2e.hub_login import login

OUTPUT = "The answer is 42"
XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')
VISITOR = re.compile(r"(gallery-[0-9a-f]{16})")
# What the stack's spawner gives every user container (hub/jupyterhub_config.py).
VOILA_ARGS = [
    "--VoilaConfiguration.enable_nbextensions=True",
    '--VoilaConfiguration.extension_language_mapping={".py": "python"}',
]


def wait_for(url: str, session: requests.Session, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            page = session.get(url, timeout=60)
            if page.status_code == 200 and OUTPUT in page.text:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never showed the output")


def wait_progress(stack, session: requests.Session, visitor: str, example: str) -> float:
    """What JupyterHub's progress page does: follow the server's progress events to ready.
    Returns when (perf_counter) the launch was out of the start queue's line."""
    xsrf = session.cookies.get("_xsrf", path="/hub/")
    out_of_line = None
    url = stack.url(f"/hub/api/users/{visitor}/servers/{example}/progress")
    with session.get(url, params={"_xsrf": xsrf}, stream=True, timeout=600) as events:
        for line in events.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                message = event.get("message", "")
                # The first event is JupyterHub's own ("Server requested", progress 0).
                if out_of_line is None and event.get("progress", 0) > 0 and IN_LINE not in message:
                    out_of_line = time.perf_counter()
                if event.get("ready"):
                    return out_of_line or time.perf_counter()
                if event.get("failed"):
                    raise AssertionError(f"{visitor}'s {example} failed: {event.get('message')}")


START_CONCURRENCY = 2  # the stack's default GALLERY_START_CONCURRENCY
IN_LINE = "Waiting for a free slot"  # the progress page while a launch is in line
FLOOR_LIMITS = [
    "--memory", "2g", "--cpus", "1", "--pids-limit", "512", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges", "--user", "1000",
    "--tmpfs", "/tmp:rw,exec,nosuid,nodev,size=256m,mode=1777",  # noqa: S108
]  # fmt: skip
STANDIN_HUB = Path(__file__).with_name("standin_hub.py")
# What JupyterHub tells a server it starts (Spawner.get_env), for the stand-in hub.
SINGLEUSER_ENV = {
    "JUPYTERHUB_API_TOKEN": "floor-token",
    "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
    "JUPYTERHUB_ACTIVITY_URL": "http://hub:8081/hub/api/users/floor/activity",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-floor",
    "JUPYTERHUB_USER": "floor",
    "JUPYTERHUB_SERVER_NAME": "",
    "JUPYTERHUB_BASE_URL": "/",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/floor/",
    "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/floor/",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/floor/oauth_callback",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:servers!user=floor"]),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run(NamedTuple):
    seconds: float  # from `docker run` until the page shows the output
    cpu_s: float | None  # CPU time the container used until then (None: not readable)


def container_cpu_s(container: str) -> float | None:
    """CPU seconds a running container has used, from its cgroup (v1 or v2, cgroupfs or
    systemd driver); None where the host's layout is another."""
    for path, read in (
        (f"/sys/fs/cgroup/cpuacct/docker/{container}/cpuacct.usage", lambda t: int(t) / 1e9),
        (f"/sys/fs/cgroup/system.slice/docker-{container}.scope/cpu.stat", _usage_usec),
        (f"/sys/fs/cgroup/docker/{container}/cpu.stat", _usage_usec),
    ):
        try:
            return read(Path(path).read_text())
        except (OSError, ValueError):
            continue
    return None


def _usage_usec(text: str) -> float:
    return int(dict(line.split() for line in text.splitlines())["usage_usec"]) / 1e6


def timed_server(run_args: list[str], url: str, headers: dict[str, str]) -> Run:
    """`docker run` until `url` shows the notebook's output: the time, the CPU it took."""
    start = time.perf_counter()
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", *run_args], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        session = requests.Session()
        session.headers.update(headers)
        wait_for(url, session)
        return Run(time.perf_counter() - start, container_cpu_s(container))
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def floor_server(image: str) -> Run:
    """Jupyter Server with Voila alone, same limits as a visitor's container, no hub."""
    port = free_port()
    return timed_server(
        [
            "-p", f"127.0.0.1:{port}:8888", *FLOOR_LIMITS, image,
            "jupyter", "server", "--ip=0.0.0.0", "--port=8888", "--ServerApp.token=",
            "--ServerApp.password=", *VOILA_ARGS,
        ],
        f"http://127.0.0.1:{port}/voila/render/app.ipynb",
        {},
    )  # fmt: skip


@contextmanager
def standin_hub(image: str, project: str) -> Iterator[str]:
    """A network with the stand-in hub API on it (named "hub"); yields the network."""
    network = f"{project}-floor"
    subprocess.run(["docker", "network", "create", network], check=True, capture_output=True)
    hub = f"{project}-floor-hub"
    try:
        subprocess.run(
            [
                "docker", "run", "-d", "--rm", "--name", hub, "--network", network,
                "--network-alias", "hub", "--user", "1000",
                "-v", f"{STANDIN_HUB}:/standin_hub.py:ro", image, "python", "/standin_hub.py",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        yield network
    finally:
        subprocess.run(["docker", "rm", "-f", hub], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)


def floor_singleuser(image: str, network: str) -> Run:
    """The stack's own command (`jupyterhub-singleuser` with Voila) and limits, answering
    to the stand-in hub: what a launch costs without the hub's part of it."""
    port = free_port()
    env = [arg for name, value in SINGLEUSER_ENV.items() for arg in ("-e", f"{name}={value}")]
    return timed_server(
        [
            "--network", network, "-p", f"127.0.0.1:{port}:8888", *FLOOR_LIMITS, *env, image,
            "jupyterhub-singleuser", *VOILA_ARGS,
        ],
        f"http://127.0.0.1:{port}/user/floor/voila/render/app.ipynb",
        {"Authorization": "token floor-token"},
    )  # fmt: skip


def crowd_floor(image: str, network: str, count: int, at_once: int) -> float:
    """`count` floor servers asked for at the same moment, `at_once` of them starting at a
    time: seconds until the last renders (a crowd of cold launches without any hub)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=at_once) as threads:
        list(threads.map(lambda _: floor_singleuser(image, network), range(count)))
    return time.perf_counter() - start


def gallery_form(stack) -> tuple[requests.Session, str]:
    """A new visitor on the gallery page: its session and the page's XSRF token."""
    session = requests.Session()
    xsrf = XSRF_FIELD.search(session.get(stack.url("/hub/gallery"), timeout=60).text).group(1)
    return session, xsrf


def launch_until_rendered(
    stack, session: requests.Session, xsrf: str, example: str
) -> tuple[str, float]:
    """The visitor clicks Launch, then waits as its browser would: its name, and when
    (perf_counter) it was out of the start queue's line."""
    answer = session.post(
        stack.url(f"/hub/gallery/launch/{example}"),
        data={"_xsrf": xsrf},
        allow_redirects=False,
        timeout=300,
    )
    assert answer.status_code == 303, (answer.status_code, answer.text[:300])
    visitor = VISITOR.search(answer.headers["Location"]).group(1)
    out_of_line = time.perf_counter()
    if "/spawn-pending/" in answer.headers["Location"]:
        out_of_line = wait_progress(stack, session, visitor, example)
    wait_for(stack.url(f"/user/{visitor}/{example}/voila/render/app.ipynb"), session)
    return visitor, out_of_line


def click(stack, example: str) -> tuple[float, requests.Session, str]:
    """One new visitor clicks Launch: (seconds until rendered, its session, its name)."""
    session, xsrf = gallery_form(stack)
    start = time.perf_counter()
    visitor, _ = launch_until_rendered(stack, session, xsrf, example)
    return time.perf_counter() - start, session, visitor


def api(stack, token, method, path, **kwargs):
    return requests.request(
        method,
        f"{stack.base_url}/hub/api{path}",
        headers={"Authorization": f"token {token}"},
        timeout=120,
        **kwargs,
    )


def stop_visitors(stack, token: str) -> None:
    names = api(stack, token, "GET", "/groups/gallery-visitors").json()["users"]
    for name in names:
        for server in api(stack, token, "GET", f"/users/{name}").json().get("servers", {}):
            api(stack, token, "DELETE", f"/users/{name}/servers/{server}", json={"remove": True})
    deadline = time.monotonic() + 120
    while names and time.monotonic() < deadline:
        for name in names:
            api(stack, token, "DELETE", f"/users/{name}")
        names = api(stack, token, "GET", "/groups/gallery-visitors").json()["users"]
        time.sleep(1)


def warm_ready(stack, token, admin: requests.Session) -> int:
    group = api(stack, token, "GET", "/groups/gallery-warm").json()["users"]
    ready = 0
    for name in group:
        servers = api(stack, token, "GET", f"/users/{name}").json().get("servers", {})
        ready += bool(servers.get("warmdemo", {}).get("ready"))
    page = admin.get(stack.url("/hub/gallery"), timeout=30).text  # admins see warm counts
    shown = re.search(r"(\d+)/\d+ warm", page)
    return min(ready, int(shown.group(1))) if shown else 0


def wait_warm(stack, token, admin, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while warm_ready(stack, token, admin) < count:
        assert time.monotonic() < deadline, f"the pool never had {count} warm servers"
        time.sleep(0.5)


def set_warm(gallery_file: Path, count: int) -> None:
    data = yaml.safe_load(gallery_file.read_text())
    data["examples"]["warmdemo"]["warm"] = count
    with gallery_file.open("r+") as f:  # in place: the bind mount follows the same file
        f.seek(0)
        f.write(yaml.safe_dump(data, sort_keys=False))
        f.truncate()


def crowd(stack, example: str, count: int) -> list[tuple[float | None, float, float]]:
    """`count` visitors on the gallery page click at the same moment: (seconds until
    rendered or None, the same seconds counted from the common click, seconds until out
    of the start queue's line)."""
    forms = [gallery_form(stack) for _ in range(count)]
    clicked = threading.Barrier(count + 1)
    start = 0.0

    def one(form):
        clicked.wait()
        try:
            _, out_of_line = launch_until_rendered(stack, *form, example)
        except (AssertionError, requests.RequestException):
            return None, time.perf_counter() - start, 0.0
        seconds = time.perf_counter() - start
        return seconds, seconds, out_of_line - start

    with ThreadPoolExecutor(max_workers=count) as threads:
        results = [threads.submit(one, form) for form in forms]
        start = time.perf_counter()
        clicked.wait()
        return [result.result() for result in results]


def memory_mb(containers: list[str]) -> list[float]:
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}", *containers],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sizes = []
    for line in out.splitlines():
        used = json.loads(line)["MemUsage"].split("/")[0].strip()
        number, unit = re.match(r"([\d.]+)\s*([KMG]i?B)", used).groups()
        sizes.append(float(number) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit])
    return sizes


def hub_rss_mb(stack) -> tuple[float, float]:
    """RSS of JupyterHub (the container's first process) and of the rest (proxy, culler)."""
    out = stack.compose(
        "exec", "-T", "hub", "sh", "-c",
        "for p in /proc/[0-9]*; do echo \"$(basename $p) $(grep -s VmRSS $p/status)\"; done",
    ).stdout  # fmt: skip
    sizes = {}
    for line in out.splitlines():
        match = re.match(r"(\d+) VmRSS:\s+(\d+) kB", line)
        if match:
            sizes[int(match.group(1))] = int(match.group(2)) / 1024
    hub = sizes.pop(1, 0.0)
    return hub, sum(sizes.values())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, values: list[float], base: float) -> str:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    return (
        f"{name}: p50 {p50:.2f} s (floor {p50 - base:+.2f} s, {p50 / base:.2f}x), "
        f"p95 {p95:.2f} s, of {len(values)}"
    )


class Report(list):
    """Lines of the report, printed as they come (a long run shows its progress)."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=20)
    parser.add_argument("--crowd", type=int, default=20)
    parser.add_argument("--servers-for-memory", type=int, default=40)
    args = parser.parse_args()

    e2e.ARTIFACTS.mkdir(exist_ok=True)
    lines = Report()
    with e2e.running_stack(e2e.ARTIFACTS) as stack:
        gitserver = e2e.start_gitserver(stack)
        password = e2e.read_admin_password(stack)
        token = e2e.make_admin_token(stack, password)
        admin = login(stack.base_url, "admin", password)[0]
        client = EnvironmentsClient(stack.base_url, token)
        build = client.create(repository=f"{gitserver}/public/demo.git", name="gallery-demo")
        image = client.wait(build.json()["id"])["image"]
        gallery_file = Path(stack.env["GALLERY_FILE"])
        limits = {
            "GALLERY_MAX_SERVERS": str(max(45, args.servers_for_memory + 5)),
            "GALLERY_LAUNCHES_PER_MINUTE": "10000",
            "GALLERY_WARM_MAX": "5",
        }
        with stack.hub_settings(**limits):
            servers = [floor_server(image).seconds for _ in range(3)]
            lines.append(
                "Jupyter Server with Voila alone (same limits, docker run until rendered): "
                f"median {statistics.median(servers):.2f} s of 3 "
                f"({min(servers):.2f}-{max(servers):.2f})"
            )
            with standin_hub(image, stack.project) as network:
                runs = [floor_singleuser(image, network) for _ in range(3)]
            floors = [run.seconds for run in runs]
            base = statistics.median(floors)
            lines.append(
                "floor: the stack's command (jupyterhub-singleuser with Voila) and limits, "
                f"docker run until rendered: median {base:.2f} s of 3 "
                f"({min(floors):.2f}-{max(floors):.2f})"
            )
            if all(run.cpu_s is not None for run in runs):
                cpu = statistics.median(run.cpu_s for run in runs)
                cores = os.cpu_count() or 1
                lines.append(
                    f"  its container's CPU until rendered: median {cpu:.2f} CPU-s; "
                    f"{args.crowd} such launches need at least {args.crowd * cpu / cores:.1f} s "
                    f"of this host's {cores} cores"
                )

            cold = []
            for _ in range(args.launches):
                cold.append(click(stack, "demo")[0])
                stop_visitors(stack, token)
            lines.append(report(f"cold, {args.launches} sequential", cold, base))

            set_warm(gallery_file, 1)
            warm = []
            for _ in range(args.launches):
                wait_warm(stack, token, admin, 1)
                warm.append(click(stack, "warmdemo")[0])
                stop_visitors(stack, token)
            lines.append(report(f"warm pool, {args.launches} sequential", warm, base))
            set_warm(gallery_file, 0)

            with standin_hub(image, stack.project) as network:
                all_at_once = crowd_floor(image, network, args.crowd, args.crowd)
                in_turn = crowd_floor(image, network, args.crowd, START_CONCURRENCY)
            lines.append(
                f"crowd floors: {args.crowd} of the floor's docker run asked for at once, "
                f"until the last rendered: all started together {all_at_once:.2f} s, "
                f"{START_CONCURRENCY} at a time (as the stack starts them) {in_turn:.2f} s"
            )
            results = crowd(stack, "demo", args.crowd)
            done = [s for s, _, _ in results if s is not None]
            last = max(t for _, t, _ in results)
            in_line = [q for s, _, q in results if s is not None]
            lines.append(
                f"{args.crowd} simultaneous cold: last rendered after {last:.2f} s "
                f"({last / in_turn:.2f}x the floor {START_CONCURRENCY} at a time), "
                f"{len(results) - len(done)} failed, p50 {percentile(done, 0.5):.2f} s; "
                f"waits in line: p50 {percentile(in_line, 0.5):.2f} s, "
                f"longest {max(in_line):.2f} s"
            )
            stop_visitors(stack, token)

            set_warm(gallery_file, 5)
            wait_warm(stack, token, admin, 5)
            idle = memory_mb(
                [
                    line
                    for line in subprocess.run(
                        ["docker", "ps", "--format", "{{.Names}}", "--filter", "name=warmdemo"],
                        capture_output=True,
                        text=True,
                    ).stdout.split()
                ]
            )
            results = crowd(stack, "warmdemo", args.crowd)
            finishes = sorted(t for s, t, _ in results if s is not None)
            lines.append(
                f"{args.crowd} simultaneous against a pool of 5: first 5 rendered after "
                f"{finishes[min(4, len(finishes) - 1)]:.2f} s, last after {finishes[-1]:.2f} s, "
                f"{len(results) - len(finishes)} failed"
            )
            set_warm(gallery_file, 0)
            stop_visitors(stack, token)
            lines.append(
                f"idle warm server: {statistics.median(idle):.0f} MB (median of {len(idle)})"
            )

            with ThreadPoolExecutor(max_workers=4) as threads:
                list(threads.map(lambda _: click(stack, "demo"), range(args.servers_for_memory)))
            hub, others = hub_rss_mb(stack)
            lines.append(
                f"hub RSS with {args.servers_for_memory} servers running: JupyterHub "
                f"{hub:.0f} MB (proxy and culler {others:.0f} MB more)"
            )
            stop_visitors(stack, token)
        client.request("DELETE", f"/{build.json()['id']}")
    print("\n== summary ==\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
