"""The end-to-end harness: the real compose stack on this host's Docker engine.

A library, not fixtures (those are in conftest.py), so benchmarks can import it:
- `running_stack(artifacts)`: builds and starts the stack under a unique compose project
  on free loopback ports, waits until every service is healthy, and always tears it down
  (`down -v`), leaving no container, network or volume of the project behind.
- `start_gitserver(stack)`: a Git server with the fixture repositories on the stack's
  network; `make_admin_token`, `read_admin_password`: the admin's credentials.

Base images: GALLERY_PYTHON_IMAGE / GALLERY_TRAEFIK_IMAGE from the environment when set;
otherwise the official images when present locally; otherwise the stand-ins made by
scripts/build-standin-images.

Two checkouts can run their end-to-end tests on one Docker engine at the same time when
each sets its own GALLERY_TEST_PROJECT_PREFIX (and its own GALLERY_HUB_IMAGE /
GALLERY_BUILDER_IMAGE tags): the cleanup of earlier runs touches only its own prefix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

from gallery_common.image_labels import STACK_LABEL

from .hub_login import login

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PREFIX = os.environ.get("GALLERY_TEST_PROJECT_PREFIX", "gallerytest")
ARTIFACTS = ROOT / "test-artifacts"
STANDINS = {
    "GALLERY_PYTHON_IMAGE": ("python:3.12-slim", "neurolang-gallery/python-standin:bookworm"),
    "GALLERY_TRAEFIK_IMAGE": ("traefik:v3.7", "neurolang-gallery/traefik-standin:3.7"),
}
OUTSIDE_HOST = "outside"
GENERATED_PASSWORD = re.compile(r"Generated a password for the admin user 'admin': (\S+)")


def run(args: list[str], *, env: dict | None = None, check: bool = True, timeout: float = 900):
    """Run a command; on failure the error shows its output (not just the exit status)."""
    result = subprocess.run(
        args, env=env, timeout=timeout, capture_output=True, text=True, errors="replace"
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited with {result.returncode}\n"
            f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
        )
    return result


def image_exists(name: str) -> bool:
    return run(["docker", "image", "inspect", name], check=False).returncode == 0


def choose_base_images() -> dict[str, str]:
    chosen = {}
    for variable, (official, standin) in STANDINS.items():
        if os.environ.get(variable):
            chosen[variable] = os.environ[variable]
        elif image_exists(official):
            chosen[variable] = official
        elif image_exists(standin):
            chosen[variable] = standin
        else:
            pytest.exit(
                f"Neither {official} nor {standin} is available: pull the official image or "
                "run scripts/build-standin-images",
                returncode=3,
            )
    return chosen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remove_leftover_projects() -> None:
    """Tear down test stacks left by an earlier run (e.g. revived by dockerd's restart policy)."""
    ps = run(
        ["docker", "ps", "-a", "--format", '{{.Label "com.docker.compose.project"}}'], check=False
    )
    for project in sorted(set(ps.stdout.split())):
        if project.startswith(PROJECT_PREFIX):
            run(
                [
                    "docker",
                    "compose",
                    "-p",
                    project,
                    "--profile",
                    "user-servers",
                    "down",
                    "-v",
                    "--remove-orphans",
                ],
                check=False,
            )
    # Containers the tests started themselves (git server, user servers), by name.
    stray = run(["docker", "ps", "-aq", "--filter", f"name={PROJECT_PREFIX}"], check=False)
    for container in stray.stdout.split():
        run(["docker", "rm", "-f", container], check=False)
    for kind in ("network", "volume"):
        listing = run(
            ["docker", kind, "ls", "-q", "--filter", f"name={PROJECT_PREFIX}"], check=False
        )
        for name in listing.stdout.split():
            run(["docker", kind, "rm", name], check=False)
    # Environment images an earlier test stack built and could not delete (image names are
    # the engine's, not the project's: a leftover gallery-demo:main would be "built" here).
    images = run(
        ["docker", "images", "-q", "--no-trunc", "--filter", f"label={STACK_LABEL}"], check=False
    ).stdout.split()
    for image in sorted(set(images)):
        stack = run(
            ["docker", "image", "inspect", "--format",
             f'{{{{index .Config.Labels "{STACK_LABEL}"}}}}', image],
            check=False,
        ).stdout.strip()  # fmt: skip
        if stack.startswith(PROJECT_PREFIX):
            run(["docker", "rmi", "-f", image], check=False)


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    http_port: int
    base_url: str
    session: requests.Session = field(default_factory=requests.Session)

    def compose(self, *args: str, check: bool = True, timeout: float = 900):
        cmd = ["docker", "compose", "-p", self.project, "--env-file", str(ROOT / ".env.example")]
        return run([*cmd, *args], env=self.env, check=check, timeout=timeout)

    def logs(self, service: str = "") -> str:
        return self.compose(
            "logs", "--no-color", *([service] if service else []), check=False
        ).stdout

    def url(self, path: str) -> str:
        return self.base_url + path

    def services(self) -> list[dict]:
        """The stack's own containers (not the user servers the hub started)."""
        out = self.compose("ps", "--all", "--format", "json").stdout
        services = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [s for s in services if s["Service"] != "user-servers"]

    def wait_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {s["Service"]: s.get("Health") for s in self.services()}
            if states and all(h == "healthy" for h in states.values()):
                return
            time.sleep(2)
        raise AssertionError(f"services not healthy after {timeout}s: {states}")

    @contextlib.contextmanager
    def hub_settings(self, **settings: str):
        """Run the hub with some settings changed (recreates the hub container only)."""
        with self.settings(("hub",), **settings):
            yield

    @contextlib.contextmanager
    def settings(self, services: tuple[str, ...], **settings: str):
        """Run `services` with some settings changed (`up -d` recreates only those)."""
        saved = {name: self.env.get(name) for name in settings}
        self.env.update(settings)
        try:
            self.compose("up", "-d", "--wait", *services, timeout=300)
            yield
        finally:
            # The services are recreated below: keep the hub's log for the record.
            changed = "-".join(sorted(settings)).lower()
            (ARTIFACTS / f"hub-log-with-{changed}.txt").write_text(self.logs("hub"))
            for name, value in saved.items():
                if value is None:
                    self.env.pop(name, None)
                else:
                    self.env[name] = value
            self.compose("up", "-d", "--wait", *services, timeout=300)

    @contextlib.contextmanager
    def examples_changed(self, **examples: dict):
        """Serve the test gallery with some examples replaced or added (the hub re-reads
        the file; it is rewritten in place, as the bind mount follows the same file)."""
        path = Path(self.env["GALLERY_FILE"])
        original = path.read_text()
        changed = {**TEST_GALLERY, "examples": {**TEST_GALLERY["examples"], **examples}}
        try:
            with path.open("r+") as f:
                f.seek(0)
                f.write(yaml.safe_dump(changed, sort_keys=False))
                f.truncate()
            yield
        finally:
            with path.open("r+") as f:
                f.seek(0)
                f.write(original)
                f.truncate()

    def leftovers(self) -> list[str]:
        """Containers, networks and volumes of this project that still exist."""
        found = []
        for kind in ("container", "network", "volume"):
            listing = run(
                [
                    "docker",
                    kind,
                    "ls",
                    *(["-a"] if kind == "container" else []),
                    "-q",
                    "--filter",
                    f"name={self.project}",
                ],
                check=False,
            ).stdout.split()
            found += [f"{kind} {name}" for name in listing]
        return found

    def hub_state_secrets(self) -> dict[str, str]:
        """Every secret file on the hub state volume, read inside the hub container."""
        out = self.compose(
            "exec",
            "-T",
            "hub",
            "python3",
            "-c",
            "import json, pathlib; d = pathlib.Path('/srv/jupyterhub/state');"
            "print(json.dumps({p.name: [p.read_text().strip(), oct(p.stat().st_mode & 0o777)]"
            " for p in d.iterdir() if p.is_file() and not p.name.endswith("
            "('.sqlite', '.sqlite-wal', '.sqlite-shm', '.pid'))}))",  # the database's own files
        ).stdout
        return json.loads(out)


TEST_GALLERY = {
    # Only the real-examples tests build these (through the API, not build-image --file).
    "images": {
        "gallery-neuro": {
            "repo": "http://gitserver/public/neurogallery.git",
            "data": {"path": "gallery/neurolang_data"},
        },
    },
    "examples": {
        "demo": {
            "title": "Demo notebook",
            "description": "A one-cell notebook that computes the answer.",
            "path": "app.ipynb",
            "repo_url": "https://git.example.invalid/demo",
            "image_name": "gallery-demo:main",
            "image_url": "difumo.svg",
        },
        "pyapp": {
            "title": "Demo script",
            "description": "A Python script rendered by Voila.",
            "path": "app.py",
            "repo_url": "https://git.example.invalid/demo",
            "image_name": "gallery-demo:main",
            "image_url": "vwfa.svg",
            "view": "notebook",
        },
        "warmdemo": {
            "title": "Demo, kept warm",
            "description": "The demo notebook with a warm server waiting (when the pool is on).",
            "path": "app.ipynb",
            "repo_url": "https://git.example.invalid/demo",
            "image_name": "gallery-demo:main",
            "image_url": "difumo.svg",
            "warm": 1,
        },
        "cached": {
            "title": "Cached data",
            "description": "Shaped like a NeuroLang example: jupytext, its own template, data.",
            "path": "gallery/Cached.py",
            "repo_url": "https://git.example.invalid/neurogallery",
            "image_name": "gallery-neuro:main",
            "image_url": "hbm.svg",
        },
        "oldhub": {
            "title": "Old JupyterHub",
            "description": "Its image has jupyterhub 1.4.0.",
            "path": "app.ipynb",
            "repo_url": "https://git.example.invalid/oldhub",
            "image_name": "gallery-oldhub:main",
            "image_url": "hbm.svg",
        },
        "share": {
            "title": "Share links",
            "description": "Shows the parameters its share link carried (no image_url: the "
            "card shows its render).",
            "path": "share.ipynb",
            "repo_url": "https://git.example.invalid/demo",
            "image_name": "gallery-demo:main",
        },
        "broken": {
            "title": "Broken on purpose",
            "description": "Its third cell raises a KeyError.",
            "path": "app.ipynb",
            "repo_url": "https://git.example.invalid/broken",
            "image_name": "gallery-broken:main",
            "image_url": "hbm.svg",
        },
        "unbuilt": {
            "title": "Not built yet",
            "description": "Its image does not exist.",
            "path": "app.ipynb",
            "repo_url": "https://git.example.invalid/none",
            "image_name": "not-built:v1",
            "image_url": "hbm.svg",
        },
    },
}


def write_test_gallery(artifacts: Path) -> Path:
    """The gallery file the test stack serves (tests edit it in place)."""
    path = artifacts / "gallery-e2e.yaml"
    path.write_text(yaml.safe_dump(TEST_GALLERY, sort_keys=False))
    return path


@contextlib.contextmanager
def engine_lock():
    """One end-to-end run at a time on this Docker engine.

    Runs from two checkouts would share image names (the tests' environments, tags such
    as gallery-demo:main) and delete each other's; the second waits for the first.
    """
    with open("/tmp/neurolang-gallery-e2e.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def running_stack(artifacts: Path, dump_logs: Callable[[], bool] = lambda: False):
    """Build and start the stack under a fresh project; always remove it afterwards."""
    with engine_lock():
        yield from _running_stack(artifacts, dump_logs)


def _running_stack(artifacts: Path, dump_logs: Callable[[], bool]):
    remove_leftover_projects()
    http_port, https_port = free_port(), free_port()
    env = {
        **os.environ,
        **choose_base_images(),
        "GALLERY_HTTP_PORT": str(http_port),
        "GALLERY_HTTPS_PORT": str(https_port),
        "GALLERY_BIND_ADDRESS": "127.0.0.1",
        "GALLERY_ADMIN_PASSWORD": "",  # let the hub generate one: the tests read it once
        "GALLERY_FILE": str(write_test_gallery(artifacts)),
        # The "internet" of the tests: a server only the egress proxy can reach.
        "GALLERY_EGRESS_ALLOW": OUTSIDE_HOST,
        # No warm servers but in the warm pool's own tests (they count toward the caps).
        "GALLERY_WARM_MAX": "0",
        # No verification but in its own tests: it would launch and render every example
        # after every build of the other tests, alongside them.
        "GALLERY_VERIFY": "false",
    }
    the_stack = Stack(
        project=f"{PROJECT_PREFIX}{secrets.token_hex(3)}",
        env=env,
        http_port=http_port,
        base_url=f"http://127.0.0.1:{http_port}",
    )
    started = False
    try:
        # --profile images: also the single-user image the fixture repositories start from.
        the_stack.compose("--profile", "images", "build", timeout=1800)
        the_stack.compose("up", "-d", "--wait", "--wait-timeout", "300", timeout=400)
        started = True
        yield the_stack
    finally:
        for helper in ("gitserver", "outside"):
            run(["docker", "rm", "-f", f"{the_stack.project}-{helper}"], check=False)
        logs = the_stack.logs()
        (artifacts / "compose-logs.txt").write_text(logs)
        if not started or dump_logs():
            print(f"\n===== docker compose logs ({the_stack.project}) =====\n{logs}")
        # The plain command a self-hoster runs: the hub stops the user servers itself.
        down = the_stack.compose("down", "-v", check=False)
        left = the_stack.leftovers()
        if left:  # clean up anyway, then fail
            the_stack.compose(
                "--profile", "user-servers", "down", "-v", "--remove-orphans", check=False
            )
        if started:
            assert "still in use" not in down.stderr, down.stderr
            assert not left, f"`docker compose down -v` left {left}"


GIT_USER = "fixture-user"
GIT_PASSWORD = "fixture-pass-" + secrets.token_hex(12)


def start_gitserver(stack: Stack) -> str:
    """A Git server on the stack's network: http://gitserver/{public,private}/<repo>.git.

    Repositories: demo (a notebook, a .py app and a notebook that prints its share link's
    parameters), broken (a notebook that raises in its third cell), slow (a two-minute
    build), bench (the benchmark's), layered (dependencies first, notebooks last),
    neurogallery (shaped like neurolang_web) and oldhub (jupyterhub 1.4.0); the private
    copies need
    GIT_USER / GIT_PASSWORD. `edit_file` commits a change to one of them.
    """
    # Tagged per prefix: another checkout on the same engine may have other fixtures.
    image = f"neurolang-gallery/test-gitserver:{PROJECT_PREFIX}"
    run(
        [
            "docker",
            "build",
            "-q",
            "-t",
            image,
            "--build-arg",
            f"GALLERY_PYTHON_IMAGE={stack.env['GALLERY_PYTHON_IMAGE']}",
            "-f",
            str(ROOT / "tests/fixtures/gitserver/Dockerfile"),
            str(ROOT / "tests/fixtures"),
        ],
        env={**stack.env, "DOCKER_BUILDKIT": "0"},
    )
    name = f"{stack.project}-gitserver"
    run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--network",
            f"{stack.project}_gallery",
            "--network-alias",
            "gitserver",
            "-e",
            f"GIT_USER={GIT_USER}",
            "-e",
            f"GIT_PASSWORD={GIT_PASSWORD}",
            image,
        ]
    )
    check = (
        "import urllib.request; urllib.request.urlopen("
        "'http://gitserver/public/demo.git/info/refs?service=git-upload-pack', timeout=2)"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            stack.compose("exec", "-T", "builder", "python3", "-c", check, check=False).returncode
            == 0
        ):
            return "http://gitserver"
        time.sleep(1)
    raise AssertionError(f"the git server did not come up: {run(['docker', 'logs', name]).stderr}")


