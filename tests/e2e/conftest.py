"""End-to-end fixtures: the real compose stack on this host's Docker engine.

Fixtures:
- `stack` (session): builds and starts the stack under a unique compose project on free
  loopback ports, waits until every service is healthy, always tears it down with
  `down -v`, and prints `docker compose logs` when a test failed. Logs are also saved
  to test-artifacts/compose-logs.txt.
- `admin_password` (session): the password the hub generated on first start, read
  from the hub log where it is printed once.
- `artifacts` (session): the folder for screenshots and logs (test-artifacts/).

Base images: GALLERY_PYTHON_IMAGE / GALLERY_TRAEFIK_IMAGE from the environment when set;
otherwise the official images when present locally; otherwise the stand-ins made by
scripts/build-standin-images.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PREFIX = "gallerytest"
ARTIFACTS = ROOT / "test-artifacts"
STANDINS = {
    "GALLERY_PYTHON_IMAGE": ("python:3.12-slim", "neurolang-gallery/python-standin:bookworm"),
    "GALLERY_TRAEFIK_IMAGE": ("traefik:v3.7", "neurolang-gallery/traefik-standin:3.7"),
}
GENERATED_PASSWORD = re.compile(r"Generated a password for the admin user 'admin': (\S+)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def run(args: list[str], *, env: dict | None = None, check: bool = True, timeout: float = 900):
    return subprocess.run(
        args, env=env, check=check, timeout=timeout, capture_output=True, text=True
    )


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
            run(["docker", "compose", "-p", project, "down", "-v", "--remove-orphans"], check=False)
    for kind in ("network", "volume"):
        listing = run(
            ["docker", kind, "ls", "-q", "--filter", f"name={PROJECT_PREFIX}"], check=False
        )
        for name in listing.stdout.split():
            run(["docker", kind, "rm", name], check=False)


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
        out = self.compose("ps", "--all", "--format", "json").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {s["Service"]: s.get("Health") for s in self.services()}
            if states and all(h == "healthy" for h in states.values()):
                return
            time.sleep(2)
        raise AssertionError(f"services not healthy after {timeout}s: {states}")

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
            " for p in d.iterdir() if p.is_file() and not p.name.endswith(('.sqlite', '.pid'))}))",
        ).stdout
        return json.loads(out)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def stack(request, artifacts):
    remove_leftover_projects()
    http_port, https_port = free_port(), free_port()
    env = {
        **os.environ,
        **choose_base_images(),
        "GALLERY_HTTP_PORT": str(http_port),
        "GALLERY_HTTPS_PORT": str(https_port),
        "GALLERY_BIND_ADDRESS": "127.0.0.1",
        "GALLERY_ADMIN_PASSWORD": "",  # let the hub generate one: the tests read it once
    }
    the_stack = Stack(
        project=f"{PROJECT_PREFIX}{secrets.token_hex(3)}",
        env=env,
        http_port=http_port,
        base_url=f"http://127.0.0.1:{http_port}",
    )
    try:
        the_stack.compose("build", timeout=1800)
        the_stack.compose("up", "-d", "--wait", "--wait-timeout", "300", timeout=400)
        yield the_stack
    finally:
        logs = the_stack.logs()
        (artifacts / "compose-logs.txt").write_text(logs)
        if request.session.testsfailed:
            print(f"\n===== docker compose logs ({the_stack.project}) =====\n{logs}")
        the_stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)


@pytest.fixture(scope="session")
def admin_password(stack) -> str:
    found = GENERATED_PASSWORD.findall(stack.logs("hub"))
    assert len(found) == 1, "the hub should print the generated admin password exactly once"
    return found[0]
