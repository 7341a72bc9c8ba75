"""The build runner: argv, config, askpass, scrubbing, ref resolution and runs.

Real git against throwaway local repositories (and one served over HTTP with basic auth by
git-http-backend); a fake `repo2docker` script and fake Docker images instead of a daemon.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from gallery_builder import build_runner
from gallery_builder.build_request import BuildRequest, Credentials
from gallery_builder.build_runner import (
    MASK,
    ORIGIN_ENV,
    PASSWORD_ENV,
    USERNAME_ENV,
    BuildError,
    BuildRunner,
    ResolvedRef,
    Scrubber,
    default_branch,
    describe_git_failure,
    git_environment,
    parse_ls_remote,
    pick_commit,
    read_lines,
    repo2docker_command,
    repo2docker_config_text,
    repository_origin,
    resolve_in,
    resolve_ref,
    write_askpass,
    write_repo2docker_config,
)
from gallery_builder.build_store import BuildState
from gallery_builder.docker_images import build_tag
from gallery_common.image_labels import (
    COMMIT_LABEL,
    CPU_LIMIT_LABEL,
    MEMORY_LIMIT_LABEL,
    REF_LABEL,
    EnvironmentLabels,
    make_labels,
    parse_labels,
)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

PASSWORD = "s3cr3t/p@ss w+rd"
CREDENTIALS = Credentials("alice", PASSWORD)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}


def minimal_env(**extra: str) -> dict[str, str]:
    """A clean environment for child processes: no proxies, no user git config."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", **extra}


def git(*args: str, cwd: Path) -> str:
    env = minimal_env(**GIT_IDENTITY, GIT_CONFIG_NOSYSTEM="1")
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@dataclass
class Repo:
    """A bare repository with branch "trunk" (the default), "feature", and two tags."""

    path: Path
    trunk: str
    feature: str
    annotated_tag_object: str


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
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


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- argv and config ------------------------------------------------------------------------


def test_repo2docker_command() -> None:
    assert repo2docker_command(
        repository="https://example.org/demo.git",
        commit="a" * 40,
        image="demo:main",
        config_path="/tmp/x/config.py",
    ) == [
        "repo2docker",
        "--config",
        "/tmp/x/config.py",
        "--engine",
        "gallery-docker-api",
        "--no-run",
        "--user-id",
        "1000",
        "--user-name",
        "jovyan",
        "--image-name",
        "demo:main",
        "--ref",
        "a" * 40,
        "https://example.org/demo.git",
    ]


def test_repo2docker_command_engine_and_executable() -> None:
    argv = repo2docker_command(
        repository="r",
        commit="c",
        image="i:t",
        config_path="p",
        engine="docker",
        executable="/venv/bin/repo2docker",
    )
    assert argv[0] == "/venv/bin/repo2docker"
    assert argv[argv.index("--engine") + 1] == "docker"
    assert argv[-1] == "r"  # the repository is the only positional argument, last


