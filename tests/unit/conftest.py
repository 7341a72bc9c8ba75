"""Shared fakes and fixtures of the unit tests (no Docker, no network).

Fixtures:
- `store`: a BuildStore in tmp_path, closed afterwards.
- `repo` (session): a bare git repository with branch "trunk" (the default), "feature",
  an annotated tag "v1" and a light tag "light" (see `Repo`).

Fakes (import them from here: `from .conftest import FakeImages`):
- `FakeImages`: DockerImages' interface over a dict of name -> FakeImage; records calls.
- `FakeRunner`: a build runner that emits a few lines, reuses what it built, fails or
  crashes the names it is told to; honours `reuse_existing` and `on_line` like BuildRunner.
- `ScriptedRunner`: runs a coroutine per build, counting how many run at once.
- `fake_resolve`: DNS where example.org is public and the stack's services private.
Helpers: `minimal_env`, `git`, `alive`, `wait_dead`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from docker.errors import APIError

from gallery_builder.build_request import BuildRequest, Credentials, image_name
from gallery_builder.build_runner import RunOutcome
from gallery_builder.build_store import BuildState, BuildStore
from gallery_builder.docker_images import DiskUsage
from gallery_common.image_labels import EnvironmentLabels, parse_labels

COMMIT = "c" * 40
PASSWORD = "s3cr3t/p@ss w+rd"
CREDENTIALS = Credentials("alice", PASSWORD)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


# --- processes and git ------------------------------------------------------------------


def minimal_env(**extra: str) -> dict[str, str]:
    """A clean environment for child processes: no proxies, no user git config."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", **extra}


def git(*args: str, cwd: Path) -> str:
    """Run git with a fixed identity and no user or system config; its stdout, stripped."""
    env = minimal_env(**GIT_IDENTITY, GIT_CONFIG_NOSYSTEM="1")
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie has already exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_dead(pid: int, timeout: float = 10) -> None:
    """Wait until process `pid` has gone; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


@dataclass
class Repo:
    """A bare repository with branch "trunk" (the default), "feature", and two tags."""

    path: Path
    trunk: str
    feature: str
    annotated_tag_object: str


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path_factory.mktemp("repos")
    work = root / "work"
    work.mkdir()
    git("init", "-q", "-b", "trunk", cwd=work)
    (work / "Dockerfile").write_text("FROM scratch\n")
    git("add", "Dockerfile", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    trunk = git("rev-parse", "HEAD", cwd=work)
    git("tag", "-a", "v1", "-m", "release", cwd=work)
    git("tag", "light", cwd=work)
    git("checkout", "-q", "-b", "feature", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "two", cwd=work)
    feature = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "trunk", cwd=work)
    git("clone", "-q", "--bare", str(work), str(root / "repo.git"), cwd=root)
    bare = root / "repo.git"
    return Repo(bare, trunk, feature, git("rev-parse", "v1", cwd=bare))


# --- the store and DNS ------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BuildStore]:
    with BuildStore(tmp_path / "state" / "builds.sqlite") as store:
        yield store


def fake_resolve(host: str, port: object = None) -> list[tuple[Any, ...]]:
    """example.org is public, the stack's services are private, nothing else resolves."""
    addresses = {"example.org": "198.51.100.7", "hub": "172.18.0.2", "builder": "172.18.0.3"}
    if host not in addresses:
        raise OSError(f"no such host {host}")
    return [(2, 1, 6, "", (addresses[host], 0))]


# --- Docker images ----------------------------------------------------------------------


@dataclass
class FakeImage:
    id: str
    labels: dict[str, str]
    size: int = 4242


