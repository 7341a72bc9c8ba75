"""build-image: the command-line builder, as `docker compose run --rm builder build-image ...`.

Its builds go into the builder's own records, so each one must show up through the
environments API exactly like a build started there. Every image built here is deleted
through that API at the end of its test.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .environments_client import EnvironmentsClient
from .harness import ARTIFACTS, ROOT

DEMO_FILES = ROOT / "tests/fixtures/repos/demo"
LABEL = "org.neurolang-gallery."
COMMIT = re.compile(r"[0-9a-f]{40}")


@pytest.fixture(scope="module")
def client(stack, admin_token, gitserver) -> EnvironmentsClient:
    return EnvironmentsClient(stack.base_url, admin_token)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder for files the builder container mounts.

    Under the project root rather than /tmp: the Docker engine must see the same path.
    """
    path = ARTIFACTS / f"cli-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def build_image(stack, *args: str, volumes: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run build-image in a one-off builder container; never raises on its exit status."""
    mounts = [option for volume in volumes for option in ("-v", volume)]
    return stack.compose(
        "run", "--rm", "-T", *mounts, "builder", "build-image", *args, check=False, timeout=900
    )


def explain(result: subprocess.CompletedProcess) -> str:
    out, err = result.stdout[-3000:], result.stderr[-3000:]
    return f"exit {result.returncode}\nstdout: {out}\nstderr: {err}"


def listed(client: EnvironmentsClient) -> dict[str, dict]:
    return {env["image"]: env for env in client.list()}


def delete(client: EnvironmentsClient, *images: str) -> None:
    """Remove the images (and their records) through the API, as an admin would."""
    current = listed(client)
    for image in images:
        if image in current:
            response = client.request("DELETE", f"/{current[image]['id']}")
            assert response.status_code == 204, response.text


def image_labels(image: str) -> dict[str, str]:
    inspect = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
    )
    return json.loads(inspect.stdout)[0]["Config"]["Labels"] or {}


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.org",
    }
    done = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def make_demo_repo(path: Path) -> str:
    """A git repository with the demo fixture on branch main; returns its commit."""
    shutil.copytree(DEMO_FILES, path)
    git("init", "-q", cwd=path)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "demo", cwd=path)
    # Uncommitted changes are not built: the image holds the commit.
    (path / "app.py").write_text("raise SystemExit('uncommitted')\n")
    return git("rev-parse", "HEAD", cwd=path)


def test_build_by_url(stack, client, gitserver):
    url = f"{gitserver}/public/demo.git"
    try:
        result = build_image(stack, "--repo", url, "--name", "cli-demo", "--memory", "1")
        assert result.returncode == 0, explain(result)
        assert "Running repo2docker" in result.stdout  # the log streams through
        summary = result.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"built cli-demo:main in [0-9.]+ s \(commit [0-9a-f]{7}\)", summary)

        env = listed(client)["cli-demo:main"]
        assert (env["state"], env["reused"], env["name"]) == ("built", False, "cli-demo")
        assert (env["repository"], env["memory_gb"]) == (url, 1)
        assert COMMIT.fullmatch(env["resolved_commit"])
        assert env["started_at"] and env["finished_at"] and env["image_size"] > 0
        assert "Running repo2docker" in client.log_text(env["id"])

        labels = image_labels("cli-demo:main")
        assert labels[LABEL + "environment"] == "true"
        assert labels[LABEL + "repository"] == url
        assert labels[LABEL + "commit"] == env["resolved_commit"]
        assert labels[LABEL + "display-name"] == "cli-demo"
        assert float(labels[LABEL + "memory-limit-gb"]) == 1
    finally:
        delete(client, "cli-demo:main")