class FakeConfig:
    """Just enough of traitlets' Config for `c.X.y = ...` assignments."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return self.sections.setdefault(name, _Section())


class _Section(dict):  # type: ignore[type-arg]
    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def exec_config(text: str) -> FakeConfig:
    config = FakeConfig()
    namespace = {"get_config": lambda: config}
    exec(compile(text, "repo2docker_config.py", "exec"), namespace)  # noqa: S102 - our own file
    return config


def test_config_sets_labels_and_content_providers() -> None:
    pytest.importorskip("repo2docker")
    from repo2docker.contentproviders import Git, Local

    labels = {"org.neurolang-gallery.ref": "main", "b": "two"}
    config = exec_config(repo2docker_config_text(labels))
    assert config.sections["DockerAPIEngine"]["extra_labels"] == labels
    assert config.sections["Repo2Docker"]["content_providers"] == [Local, Git]


def test_config_values_cannot_inject_code() -> None:
    pytest.importorskip("repo2docker")
    evil = "'}\nimport os; os.system('touch /tmp/pwned')  # \"\"\" \\"
    text = repo2docker_config_text({"key": evil, evil: "value"})
    config = exec_config(text)
    assert config.sections["DockerAPIEngine"]["extra_labels"] == {"key": evil, evil: "value"}
    # The whole labels dict is one literal on one line.
    line = next(li for li in text.splitlines() if li.startswith("c.DockerAPIEngine"))
    assert ast.literal_eval(line.partition(" = ")[2]) == {"key": evil, evil: "value"}


def test_config_refuses_non_string_values() -> None:
    with pytest.raises(TypeError):
        repo2docker_config_text({"a": 1})  # type: ignore[dict-item]


def test_write_config_is_private(tmp_path: Path) -> None:
    path = write_repo2docker_config(tmp_path / "config.py", {"a": "b"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "extra_labels" in path.read_text()


# --- askpass and environment ----------------------------------------------------------------


@pytest.fixture(scope="module")
def askpass(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_askpass(tmp_path_factory.mktemp("askpass"))


def ask(askpass: Path, prompt: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(askpass), prompt], env=minimal_env(**env), capture_output=True, text=True, timeout=10
    )


ASKPASS_ENV = {ORIGIN_ENV: "https://git.example.org", USERNAME_ENV: "alice", PASSWORD_ENV: PASSWORD}


def test_askpass_files_are_private(askpass: Path) -> None:
    assert stat.S_IMODE(askpass.stat().st_mode) == 0o700
    assert stat.S_IMODE((askpass.parent / "askpass.py").stat().st_mode) == 0o600


def test_askpass_answers_for_the_repository_host(askpass: Path) -> None:
    user = ask(askpass, "Username for 'https://git.example.org': ", **ASKPASS_ENV)
    assert (user.returncode, user.stdout) == (0, "alice\n")
    secret = ask(askpass, "Password for 'https://alice@git.example.org': ", **ASKPASS_ENV)
    assert (secret.returncode, secret.stdout) == (0, PASSWORD + "\n")


def test_askpass_host_comparison_ignores_case(askpass: Path) -> None:
    answer = ask(askpass, "Username for 'HTTPS://Git.Example.ORG': ", **ASKPASS_ENV)
    assert answer.stdout == "alice\n"


@pytest.mark.parametrize(
    "prompt",
    [
        "Username for 'https://evil.example.org': ",
        "Password for 'https://alice@evil.example.org': ",
        "Password for 'https://alice@git.example.org.evil.com': ",
        "Password for 'https://mallory@git.example.org': ",
        "Password for 'http://alice@git.example.org': ",
        "Username for 'https://git.example.org:8443': ",
        "Password for 'https://git.example.org': ",
        "Enter passphrase for key '/root/.ssh/id_rsa': ",
        "",
    ],
)
def test_askpass_answers_nothing_elsewhere(askpass: Path, prompt: str) -> None:
    answer = ask(askpass, prompt, **ASKPASS_ENV)
    assert answer.stdout == ""
    assert answer.returncode != 0
    assert PASSWORD not in answer.stderr


def test_askpass_without_credentials_answers_nothing(askpass: Path) -> None:
    answer = ask(askpass, "Username for 'https://git.example.org': ")
    assert (answer.returncode, answer.stdout) == (1, "")


def test_askpass_with_a_port(askpass: Path) -> None:
    env = dict(ASKPASS_ENV, **{ORIGIN_ENV: "https://git.example.org:8443"})
    answer = ask(askpass, "Password for 'https://alice@git.example.org:8443': ", **env)
    assert answer.stdout == PASSWORD + "\n"


def test_askpass_ignores_python_environment(askpass: Path, tmp_path: Path) -> None:
    # A sitecustomize on PYTHONPATH must not run inside the program that holds the secret.
    (tmp_path / "sitecustomize.py").write_text("print('hijacked')\n")
    answer = ask(
        askpass, "Username for 'https://git.example.org': ", PYTHONPATH=str(tmp_path), **ASKPASS_ENV
    )
    assert answer.stdout == "alice\n"


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://git.example.org/group/repo.git", "https://git.example.org"),
        ("HTTPS://Git.Example.org:8443/repo", "https://Git.Example.org:8443"),
        ("http://10.0.0.5/repo", "http://10.0.0.5"),
        ("https://token@git.example.org/repo", "https://git.example.org"),
        ("git@github.com:org/repo.git", None),
        ("ssh://git@host/repo", None),
        ("/srv/repos/demo.git", None),
    ],
)
def test_repository_origin(url: str, origin: str | None) -> None:
    assert repository_origin(url) == origin


def test_git_environment(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "JUPYTERHUB_API_TOKEN": "hub-token",
        "GALLERY_ADMIN_PASSWORD": "admin",
        "SOME_SECRET": "x",
        "GIT_ASKPASS": "/usr/bin/other-askpass",
        "GIT_CONFIG_COUNT": "3",
        "GIT_CONFIG_KEY_2": "credential.helper",
        "GIT_CONFIG_VALUE_2": "store",
        "DOCKER_HOST": "unix:///var/run/docker.sock",
    }
    env = git_environment("https://git.example.org/r.git", CREDENTIALS, tmp_path / "ap", base)
    assert env["GIT_ASKPASS"] == str(tmp_path / "ap")
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("credential.helper", "")
    assert env[ORIGIN_ENV] == "https://git.example.org"
    assert (env[USERNAME_ENV], env[PASSWORD_ENV]) == ("alice", PASSWORD)
    assert env["DOCKER_HOST"] == base["DOCKER_HOST"]
    for dropped in ("JUPYTERHUB_API_TOKEN", "GALLERY_ADMIN_PASSWORD", "SOME_SECRET"):
        assert dropped not in env
    assert "GIT_CONFIG_KEY_2" not in env
    # Only the askpass variable carries the password.
    assert [key for key, value in env.items() if PASSWORD in value] == [PASSWORD_ENV]


def test_git_environment_without_credentials_or_for_ssh(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", USERNAME_ENV: "stale", PASSWORD_ENV: "stale"}
    for url, credentials in (
        ("https://git.example.org/r.git", None),
        ("git@git.example.org:r.git", CREDENTIALS),
    ):
        env = git_environment(url, credentials, tmp_path / "ap", base)
        assert ORIGIN_ENV not in env and USERNAME_ENV not in env and PASSWORD_ENV not in env
        assert env["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes"


# --- scrubbing ------------------------------------------------------------------------------


def test_scrubber_masks_every_form_of_the_password() -> None:
    scrub = Scrubber.for_credentials(CREDENTIALS)
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    for form in (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), quote_plus(PASSWORD), basic):
        line = f"fatal: https://alice:{form}@host/repo said no ({form})\n"
        scrubbed = scrub(line)
        assert form not in scrubbed
        assert PASSWORD not in scrubbed
        assert scrubbed.count(MASK) >= 2
    assert scrub("nothing secret here\n") == "nothing secret here\n"


def test_scrubber_without_credentials_changes_nothing() -> None:
    assert Scrubber.for_credentials(None)("a line with *** and text") == "a line with *** and text"


async def feed_lines(chunks: list[bytes], scrub: Scrubber | None, max_line: int) -> list[str]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return [line async for line in read_lines(reader, scrub, max_line=max_line)]


def test_read_lines_splits_decodes_and_terminates() -> None:
    snowman = "☃".encode()
    chunks = [b"one\r\ntw", b"o\n" + snowman[:1], snowman[1:] + b"\nlast"]
    assert run(feed_lines(chunks, None, 100)) == ["one\n", "two\n", "☃\n", "last\n"]


def test_read_lines_splits_long_lines() -> None:
    lines = run(feed_lines([b"x" * 25 + b"\n"], None, 10))
    assert lines == ["x" * 10 + "\n", "x" * 10 + "\n", "x" * 5 + "\n"]


def test_read_lines_scrubs_secrets_across_chunks_and_long_line_splits() -> None:
    scrub = Scrubber.for_credentials(CREDENTIALS)
    data = ("y" * 37 + PASSWORD + "z" * 50 + "\n" + PASSWORD).encode()
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    lines = run(feed_lines(chunks, scrub, 20))
    assert all(len(line) <= 21 for line in lines)
    joined = "".join(lines)
    assert PASSWORD not in joined.replace("\n", "")
    assert joined.replace("\n", "").count(MASK) == 2


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
    with pytest.raises(BuildError, match="empty"):
        default_branch({}, {})


def resolve(repo: Repo | Path | str, ref: str | None, tmp_path: Path, **kwargs: Any) -> ResolvedRef:
    url = str(repo.path if isinstance(repo, Repo) else repo)
    kwargs.setdefault("base_env", minimal_env())
    return run(resolve_in(tmp_path, url, ref, None, timeout=20, **kwargs))


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
    with pytest.raises(BuildError, match="full 40-character commit SHA") as caught:
        resolve(repo, repo.trunk[:7], tmp_path)
    assert "branch, a tag" in str(caught.value)


def test_resolve_unknown_ref(repo: Repo, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="no branch or tag named 'nope'"):
        resolve(repo, "nope", tmp_path)


def test_resolve_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not found") as caught:
        resolve(tmp_path / "missing.git", None, tmp_path)
    assert "git said: fatal:" in str(caught.value)


def test_resolve_empty_repository(tmp_path: Path) -> None:
    empty = tmp_path / "empty.git"
    empty.mkdir()
    git("init", "-q", "--bare", cwd=empty)
    with pytest.raises(BuildError, match="empty"):
        resolve(empty, None, tmp_path)


def test_resolve_ref_public_helper(repo: Repo) -> None:
    assert run(resolve_ref(str(repo.path), "feature", None, timeout=20)) == repo.feature


def test_resolve_times_out_and_kills_git(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "git.pid"
    fake_git = bin_dir / "git"
    fake_git.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    fake_git.chmod(0o755)
    env = minimal_env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    started = time.monotonic()
    with pytest.raises(BuildError, match=r"timed out after 0\.5 s"):
        run(
            resolve_in(
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
    resolved = run(resolve_in(tmp_path, url, None, CREDENTIALS, timeout=20, base_env=minimal_env()))
    assert resolved == ResolvedRef(repo.trunk, "trunk")
    assert server.expected_auth in server.seen_auth


@pytest.mark.parametrize("credentials", [None, Credentials("alice", "wrong-" + PASSWORD)])
def test_resolve_over_http_refused(
    http_repo: tuple[str, GitHTTPServer], tmp_path: Path, credentials: Credentials | None
) -> None:
    url, _server = http_repo
    with pytest.raises(BuildError, match="authentication failed") as caught:
        run(resolve_in(tmp_path, url, "trunk", credentials, timeout=20, base_env=minimal_env()))
    assert PASSWORD not in str(caught.value)


# --- runs -----------------------------------------------------------------------------------

FAKE_REPO2DOCKER = """\
#!{python}
# Stands in for repo2docker: records how it was called, prints, then does what MODE says.
import json, os, signal, subprocess, sys, time
out = os.environ["FAKE_R2D_OUT"]
with open(sys.argv[sys.argv.index("--config") + 1]) as handle:
    config = handle.read()
