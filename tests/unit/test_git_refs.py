"""Ref resolution with `git ls-remote`: real git against throwaway local repositories, and
one served over HTTP with basic auth by git-http-backend."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from gallery_builder.build_request import Credentials
from gallery_builder.git_access import Scrubber
from gallery_builder.git_refs import (
    RefError,
    ResolvedRef,
    default_branch,
    describe_git_failure,
    parse_ls_remote,
    pick_commit,
    resolve_ref,
)
from gallery_builder.processes import ProcessError

from .conftest import CREDENTIALS, PASSWORD, Repo, git, minimal_env, needs_git, wait_dead

pytestmark = needs_git


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- resolving refs -------------------------------------------------------------------------


def test_parse_ls_remote() -> None:
    output = "ref: refs/heads/main\tHEAD\n" + "a" * 40 + "\tHEAD\n" + "B" * 40 + "\trefs/tags/v1\n"
    refs, symrefs = parse_ls_remote(output + "garbage\n")
    assert refs == {"HEAD": "a" * 40, "refs/tags/v1": "b" * 40}
    assert symrefs == {"HEAD": "refs/heads/main"}


def test_pick_commit_prefers_peeled_tags_then_git_order() -> None:
    refs = {
        "refs/tags/v1": "1" * 40,
        "refs/tags/v1^{}": "2" * 40,
        "refs/heads/v1": "3" * 40,
        "refs/heads/dev": "4" * 40,
        "refs/heads/feature/x": "5" * 40,
    }
    assert pick_commit(refs, "v1") == "2" * 40
    assert pick_commit(refs, "dev") == "4" * 40
    assert pick_commit(refs, "refs/heads/v1") == "3" * 40
    assert pick_commit(refs, "heads/v1") == "3" * 40
    assert pick_commit(refs, "feature/x") == "5" * 40
    assert pick_commit(refs, "x") is None


def test_default_branch_without_symref() -> None:
    assert default_branch({"HEAD": "a" * 40}, {}) == ResolvedRef("a" * 40, None)
    with pytest.raises(RefError, match="empty"):
        default_branch({}, {})


def resolve(repo: Repo | Path | str, ref: str | None, tmp_path: Path, **kwargs: Any) -> ResolvedRef:
    url = str(repo.path if isinstance(repo, Repo) else repo)
    kwargs.setdefault("base_env", minimal_env())
    return run(resolve_ref(tmp_path, url, ref, None, timeout=20, **kwargs))


def test_resolve_default_branch(repo: Repo, tmp_path: Path) -> None:
    assert resolve(repo, None, tmp_path) == ResolvedRef(repo.trunk, "trunk")


def test_resolve_branches_and_tags(repo: Repo, tmp_path: Path) -> None:
    assert resolve(repo, "feature", tmp_path).commit == repo.feature
    assert resolve(repo, "refs/heads/feature", tmp_path).commit == repo.feature
    # The annotated tag's own object is not a commit; its peeled "^{}" entry is.
    assert repo.annotated_tag_object != repo.trunk
    assert resolve(repo, "v1", tmp_path) == ResolvedRef(repo.trunk, "v1")
    assert resolve(repo, "light", tmp_path).commit == repo.trunk


def test_resolve_passes_a_full_commit_through(tmp_path: Path) -> None:
    commit = "AbCdEf0123" * 4
    # No git call: the repository does not even exist.
    resolved = resolve(tmp_path / "missing.git", commit, tmp_path)
    assert resolved == ResolvedRef(commit.lower(), commit)


def test_resolve_refuses_a_short_commit(repo: Repo, tmp_path: Path) -> None:
    with pytest.raises(RefError, match="full 40-character commit SHA") as caught:
        resolve(repo, repo.trunk[:7], tmp_path)
    assert "branch, a tag" in str(caught.value)


def test_resolve_unknown_ref(repo: Repo, tmp_path: Path) -> None:
    with pytest.raises(RefError, match="no branch or tag named 'nope'"):
        resolve(repo, "nope", tmp_path)


def test_resolve_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(RefError, match="not found") as caught:
        resolve(tmp_path / "missing.git", None, tmp_path)
    assert "git said: fatal:" in str(caught.value)


def test_resolve_empty_repository(tmp_path: Path) -> None:
    empty = tmp_path / "empty.git"
    empty.mkdir()
    git("init", "-q", "--bare", cwd=empty)
    with pytest.raises(RefError, match="empty"):
        resolve(empty, None, tmp_path)


def test_resolve_times_out_and_kills_git(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "git.pid"
    fake_git = bin_dir / "git"
    fake_git.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    fake_git.chmod(0o755)
    env = minimal_env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    started = time.monotonic()
    with pytest.raises(ProcessError, match=r"git ls-remote timed out after 0\.5 s"):
        run(
            resolve_ref(
                tmp_path, "https://example.org/r.git", "main", None, timeout=0.5, base_env=env
            )
        )
    assert time.monotonic() - started < 5
    wait_dead(int(pid_file.read_text()))


def test_describe_git_failure_never_shows_the_password() -> None:
    scrub = Scrubber.for_credentials(CREDENTIALS)
    stderr = (
        f"remote: HTTP Basic: Access denied for {PASSWORD}\n"
        f"fatal: Authentication failed for 'https://host/{quote(PASSWORD)}'\n"
    )
    message = describe_git_failure(stderr, "https://host/repo.git", scrub)
    assert message.startswith("cannot read https://host/repo.git: authentication failed")
    assert PASSWORD not in message and quote(PASSWORD) not in message


# --- resolving over HTTP with basic auth ----------------------------------------------------

HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")


class GitHTTPHandler(BaseHTTPRequestHandler):
    """Serves `server.root` through git-http-backend, behind HTTP basic auth."""

    server: GitHTTPServer

    def do_GET(self) -> None:
        self.serve()

    def do_POST(self) -> None:
        self.serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def serve(self) -> None:
        auth = self.headers.get("Authorization")
        self.server.seen_auth.append(auth)
        if auth != self.server.expected_auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": "alice",
            "REMOTE_ADDR": "127.0.0.1",
        }
        out = subprocess.run(
            [str(HTTP_BACKEND)], input=body, env=env, capture_output=True, check=False
        ).stdout
        head, _, payload = out.replace(b"\r\n", b"\n", out.count(b"\r\n")).partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class GitHTTPServer(ThreadingHTTPServer):
    def __init__(self, root: Path, expected_auth: str) -> None:
        super().__init__(("127.0.0.1", 0), GitHTTPHandler)
        self.root = root
        self.expected_auth = expected_auth
        self.seen_auth: list[str | None] = []


@pytest.fixture
def http_repo(repo: Repo) -> Iterator[tuple[str, GitHTTPServer]]:
    if not HTTP_BACKEND.exists():
        pytest.skip("git-http-backend is not installed")
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    server = GitHTTPServer(repo.path.parent, f"Basic {token}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{repo.path.name}", server
    finally:
        server.shutdown()
        server.server_close()


def test_resolve_over_http_with_credentials(
    repo: Repo, http_repo: tuple[str, GitHTTPServer], tmp_path: Path
) -> None:
    url, server = http_repo
    resolved = run(
        resolve_ref(tmp_path, url, None, CREDENTIALS, timeout=20, base_env=minimal_env())
    )
    assert resolved == ResolvedRef(repo.trunk, "trunk")
    assert server.expected_auth in server.seen_auth


@pytest.mark.parametrize("credentials", [None, Credentials("alice", "wrong-" + PASSWORD)])
def test_resolve_over_http_refused(
    http_repo: tuple[str, GitHTTPServer], tmp_path: Path, credentials: Credentials | None
) -> None:
    url, _server = http_repo
    with pytest.raises(RefError, match="authentication failed") as caught:
        run(resolve_ref(tmp_path, url, "trunk", credentials, timeout=20, base_env=minimal_env()))
    assert PASSWORD not in str(caught.value)