def test_build_from_a_local_path(stack, client, scratch):
    commit = make_demo_repo(scratch / "demo")
    try:
        result = build_image(
            stack,
            "--repo",
            "/repo",
            "--name",
            "cli-local",
            "--json",
            volumes=(f"{scratch / 'demo'}:/repo:ro",),
        )
        assert result.returncode == 0, explain(result)
        [entry] = json.loads(result.stdout)
        assert entry["image"] == "cli-local:main"
        assert (entry["state"], entry["reused"], entry["commit"]) == ("built", False, commit)
        assert entry["reason"] is None and entry["seconds"] > 0
        assert "Running repo2docker" in result.stderr  # with --json the log goes to stderr

        env = listed(client)["cli-local:main"]
        assert (env["id"], env["state"]) == (entry["id"], "built")
        assert (env["repository"], env["resolved_commit"]) == ("file:///repo", commit)
        assert image_labels("cli-local:main")[LABEL + "commit"] == commit
        served = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--entrypoint",
                "cat",
                "cli-local:main",
                "/home/jovyan/app.py",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert served.stdout == (DEMO_FILES / "app.py").read_text()  # the commit, not the edit
    finally:
        delete(client, "cli-local:main")


def test_file_builds_each_image_and_reuses_one_already_built(stack, client, gitserver, scratch):
    url = f"{gitserver}/public/demo.git"
    images = {"cli-file-a": {"repo": url}, "cli-file-b": {"repo": url}}
    (scratch / "gallery.yaml").write_text(yaml.safe_dump({"images": images}))
    try:
        first = build_image(stack, "--repo", url, "--name", "cli-file-a")
        assert first.returncode == 0, explain(first)

        result = build_image(
            stack,
            "--file",
            "/gallery/gallery.yaml",
            "--json",
            volumes=(f"{scratch}:/gallery:ro",),
        )
        assert result.returncode == 0, explain(result)
        entries = {entry["name"]: entry for entry in json.loads(result.stdout)}
        assert set(entries) == {"cli-file-a", "cli-file-b"}
        assert (entries["cli-file-a"]["state"], entries["cli-file-a"]["reused"]) == ("built", True)
        assert (entries["cli-file-b"]["state"], entries["cli-file-b"]["reused"]) == ("built", False)
        assert "reused cli-file-a:main in " in result.stderr
        assert "built cli-file-b:main in " in result.stderr
        assert "2 images: 1 built, 1 reused, 0 failed" in result.stderr

        current = listed(client)
        for name, entry in entries.items():
            env = current[f"{name}:main"]
            assert (env["id"], env["state"]) == (entry["id"], "built")
            assert env["reused"] is entry["reused"]
            assert env["resolved_commit"] == entry["commit"]
    finally:
        delete(client, "cli-file-a:main", "cli-file-b:main")


def test_a_failed_build_exits_1_and_is_recorded(stack, client, gitserver):
    url = f"{gitserver}/public/demo.git"
    try:
        result = build_image(stack, "--repo", url, "--name", "cli-fail", "--ref", "no-such-ref")
        assert result.returncode == 1, explain(result)
        assert "failed cli-fail:no-such-ref after " in result.stdout
        env = listed(client)["cli-fail:no-such-ref"]
        assert env["state"] == "failed"
        assert "no-such-ref" in env["reason"]
    finally:
        delete(client, "cli-fail:no-such-ref")


BAD_ARGUMENTS = [
    ([], "--repo"),
    (["--repo", "http://gitserver/public/demo.git", "--file"], "--file"),
    (["--repo", "http://gitserver/public/demo.git", "--name", "Bad Name"], "--name"),
    (["--repo", "http://gitserver/public/demo.git", "--ref=-bad"], "--ref"),
    (["--repo", "http://gitserver/public/demo.git", "--memory", "lots"], "--memory"),
    (["--repo", "http://hub:8081/hub/api"], "--repo"),
    (["--repo", "/no/such/directory"], "--repo"),
]


@pytest.mark.parametrize(("args", "option"), BAD_ARGUMENTS)
def test_bad_arguments_exit_2_and_build_nothing(stack, client, args, option):
    before = client.list()
    result = build_image(stack, *args)
    assert result.returncode == 2, explain(result)
    assert option in result.stderr
    assert client.list() == before