def start_outside(stack: Stack, suffix: str, path: str, content: str) -> str:
    """The tests' "internet": a web server serving `content` at /`path`, on a network only
    the egress proxy joins (as OUTSIDE_HOST). Returns its container's name."""
    name = f"{stack.project}-{suffix}"
    run(
        [
            "docker", "run", "-d", "--name", name,
            "--network", f"{stack.project}_egress", "--network-alias", OUTSIDE_HOST,
            stack.env["GALLERY_PYTHON_IMAGE"],
            "sh", "-c",
            f"mkdir -p /srv/www && echo '{content}' > /srv/www/{path} "
            "&& cd /srv/www && exec python3 -m http.server 80",
        ]
    )  # fmt: skip
    return name


def edit_file(stack: Stack, repository: str, path: str, content: bytes | None = None) -> str:
    """Commit `content` as `path` in a fixture repository (None: an empty commit); its id."""
    route = f"edit/{repository}?path={path}" if content is not None else f"commit/{repository}"
    script = (
        "import sys, urllib.request; print(urllib.request.urlopen(urllib.request.Request("
        f"'http://127.0.0.1/admin/{route}', data=sys.stdin.buffer.read(), method='POST'),"
        " timeout=30).read().decode())"
    )
    done = subprocess.run(
        ["docker", "exec", "-i", f"{stack.project}-gitserver", "python3", "-c", script],
        input=content or b"",
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode().strip()


def make_admin_token(stack: Stack, admin_password: str) -> str:
    """An API token of the admin, made through the hub's REST API."""
    session, _ = login(stack.base_url, "admin", admin_password)
    response = session.post(
        stack.url("/hub/api/users/admin/tokens"),
        json={"note": "e2e tests", "expires_in": 3600},
        headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


def read_admin_password(stack: Stack) -> str:
    """The password the hub generated on first start, printed once in its log."""
    found = GENERATED_PASSWORD.findall(stack.logs("hub"))
    assert len(found) == 1, "the hub should print the generated admin password exactly once"
    return found[0]