@dataclass
class FakeImages:
    """DockerImages' interface over a dict of name -> image; records what was done."""

    images: dict[str, FakeImage] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    # Image ids Docker refuses to remove (a stopped container still uses them).
    in_use: set[str] = field(default_factory=set)
    # Image name -> names of running containers created from it.
    running: dict[str, list[str]] = field(default_factory=dict)

    def _find(self, image: str) -> FakeImage | None:
        if image in self.images:
            return self.images[image]
        return next((i for i in self.images.values() if i.id == image), None)

    def exists(self, image: str) -> bool:
        return self._find(image) is not None

    def api_version(self) -> str:
        return "1.41"

    def labels(self, image: str) -> EnvironmentLabels | None:
        found = self._find(image)
        return parse_labels(found.labels) if found else None

    def size(self, image: str) -> int | None:
        found = self._find(image)
        return found.size if found else None

    def image_id(self, image: str) -> str | None:
        found = self._find(image)
        return found.id if found else None

    def tag(self, source: str, target: str) -> None:
        self.calls.append(("tag", source, target))
        found = self._find(source)
        assert found is not None
        old = self.images.get(target)
        self.images[target] = found
        self.images.pop(found.id, None)  # tagged now
        if old is not None and old.id != found.id and self._find(old.id) is None:
            self.images[old.id] = old  # untagged, but still there (as Docker keeps it)

    def remove(self, image: str, *, prune: bool = False) -> bool:
        self.calls.append(("remove-pruning" if prune else "remove", image))
        if image in self.in_use:
            raise APIError("conflict: image is being used by stopped container")
        names = [n for n, i in self.images.items() if n == image or i.id == image]
        for name in names:
            del self.images[name]
        return bool(names)

    def untagged(self) -> list[str]:
        """Ids of images left without a name (what `docker images -f dangling=true` shows)."""
        return [name for name, image in self.images.items() if name == image.id]

    # Image name -> names of stopped containers created from it.
    stopped: dict[str, list[str]] = field(default_factory=dict)
    free_bytes: int = 100 * 1024**3
    removed_layers: list[str] = field(default_factory=list)

    def running_containers_using(self, image: str) -> list[str]:
        return sorted(self.running.get(image, []))

    def containers_using(self, image: str) -> list[str]:
        return sorted(self.running.get(image, []) + self.stopped.get(image, []))

    def gallery_images(self) -> list[dict[str, Any]]:
        by_id: dict[str, dict[str, Any]] = {}
        for name, image in self.images.items():
            entry = by_id.setdefault(
                image.id,
                {"Id": image.id, "RepoTags": [], "Labels": image.labels, "Size": image.size},
            )
            if name != image.id:
                entry["RepoTags"].append(name)
        return [e for e in by_id.values() if parse_labels(e["Labels"]) is not None]

    def container_images(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for source in (self.running, self.stopped):
            for name, containers in source.items():
                image_id = self.image_id(name)
                if image_id is not None:
                    found.setdefault(image_id, []).extend(containers)
        return found

    def data_root_usage(self) -> DiskUsage:
        return DiskUsage(
            total=200 * 1024**3, used=200 * 1024**3 - self.free_bytes, free=self.free_bytes
        )

    def remove_layers(self, layers: list[str]) -> list[str]:
        self.removed_layers += layers
        return []

    def host_gateways(self) -> frozenset[str]:
        return frozenset()


# --- runners ----------------------------------------------------------------------------


@dataclass
class FakeRunner:
    """Emits a few lines per build; reuses what it built before, fails the names in `fail`."""

    fail: set[str] = field(default_factory=set)
    crash: set[str] = field(default_factory=set)
    built: dict[tuple[str, str], str] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)
    calls: list[BuildRequest] = field(default_factory=list)
    reuse_existing: bool = True
    on_line: Callable[[str], None] | None = None
    # Set to hold every build until the test sets it.
    gate: asyncio.Event | None = None

    def configure(
        self,
        settings: object = None,
        *,
        reuse_existing: bool = True,
        on_line: Callable[[str], None] | None = None,
        base_env: object = None,
    ) -> FakeRunner:
        """Take build-image's runner options (its `runner_factory`), return self."""
        self.reuse_existing, self.on_line = reuse_existing, on_line
        return self

    async def run(
        self, build_id: str, request: BuildRequest, emit: Callable[[str], None]
    ) -> RunOutcome:
        def say(line: str) -> None:
            emit(line)
            if self.on_line is not None:
                self.on_line(line)

        self.calls.append(request)
        commit = self.commits.get(request.name, COMMIT)
        image = image_name(request.name, request.ref or "main")
        say(f"Building {request.name} (build {build_id})\n")
        await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        if request.name in self.crash:
            raise RuntimeError("the runner broke")
        if request.name in self.fail:
            say("Build failed: repo2docker exited with status 1\n")
            return RunOutcome(
                BuildState.FAILED,
                image=image,
                reason="repo2docker exited with status 1",
                resolved_commit=commit,
            )
        key = (request.repository, request.name)
        if self.reuse_existing and self.built.get(key) == commit:
            say(f"commit {commit[:7]} is already built as {image}; reusing it\n")
            return RunOutcome(
                BuildState.BUILT, image=image, resolved_commit=commit, image_size=10, reused=True
            )
        say("repo2docker output\n")
        self.built[key] = commit
        return RunOutcome(BuildState.BUILT, image=image, resolved_commit=commit, image_size=10)


Script = Callable[[str, BuildRequest, Callable[[str], None]], Awaitable[RunOutcome]]


class ScriptedRunner:
    """Runs `script` for every build and remembers what it was asked, and how many at once."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls: list[str] = []
        self.active = 0
        self.max_active = 0
        self.cleaned_up: list[str] = []

    async def run(
        self, build_id: str, request: BuildRequest, emit: Callable[[str], None]
    ) -> RunOutcome:
        self.calls.append(build_id)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await self.script(build_id, request, emit)
        finally:
            self.active -= 1
            self.cleaned_up.append(build_id)
