"""Builds that are cancelled, or cut off by a crash, end cleanly; records survive restarts."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from .environments_client import EnvironmentsClient


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout


# Containers of another checkout's test stacks sharing this engine ("<prefix><6 hex>-...").
OTHER_TEST_CONTAINER = re.compile(r"^[a-z]+[0-9a-f]{6}-")


def container_ids() -> set[str]:
    """Every container on the engine now (another checkout's may come and go)."""
    return set(docker("ps", "-aq", "--no-trunc").split())


def stray_containers(stack, before: set[str]) -> list[str]:
    """Containers left behind by our builds: created since `before` was taken, and neither
    a compose service (of this stack or of another project on the same engine) nor a
    test's own container (git server, servers)."""
    rows = docker(
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        '{{.ID}}\t{{.Names}}\t{{.Label "com.docker.compose.project"}}',
    ).splitlines()
    stray = []
    for row in rows:
        container, name, project = [*row.split("\t"), "", ""][:3]
        if container in before or project or name.startswith(stack.project):
            continue
        if OTHER_TEST_CONTAINER.match(name):
            continue
        stray.append(name)
    return stray


def wait_for_log(client: EnvironmentsClient, build_id: str, text: str, timeout: float = 300):
    """Follow the live log stream until `text` shows up."""
    deadline = time.monotonic() + timeout
    seen = ""
    with client.request("GET", f"/{build_id}/log", stream=True) as response:
        for chunk in response.iter_content(chunk_size=None, decode_unicode=True):
            seen += chunk
            if text in seen:
                return
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"{text!r} never appeared in the log of {build_id}: {seen[-500:]}")


@pytest.fixture(scope="module")
def client(stack, admin_token, gitserver) -> EnvironmentsClient:
    return EnvironmentsClient(stack.base_url, admin_token)


def test_cancel_a_running_build(stack, client, gitserver):
    before = container_ids()
    response = client.create(repository=f"{gitserver}/public/slow.git", name="slow-cancel")
    build = response.json()
    wait_for_log(client, build["id"], "slow step 2")
    cancel = client.request("POST", f"/{build['id']}/cancel")
    assert cancel.status_code == 200, cancel.text
    ended = client.wait(build["id"], timeout=60)
    assert ended["state"] == "cancelled"
    assert docker("image", "inspect", ended["image"], check=False) == "[]\n" or not docker(
        "images", "-q", ended["image"]
    )
    time.sleep(2)
    assert stray_containers(stack, before) == []


def test_builder_killed_mid_build_fails_the_build_and_leaves_nothing(stack, client, gitserver):
    before = container_ids()
    response = client.create(repository=f"{gitserver}/public/slow.git", name="slow-crash")
    build = response.json()
    wait_for_log(client, build["id"], "slow step 2")

    stack.compose("kill", "builder")
    stack.compose("up", "-d", "--wait", "builder")

    ended = client.get(build["id"])
    assert ended["state"] == "failed"
    assert "restarted" in ended["reason"]
    assert not docker("images", "-q", ended["image"])
    time.sleep(5)  # the daemon notices the client is gone and aborts the build
    assert stray_containers(stack, before) == []

    # The next build works.
    after = client.create(repository=f"{gitserver}/public/demo.git", name="after-crash")
    assert client.wait(after.json()["id"])["state"] == "built"
    assert client.request("DELETE", f"/{after.json()['id']}").status_code == 204


def test_records_and_logs_survive_a_hub_restart(stack, client, gitserver):
    build = client.create(repository=f"{gitserver}/public/demo.git", name="survivor").json()
    client.wait(build["id"])
    log_before = client.log_text(build["id"])
    stack.compose("restart", "hub")
    stack.wait_healthy()
    assert client.get(build["id"])["state"] == "built"
    assert client.log_text(build["id"]) == log_before
    stack.compose("restart", "builder")
    stack.wait_healthy()
    assert client.get(build["id"])["state"] == "built"
    assert client.log_text(build["id"]) == log_before
    assert client.request("DELETE", f"/{build['id']}").status_code == 204