record = {{"argv": sys.argv, "config": config, "cwd": os.getcwd(), "env": dict(os.environ)}}
with open(out, "w") as handle:
    json.dump(record, handle)
print("Picked Git content provider.", flush=True)
print("echo: " + os.environ.get("FAKE_R2D_ECHO", ""), flush=True)
mode = os.environ.get("FAKE_R2D_MODE", "ok")
if mode == "fail":
    print("Step 2/3 : RUN make", flush=True)
    print("ERROR: the build broke", flush=True)
    print("some trailing output", flush=True)
    sys.exit(3)
if mode in ("hang", "stubborn"):
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "300"])
    with open(out + ".pids", "w") as handle:
        handle.write(f"{{os.getpid()}} {{child.pid}}")
    print("started", flush=True)
    time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has already exited


def wait_dead(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


@dataclass
class FakeImage:
    id: str
    labels: dict[str, str]
    size: int = 4242


@dataclass
class FakeImages:
    """DockerImages' interface over a dict of name -> image."""

    images: dict[str, FakeImage] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    in_use: set[str] = field(default_factory=set)

    def _find(self, image: str) -> FakeImage | None:
        if image in self.images:
            return self.images[image]
        return next((i for i in self.images.values() if i.id == image), None)

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
        self.images[target] = found

    def remove(self, image: str, *, prune: bool = False) -> bool:
        from docker.errors import APIError

        self.calls.append(("remove-pruning" if prune else "remove", image))
        if image in self.in_use:
            raise APIError("conflict: image is being used by stopped container")
        names = [n for n, i in self.images.items() if n == image or i.id == image]
        for name in names:
            del self.images[name]
        return bool(names)


@dataclass
class RunnerSetup:
    runner: BuildRunner
    images: FakeImages
    record_file: Path
    work_root: Path

    def record(self) -> dict[str, Any]:
        return json.loads(self.record_file.read_text())

    def pids(self) -> list[int]:
        path = Path(f"{self.record_file}.pids")
        deadline = time.monotonic() + 10
        while not path.exists() or not path.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return [int(pid) for pid in path.read_text().split()]


def make_runner(tmp_path: Path, mode: str = "ok", **kwargs: Any) -> RunnerSetup:
    script = tmp_path / "repo2docker"
    script.write_text(FAKE_REPO2DOCKER.format(python=sys.executable))
    script.chmod(0o755)
    record_file = tmp_path / "record.json"
    work_root = tmp_path / "work"
    work_root.mkdir()
    images = FakeImages()
    env = minimal_env(
        FAKE_R2D_OUT=str(record_file),
        FAKE_R2D_MODE=mode,
        FAKE_R2D_ECHO=f"token {PASSWORD} and {quote(PASSWORD, safe='')}",
        GALLERY_ADMIN_PASSWORD="never-inherited",
    )
    runner = BuildRunner(
        images=images,  # type: ignore[arg-type]
        repo2docker=str(script),
        builder_version="9.9",
        work_root=work_root,
        base_env=env,
        **kwargs,
    )
    return RunnerSetup(runner, images, record_file, work_root)


def request_for(repo: Repo, ref: str | None = None, **kwargs: Any) -> BuildRequest:
    fields: dict[str, Any] = {
        "repository": str(repo.path),
        "ref": ref,
        "name": "demo",
        "memory_gb": 2.0,
        "cpu": 1.0,
        "credentials": CREDENTIALS,
    }
    fields.update(kwargs)
    return BuildRequest(**fields)


def labels_for(repo: Repo, commit: str, **kwargs: Any) -> dict[str, str]:
    fields: dict[str, Any] = {
        "repository": str(repo.path),
        "ref": "trunk",
        "commit": commit,
        "display_name": "demo",
        "memory_limit_gb": 2.0,
        "cpu_limit": 1.0,
        "builder_version": "9.9",
    }
    fields.update(kwargs)
    return make_labels(**fields)


def built_by_repo2docker(setup: RunnerSetup, image: str, build_id: str, labels: dict[str, str]):
    """Pretend repo2docker will leave its image under the temporary build tag."""
    setup.images.images[build_tag(image, build_id)] = FakeImage("sha256:new", labels)


def test_run_builds_and_publishes(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    built_by_repo2docker(setup, "demo:trunk", "b1", labels_for(repo, repo.trunk))
    lines: list[str] = []
    outcome = run(setup.runner.run("b1", request_for(repo), lines.append))

    assert outcome.state is BuildState.BUILT
    assert outcome.image == "demo:trunk"
    assert outcome.resolved_commit == repo.trunk
    assert (outcome.image_size, outcome.reused, outcome.reason) == (4242, False, None)
    temp = build_tag("demo:trunk", "b1")
    assert setup.images.calls[:2] == [("tag", temp, "demo:trunk"), ("remove", temp)]
    assert set(setup.images.images) == {"demo:trunk"}

    record = setup.record()
    assert (
        record["argv"][1:]
        == repo2docker_command(
            repository=str(repo.path),
            commit=repo.trunk,
            image=temp,
            config_path=record["argv"][2],
            executable="x",
        )[1:]
    )
    labels = ast.literal_eval(
        next(li for li in record["config"].splitlines() if "extra_labels" in li).partition(" = ")[2]
    )
    assert labels[COMMIT_LABEL] == repo.trunk
    assert labels[REF_LABEL] == "trunk"
    assert (labels[MEMORY_LIMIT_LABEL], labels[CPU_LIMIT_LABEL]) == ("2", "1")
    assert record["env"]["GIT_TERMINAL_PROMPT"] == "0"
    assert record["env"]["TMPDIR"].startswith(str(setup.work_root))
    assert "GALLERY_ADMIN_PASSWORD" not in record["env"]

    assert lines[0].startswith(f"Building demo from {repo.path} at the default branch (build b1)")
    assert all(line.endswith("\n") for line in lines)
    assert any(line.startswith("Picked Git content provider.") for line in lines)
    assert f"echo: token {MASK} and {MASK}\n" in lines
    assert list(setup.work_root.iterdir()) == []


def test_run_never_puts_the_password_in_argv_config_or_log(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    built_by_repo2docker(setup, "demo:trunk", "b1", labels_for(repo, repo.trunk))
    lines: list[str] = []
    run(setup.runner.run("b1", request_for(repo), lines.append))
    record = setup.record()
    encoded = quote(PASSWORD, safe="")
    for text in (" ".join(record["argv"]), record["config"], "".join(lines)):
        assert PASSWORD not in text and encoded not in text


def test_run_reuses_an_image_of_the_same_commit(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    setup.images.images["demo:trunk"] = FakeImage("sha256:old", labels_for(repo, repo.trunk))
    lines: list[str] = []
    outcome = run(setup.runner.run("b2", request_for(repo), lines.append))
    assert outcome.state is BuildState.BUILT
    assert (outcome.reused, outcome.image, outcome.image_size) == (True, "demo:trunk", 4242)
    assert f"commit {repo.trunk[:7]} is already built as demo:trunk; reusing it\n" in lines
    assert not setup.record_file.exists()  # repo2docker never ran
    assert setup.images.calls == []


def test_run_rebuilds_when_the_limits_differ(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    old = labels_for(repo, repo.trunk, memory_limit_gb=4)
    setup.images.images["demo:trunk"] = FakeImage("sha256:old", old)
    built_by_repo2docker(setup, "demo:trunk", "b3", labels_for(repo, repo.trunk))
    outcome = run(setup.runner.run("b3", request_for(repo), lambda line: None))
    assert (outcome.state, outcome.reused) == (BuildState.BUILT, False)
    assert setup.record_file.exists()
    # The image the name used to point at is dropped once the new one has the name.
    # Pruned: its untagged parents are that old build's intermediate layers.
    assert ("remove-pruning", "sha256:old") in setup.images.calls
    assert setup.images.images["demo:trunk"].id == "sha256:new"


def test_run_keeps_a_previous_image_docker_refuses_to_remove(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    setup.images.images["demo:v1"] = FakeImage("sha256:old", labels_for(repo, "f" * 40))
    setup.images.in_use.add("sha256:old")
    built_by_repo2docker(setup, "demo:v1", "b4", labels_for(repo, repo.trunk, ref="v1"))
    lines: list[str] = []
    outcome = run(setup.runner.run("b4", request_for(repo, "v1"), lines.append))
    assert outcome.state is BuildState.BUILT
    assert any(line.startswith("Kept the previous image of demo:v1") for line in lines)


def test_run_names_images_after_the_ref(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    outcome = run(setup.runner.run("b5", request_for(repo, repo.feature), lambda line: None))
    # A full commit is the tag, shortened; repo2docker "built" nothing here, so it fails.
    assert outcome.image == f"demo:{repo.feature[:7]}"
    assert outcome.state is BuildState.FAILED
    assert "missing or unlabelled" in (outcome.reason or "")


def test_run_reports_a_repo2docker_failure(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path, mode="fail")
    lines: list[str] = []
    outcome = run(setup.runner.run("b6", request_for(repo, "feature"), lines.append))
    assert outcome.state is BuildState.FAILED
    assert outcome.reason == "repo2docker exited with status 3: ERROR: the build broke"
    assert outcome.image == "demo:feature"
    assert outcome.resolved_commit == repo.feature
    assert lines[-1] == f"Build failed: {outcome.reason}\n"
    assert not any(call[0] == "tag" for call in setup.images.calls)
    assert list(setup.work_root.iterdir()) == []


def test_run_reports_a_resolve_failure(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    outcome = run(setup.runner.run("b7", request_for(repo, "nope"), lambda line: None))
    assert outcome.state is BuildState.FAILED
    assert outcome.reason is not None and "no branch or tag named 'nope'" in outcome.reason
    assert outcome.image is None
    assert not setup.record_file.exists()
    assert list(setup.work_root.iterdir()) == []


def test_run_without_repo2docker_fails_cleanly(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path)
    setup.runner.repo2docker = str(tmp_path / "not-installed")
    outcome = run(setup.runner.run("b10", request_for(repo), lambda line: None))
    assert outcome.state is BuildState.FAILED
    assert outcome.reason == f"cannot start {tmp_path / 'not-installed'}: No such file or directory"


@pytest.mark.parametrize("mode", ["hang", "stubborn"])
def test_cancelling_a_run_kills_the_process_group(repo: Repo, tmp_path: Path, mode: str) -> None:
    setup = make_runner(tmp_path, mode=mode, kill_grace_s=0.5)
    lines: list[str] = []

    async def scenario() -> None:
        task = asyncio.create_task(setup.runner.run("b8", request_for(repo), lines.append))
        while "started\n" not in lines:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    run(scenario())
    assert time.monotonic() - started < 10
    for pid in setup.pids():
        wait_dead(pid)
    assert lines[-1] == "Stopped repo2docker\n"
    assert list(setup.work_root.iterdir()) == []
    assert not any(call[0] == "tag" for call in setup.images.calls)


def test_a_caller_timeout_kills_the_build(repo: Repo, tmp_path: Path) -> None:
    setup = make_runner(tmp_path, mode="hang", kill_grace_s=0.5)

    async def scenario() -> None:
        async with asyncio.timeout(1.5):
            await setup.runner.run("b9", request_for(repo), lambda line: None)

    with pytest.raises(TimeoutError):
        run(scenario())
    for pid in setup.pids():
        wait_dead(pid)
    assert list(setup.work_root.iterdir()) == []


def test_the_default_repo2docker_is_next_to_the_interpreter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(build_runner.shutil, "which", lambda name, path=None: None)
    assert BuildRunner(images=FakeImages()).repo2docker == "repo2docker"  # type: ignore[arg-type]


def test_askpass_script_is_self_contained() -> None:
    # It runs with -I -S: only the standard library, nothing from this package.
    imports = [line for line in build_runner.ASKPASS_CODE.splitlines() if "import" in line]
    assert imports == ["import os", "import re", "import sys"]
