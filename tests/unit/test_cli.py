"""`build-image`: arguments, validation, output and records, with fake runners.

The real BuildRunner appears only with a fake repo2docker and fake Docker images, to check
--force and local repositories end to end without Docker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gallery_builder import cli
from gallery_builder.build_queue import BuildQueue
from gallery_builder.build_request import BuildRequest
from gallery_builder.build_runner import BuildRunner, RunOutcome
from gallery_builder.build_store import BuildState, BuildStore
from gallery_builder.builder_settings import BuilderSettings
from gallery_builder.docker_images import build_tag
from gallery_builder.environments import Environments, RequestRules
from gallery_common.image_labels import make_labels

from .conftest import COMMIT, FakeImage, FakeImages, FakeRunner, fake_resolve, needs_git

URL = "https://example.org/lab/demo.git"
OTHER_URL = "https://example.org/lab/other.git"
OTHER_COMMIT = "d" * 40


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture
def build(
    capsys: pytest.CaptureFixture[str],
    runner: FakeRunner,
    store: BuildStore,
    env: dict[str, str],
) -> Callable[..., Run]:
    """Run main() with the fake runner and the test store; capture its output."""

    def run(*argv: str, **kwargs: Any) -> Run:
        options: dict[str, Any] = {
            "runner_factory": runner.configure,
            "store": store,
            "env": env,
            "resolve": fake_resolve,
        }
        options.update(kwargs)
        code = cli.main(list(argv), **options)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def git(*args: str, cwd: Path) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.org",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def make_repo(path: Path) -> str:
    """A git working tree at `path` on branch main with one commit; returns the commit."""
    path.mkdir(parents=True)
    git("init", "-q", cwd=path)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=path)
    (path / "Dockerfile").write_text("FROM scratch\n")
    git("add", "Dockerfile", cwd=path)
    git("commit", "-q", "-m", "one", cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


def write_gallery(path: Path, images: dict[str, dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"images": images}))
    return path


# --- arguments and validation ---------------------------------------------------------------


def test_no_repository_and_no_file_is_a_usage_error(build, runner, store) -> None:
    result = build()
    assert result.code == 2
    assert "--repo" in result.err and "--file" in result.err
    assert runner.calls == [] and store.list() == []


def test_repo_and_file_together_are_refused(build, runner, tmp_path) -> None:
    gallery = write_gallery(tmp_path / "gallery.yaml", {"a": {"repo": URL}})
    result = build("--repo", URL, "--file", str(gallery))
    assert result.code == 2
    assert "argument --file: not allowed with argument --repo" in result.err
    assert runner.calls == []


@pytest.mark.parametrize("option", ["--ref=main", "--name=x", "--memory=1", "--cpu=1"])
def test_per_image_options_are_refused_with_file(build, runner, tmp_path, option) -> None:
    gallery = write_gallery(tmp_path / "gallery.yaml", {"a": {"repo": URL}})
    result = build("--file", str(gallery), option)
    assert result.code == 2
    assert f"argument {option.partition('=')[0]}: not allowed with argument --file" in result.err
    assert runner.calls == []


BAD_ARGUMENTS = [
    (["--repo", URL, "--name", "Bad Name"], "--name"),
    (["--repo", URL, "--name=-x"], "--name"),
    (["--repo", URL, "--name", "x" * 64], "--name"),
    (["--repo", URL, "--ref", "a..b"], "--ref"),
    (["--repo", URL, "--ref=-bad"], "--ref"),
    (["--repo", URL, "--ref", "has space"], "--ref"),
    (["--repo", URL, "--memory", "lots"], "--memory"),
    (["--repo", URL, "--memory", "0"], "--memory"),
    (["--repo", URL, "--memory", "100000"], "--memory"),
    (["--repo", URL, "--memory", "nan"], "--memory"),
    (["--repo", URL, "--cpu=-1"], "--cpu"),
    (["--repo", URL, "--cpu", "1000"], "--cpu"),
    (["--repo", URL, "--cpu", "two"], "--cpu"),
    (["--repo", "http://127.0.0.1/repo.git"], "--repo"),
    (["--repo", "http://localhost/repo.git"], "--repo"),
    (["--repo", "http://169.254.169.254/latest/meta-data"], "--repo"),
    (["--repo", "http://hub:8081/hub/api"], "--repo"),
    (["--repo", "http://builder:8090/"], "--repo"),
    (["--repo", "file:///srv/repo.git"], "--repo"),
    (["--repo", "ext::sh -c touch% /tmp/pwned"], "--repo"),
    (["--repo", "https://user:secret@example.org/repo.git"], "--repo"),
    (["--repo", "./no-such-directory"], "--repo"),
    (["--repo", "/no/such/directory"], "--repo"),
    (["--repo", "not a url"], "--repo"),
]


@pytest.mark.parametrize(("argv", "option"), BAD_ARGUMENTS)
def test_bad_arguments_exit_2_naming_the_option(build, runner, store, argv, option) -> None:
    result = build(*argv)
    assert result.code == 2, result
    assert f"build-image: {option}: " in result.err
    assert result.out == ""
    assert runner.calls == [] and store.list() == []  # nothing was built or recorded


def test_an_option_without_its_value_is_an_argparse_error(build, runner) -> None:
    result = build("--repo", URL, "--name")
    assert result.code == 2
    assert "argument --name: expected one argument" in result.err
    assert runner.calls == []


def test_a_directory_that_is_not_a_git_repository_is_refused(build, runner, tmp_path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    result = build("--repo", str(plain))
    assert result.code == 2
    assert "build-image: --repo: " in result.err and "not a git repository" in result.err
    assert runner.calls == []


def test_private_networks_follow_the_setting(build, runner, env) -> None:
    def private(host: str, port: object = None) -> list[tuple[Any, ...]]:
        if host != "example.org":
            return fake_resolve(host, port)
        return [(2, 1, 6, "", ("10.1.2.3", 0))]

    refused = build(
        "--repo", URL, env={**env, "GALLERY_ALLOW_PRIVATE_REPOSITORIES": "false"}, resolve=private
    )
    assert refused.code == 2 and "build-image: --repo: " in refused.err
    assert "private" in refused.err
    assert runner.calls == []
    assert build("--repo", URL, resolve=private).code == 0


def test_limits_come_from_the_settings(build, runner, env) -> None:
    result = build("--repo", URL, "--memory", "3", env={**env, "GALLERY_MAX_MEMORY_GB": "2"})
    assert result.code == 2
    assert "build-image: --memory: must be at most 2 GB" in result.err
    assert runner.calls == []


def test_a_bad_setting_exits_2_naming_the_variable(build, runner, env) -> None:
    result = build("--repo", URL, env={**env, "GALLERY_MAX_CPU": "lots"})
    assert result.code == 2
    assert "build-image: GALLERY_MAX_CPU: " in result.err
    assert runner.calls == []


def test_a_name_another_repository_uses_is_refused(build, runner, store) -> None:
    store.create(name="demo", image="demo:main", repository=OTHER_URL)
    result = build("--repo", URL, "--name", "demo")
    assert result.code == 2
    assert f"build-image: --name: the name 'demo' is already used by {OTHER_URL}" in result.err
    assert runner.calls == [] and len(store.list()) == 1


# --- one image ------------------------------------------------------------------------------


def test_builds_one_image_and_records_it_like_the_service(build, runner, store) -> None:
    result = build("--repo", URL, "--name", "demo", "--memory", "2", "--cpu", "0.5")

    assert result.code == 0, result
    assert runner.calls == [
        BuildRequest(repository=URL, ref=None, name="demo", memory_gb=2.0, cpu=0.5)
    ]
    lines = result.out.splitlines()
    assert lines[0].startswith("Building demo (build ")
    assert "repo2docker output" in lines
    assert lines[-1].startswith("built demo:main in ")
    assert lines[-1].endswith(f" s (commit {COMMIT[:7]})")
    assert result.err == ""

    [record] = store.list()
    assert record.state is BuildState.BUILT
    # Recorded as the service records: created as name:latest, renamed to the branch.
    assert (record.name, record.image, record.repository) == ("demo", "demo:main", URL)
    assert (record.memory_gb, record.cpu, record.ref) == (2.0, 0.5, None)
    assert record.resolved_commit == COMMIT
    assert (record.image_size, record.reused, record.reason) == (10, False, None)
    assert record.started_at and record.finished_at
    assert "repo2docker output\n" in store.full_log(record.id)


def test_the_name_defaults_to_the_repository_name(build, runner) -> None:
    assert build("--repo", URL).code == 0
    assert runner.calls[0].name == "demo"


def test_a_ref_is_validated_and_passed_on(build, runner, store) -> None:
    assert build("--repo", URL, "--ref", "v1.0").code == 0
    assert runner.calls[0].ref == "v1.0"
    assert store.list()[0].image == "demo:v1.0"


def test_json_prints_results_on_stdout_and_the_log_on_stderr(build, store) -> None:
    result = build("--repo", URL, "--json")

    assert result.code == 0
    [entry] = json.loads(result.out)
    record = store.list()[0]
    assert entry == {
        "id": record.id,
        "name": "demo",
        "image": "demo:main",
        "state": "built",
        "reused": False,
        "commit": COMMIT,
        "seconds": entry["seconds"],
        "reason": None,
    }
    assert isinstance(entry["seconds"], float) and entry["seconds"] >= 0
    assert "repo2docker output" in result.err
    assert "built demo:main in " in result.err


def test_a_failed_build_exits_1_with_its_reason(build, runner, store) -> None:
    runner.fail.add("demo")
    result = build("--repo", URL, "--json")

    assert result.code == 1
    [entry] = json.loads(result.out)
    assert (entry["state"], entry["reason"]) == ("failed", "repo2docker exited with status 1")
    assert "failed demo:main after " in result.err
    assert result.err.rstrip().endswith(": repo2docker exited with status 1")
    assert store.list()[0].state is BuildState.FAILED


def test_a_crashing_runner_is_recorded_as_failed(build, runner, store) -> None:
    runner.crash.add("demo")
    result = build("--repo", URL)
    assert result.code == 1
    assert "failed demo:latest after " in result.out
    assert "the runner broke" in result.out
    record = store.list()[0]
    assert (record.state, record.reason) == (BuildState.FAILED, "the runner broke")


# --- gallery file ---------------------------------------------------------------------------


def test_file_builds_every_image_and_reuses_the_built_one(build, runner, store, tmp_path) -> None:
    runner.built[(URL, "first")] = COMMIT  # already built for the commit the ref is at
    gallery = write_gallery(
        tmp_path / "gallery.yaml",
        {"first": {"repo": URL}, "second": {"repo": OTHER_URL, "memory": 2, "cpu": 1}},
    )
    result = build("--file", str(gallery), "--json")

    assert result.code == 0, result
    entries = {entry["name"]: entry for entry in json.loads(result.out)}
    assert (entries["first"]["state"], entries["first"]["reused"]) == ("built", True)
    assert (entries["second"]["state"], entries["second"]["reused"]) == ("built", False)
    assert "reused first:main in " in result.err
    assert "built second:main in " in result.err
    assert "2 images: 1 built, 1 reused, 0 failed" in result.err
    assert [r.name for r in runner.calls] == ["first", "second"]
    assert (runner.calls[1].memory_gb, runner.calls[1].cpu) == (2.0, 1.0)
    records = {r.name: r for r in store.list()}
    assert records["first"].reused is True and records["second"].reused is False


def test_file_goes_on_after_a_failure_and_exits_1(build, runner, store, tmp_path) -> None:
    runner.fail.add("first")
    gallery = write_gallery(
        tmp_path / "gallery.yaml", {"first": {"repo": URL}, "second": {"repo": OTHER_URL}}
    )
    result = build("--file", str(gallery))

    assert result.code == 1
    assert "failed first:main after " in result.out
    assert "built second:main in " in result.out
    assert "2 images: 1 built, 0 reused, 1 failed" in result.out
    assert {r.name: r.state for r in store.list()} == {
        "first": BuildState.FAILED,
        "second": BuildState.BUILT,
    }


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"repo": "http://127.0.0.1/x.git"}, "images.second.repo"),
        ({"repo": OTHER_URL, "ref": "a..b"}, "images.second.ref"),
        ({"repo": OTHER_URL, "memory": 1000}, "images.second.memory"),
        ({"repo": OTHER_URL, "cpu": 1000}, "images.second.cpu"),
        ({"repo": OTHER_URL, "colour": "red"}, "images.second.colour"),
    ],
)
def test_file_with_a_bad_entry_builds_nothing(build, runner, store, tmp_path, entry, where) -> None:
    gallery = write_gallery(tmp_path / "gallery.yaml", {"first": {"repo": URL}, "second": entry})
    result = build("--file", str(gallery))
    assert result.code == 2
    assert result.err.startswith(f"build-image: --file: {gallery}: {where}: ")
    assert runner.calls == [] and store.list() == []


def test_file_that_does_not_exist(build, runner, tmp_path) -> None:
    result = build("--file", str(tmp_path / "missing.yaml"))
    assert result.code == 2
    assert "build-image: --file: " in result.err and "cannot read" in result.err
    assert runner.calls == []


def test_file_without_a_path_uses_the_configured_one(build, runner, env, tmp_path) -> None:
    gallery = write_gallery(tmp_path / "configured.yaml", {"only": {"repo": URL}})
    result = build("--file", env={**env, "GALLERY_FILE": str(gallery)})
    assert result.code == 0, result
    assert [r.name for r in runner.calls] == ["only"]


def test_default_gallery_file(tmp_path) -> None:
    assert cli.default_gallery_file({"GALLERY_FILE_PATH": "/a.yaml", "GALLERY_FILE": "/b"}) == (
        Path("/a.yaml")
    )
    assert cli.default_gallery_file({"GALLERY_FILE": "/b.yaml"}) == Path("/b.yaml")
    expected = cli.CONTAINER_GALLERY_FILE if cli.CONTAINER_GALLERY_FILE.is_file() else None
    assert cli.default_gallery_file({}) == (expected or Path("gallery.yaml"))


def test_file_without_images_builds_nothing(build, runner, tmp_path) -> None:
    gallery = tmp_path / "gallery.yaml"
    gallery.write_text("examples: {}\n")
    result = build("--file", str(gallery), "--json")
    assert result.code == 0
    assert json.loads(result.out) == []
    assert "lists no images" in result.err
    assert runner.calls == []


# --- local repositories ---------------------------------------------------------------------


@needs_git
def test_a_local_repository_is_built_through_a_file_url(build, runner, store, tmp_path) -> None:
    repo = tmp_path / "My Demo"
    make_repo(repo)
    result = build("--repo", str(repo), "--ref", "main", "--memory", "1")

    assert result.code == 0, result
    [request] = runner.calls
    assert request.repository == repo.resolve().as_uri()
    assert request.repository.startswith("file:///")
    assert (request.name, request.ref, request.memory_gb) == ("my-demo", "main", 1.0)
    assert store.list()[0].repository == request.repository


@needs_git
def test_a_relative_local_path(build, runner, tmp_path, monkeypatch) -> None:
    make_repo(tmp_path / "demo")
    monkeypatch.chdir(tmp_path)
    assert build("--repo", "demo", "--name", "local").code == 0
    assert runner.calls[0].repository == (tmp_path / "demo").resolve().as_uri()


@needs_git
def test_local_paths_in_a_gallery_file_are_relative_to_it(build, runner, tmp_path) -> None:
    make_repo(tmp_path / "content" / "demo")
    gallery = write_gallery(tmp_path / "content" / "gallery.yaml", {"local": {"repo": "./demo"}})
    assert build("--file", str(gallery)).code == 0
    assert runner.calls[0].repository == (tmp_path / "content" / "demo").resolve().as_uri()


@needs_git
def test_a_local_repository_validates_the_other_arguments(build, runner, tmp_path) -> None:
    make_repo(tmp_path / "demo")
    result = build("--repo", str(tmp_path / "demo"), "--memory", "lots")
    assert result.code == 2
    assert "build-image: --memory: " in result.err
    assert runner.calls == []


def test_a_bare_repository_counts_as_a_git_repository(tmp_path) -> None:
    (tmp_path / "objects").mkdir()
    (tmp_path / "HEAD").write_text("ref: refs/heads/main\n")
    assert cli.is_git_repository(tmp_path)
    assert not cli.is_git_repository(tmp_path / "objects")


def test_git_config_trusts_the_local_repositories_and_keeps_the_users(tmp_path) -> None:
    text = cli.git_config_text([Path('/srv/a "b"\\c')], {"HOME": "/home/u"})
    assert '\tpath = "/home/u/.config/git/config"\n' in text
    assert '\tpath = "/home/u/.gitconfig"\n' in text
    assert '\tdirectory = "/srv/a \\"b\\"\\\\c"\n' in text
    assert '\tdirectory = "/srv/a \\"b\\"\\\\c/.git"\n' in text
    own = cli.git_config_text([Path("/r")], {"GIT_CONFIG_GLOBAL": "/etc/mine", "HOME": "/h"})
    assert '\tpath = "/etc/mine"\n' in own and ".gitconfig" not in own


def test_child_environment_only_changes_for_local_repositories(tmp_path) -> None:
    remote = cli.Target(BuildRequest(URL, None, "demo", None, None), where="--name")
    with cli.child_environment([remote], {"A": "1"}) as env:
        assert env == {"A": "1"}
    local = cli.Target(
        BuildRequest((tmp_path / "r").as_uri(), None, "r", None, None),
        where="--name",
        local=tmp_path / "r",
    )
    with cli.child_environment([local, remote], {"A": "1", "HOME": "/h"}) as env:
        config = Path(env["GIT_CONFIG_GLOBAL"])
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert f'directory = "{tmp_path / "r"}"' in config.read_text()
        assert env["A"] == "1"
    assert not config.exists()


# --- the real runner: --force and local repositories ----------------------------------------

FAKE_REPO2DOCKER = """\
#!{python}
# Stands in for repo2docker: records its argv.
import json, os, sys
with open(os.environ["FAKE_R2D_OUT"], "w") as handle:
    json.dump(sys.argv, handle)
print("fake repo2docker ran", flush=True)
"""


def real_runner(
    tmp_path: Path,
    images: FakeImages,
    env: dict[str, str] | None = None,
    *,
    reuse_existing: bool = True,
) -> BuildRunner:
    script = tmp_path / "repo2docker"
    script.write_text(FAKE_REPO2DOCKER.format(python=sys.executable))
    script.chmod(0o755)
    (tmp_path / "work").mkdir(exist_ok=True)
    return BuildRunner(
        images=images,  # type: ignore[arg-type]
        reuse_existing=reuse_existing,
        repo2docker=str(script),
        work_root=tmp_path / "work",
        base_env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": "/nonexistent",
            **(env or {}),
            "FAKE_R2D_OUT": str(tmp_path / "argv.json"),
        },
    )


@needs_git
@pytest.mark.parametrize("reused", [True, False])
def test_force_builds_even_when_the_commit_is_built(tmp_path, reused) -> None:
    commit = make_repo(tmp_path / "demo")
    repository = (tmp_path / "demo").as_uri()
    labels = make_labels(
        repository=repository, ref="main", commit=commit, display_name="demo", builder_version="1"
    )
    images = FakeImages({"demo:main": FakeImage("sha256:old", labels)})
    # What repo2docker would leave behind under the temporary tag.
    images.images[build_tag("demo:main", "b1")] = FakeImage("sha256:new", labels)
    runner = real_runner(tmp_path, images, reuse_existing=reused)
    lines: list[str] = []
    request = BuildRequest(repository, None, "demo", None, None)

    outcome = asyncio.run(runner.run("b1", request, lines.append))

    assert (outcome.state, outcome.reused) == (BuildState.BUILT, reused)
    assert (outcome.image, outcome.resolved_commit) == ("demo:main", commit)
    ran = (tmp_path / "argv.json").exists()
    assert ran is not reused
    if ran:
        argv = json.loads((tmp_path / "argv.json").read_text())
        # The commit, fetched from the file:// URL into a shallow checkout repo2docker builds.
        assert argv[-3:-1] == ["--ref", commit] and argv[-1].endswith("/checkout")
        assert images.images["demo:main"].id == "sha256:new"


@needs_git
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repository another owner")
@pytest.mark.parametrize("trusted", [True, False])
def test_a_repository_another_user_owns(tmp_path, trusted) -> None:
    """Like a host directory mounted into the builder container: git must be told to trust it."""
    repo = tmp_path / "demo"
    commit = make_repo(repo)
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 12345, 12345)
    repository = repo.as_uri()
    labels = make_labels(
        repository=repository, ref="main", commit=commit, display_name="demo", builder_version="1"
    )
    images = FakeImages({build_tag("demo:main", "b1"): FakeImage("sha256:new", labels)})
    target = cli.Target(
        BuildRequest(repository, None, "demo", None, None), where="--name", local=repo
    )
    with cli.child_environment([target] if trusted else [], {"HOME": "/nonexistent"}) as env:
        runner = real_runner(tmp_path, images, env)
        outcome = asyncio.run(runner.run("b1", target.request, lambda line: None))
    if trusted:
        assert (outcome.state, outcome.resolved_commit) == (BuildState.BUILT, commit)
    else:
        assert outcome.state is BuildState.FAILED
        assert "dubious ownership" in (outcome.reason or "")


def test_force_turns_off_reuse_and_lines_are_echoed() -> None:
    settings = BuilderSettings.from_env({})
    echoed: list[str] = []
    forced = cli.make_runner(settings, reuse_existing=False, on_line=echoed.append, base_env={})
    assert type(forced) is BuildRunner
    assert (forced.reuse_existing, forced.on_line, forced.engine) == (
        False,
        echoed.append,
        settings.engine,
    )
    assert cli.make_runner(settings, reuse_existing=True, on_line=print, base_env={}).reuse_existing


# --- records --------------------------------------------------------------------------------


def test_records_go_to_the_state_dir_option(capsys, runner, env, tmp_path) -> None:
    state = tmp_path / "elsewhere"
    code = cli.main(
        ["--repo", URL, "--state-dir", str(state)],
        runner_factory=runner.configure,
        env=env,
        resolve=fake_resolve,
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"recording builds in {state / 'builds.sqlite'}" in out
    with BuildStore(state / "builds.sqlite") as store:
        assert [r.state for r in store.list()] == [BuildState.BUILT]
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_no_record_keeps_nothing(capsys, runner, env, tmp_path) -> None:
    code = cli.main(
        ["--repo", URL, "--no-record", "--json"],
        runner_factory=runner.configure,
        env=env,
        resolve=fake_resolve,
    )
    [entry] = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (entry["id"], entry["state"]) == (None, "built")
    assert list(Path(env["HOME"]).iterdir()) == []


def test_state_dir_and_no_record_together_are_refused(build) -> None:
    result = build("--repo", URL, "--no-record", "--state-dir", "/x")
    assert result.code == 2
    assert "not allowed with argument" in result.err


def test_default_state_dir(tmp_path) -> None:
    settings = BuilderSettings.from_env({"GALLERY_BUILDER_STATE_DIR": str(tmp_path / "s")})
    # Configured: the builder's, even before it exists.
    assert cli.default_state_dir({"GALLERY_BUILDER_STATE_DIR": "x"}, settings) == tmp_path / "s"
    # Present (the builder container): the builder's.
    (tmp_path / "s").mkdir()
    assert cli.default_state_dir({}, settings) == tmp_path / "s"
    # Neither: per user.
    missing = BuilderSettings.from_env({"GALLERY_BUILDER_STATE_DIR": str(tmp_path / "none")})
    home = {"HOME": "/home/u"}
    assert cli.default_state_dir(home, missing) == Path("/home/u/.local/share/neurolang-gallery")
    xdg = {**home, "XDG_DATA_HOME": "/data"}
    assert cli.default_state_dir(xdg, missing) == Path("/data/neurolang-gallery")
    relative = {**home, "XDG_DATA_HOME": "data"}  # ignored, as the XDG spec says
    assert cli.default_state_dir(relative, missing) == Path(
        "/home/u/.local/share/neurolang-gallery"
    )


def test_an_unusable_store_exits_1(capsys, runner, env, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = cli.main(
        ["--repo", URL, "--state-dir", str(blocker / "state")],
        runner_factory=runner.configure,
        env=env,
        resolve=fake_resolve,
    )
    assert code == 1
    assert "build-image: cannot use the build store " in capsys.readouterr().err
    assert runner.calls == []


def test_two_stores_on_one_file_wait_for_each_other(tmp_path) -> None:
    """The CLI's store and the running service's share builds.sqlite (WAL, BEGIN IMMEDIATE)."""
    path = tmp_path / "builds.sqlite"
    with BuildStore(path) as service, BuildStore(path) as cli_store:
        record = service.create(name="a", image="a:main", repository=URL)
        held = threading.Event()

        def hold_the_write_lock() -> None:
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(0.5)
            db.execute("COMMIT")
            db.close()

        thread = threading.Thread(target=hold_the_write_lock)
        thread.start()
        held.wait()
        mine = cli_store.create(name="b", image="b:main", repository=OTHER_URL)  # waits
        for n in range(20):
            service.append_log(record.id, f"service {n}\n")
            cli_store.append_log(mine.id, f"cli {n}\n")
        thread.join()
        assert {r.name for r in service.list()} == {"a", "b"}
        assert cli_store.full_log(mine.id).count("cli ") == 20
        assert service.get(mine.id) == cli_store.get(mine.id)


# --- the build loop -------------------------------------------------------------------------


def environments(store: BuildStore, runner: Any, *, timeout_s: float) -> Environments:
    queue = BuildQueue(store, runner, timeout_s=timeout_s, on_event=lambda build_id: None)
    rules = RequestRules(max_memory_gb=16, max_cpu=8, resolve=fake_resolve)
    return Environments(store, queue, FakeImages(), rules)


def test_interrupting_cancels_the_running_build(store) -> None:
    started = asyncio.Event()
    stopped: list[str] = []

    class Forever:
        async def run(self, build_id, request, emit) -> RunOutcome:
            emit("started\n")
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append(build_id)
            raise AssertionError("unreachable")

    builder = cli.Builder(environments(store, Forever(), timeout_s=60))
    target = cli.Target(BuildRequest(URL, None, "demo", None, None), where="--name")

    async def interrupt() -> None:
        task = asyncio.create_task(builder.build_all([target], lambda result: None))
        await started.wait()
        task.cancel()  # what asyncio.run does on Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupt())
    [record] = store.list()
    assert record.state is BuildState.CANCELLED
    assert stopped == [record.id]
    assert store.full_log(record.id).startswith("started\n")


STOPPED_BY_SIGNAL = """
import asyncio, sys
from gallery_builder import cli
from gallery_builder.build_store import BuildStore

class Forever:
    def __init__(self, on_line):
        self.on_line = on_line

    async def run(self, build_id, request, emit):
        emit("started\\n")
        self.on_line("started\\n")
        await asyncio.Event().wait()

def resolve(host, port=None):
    if host != "example.org":
        raise OSError(host)
    return [(2, 1, 6, "", ("198.51.100.7", 0))]

with BuildStore(sys.argv[1]) as store:
    sys.exit(cli.main(
        ["--repo", "https://example.org/demo.git"],
        runner_factory=lambda settings, *, on_line, **options: Forever(on_line),
        store=store, env={"HOME": sys.argv[2]}, resolve=resolve,
    ))
"""


def ignore_sigint() -> None:
    # What a non-interactive shell does to a command it starts in the background (`cmd &`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("sigint_ignored", [False, True])
def test_a_signal_cancels_the_build_and_exits_130(tmp_path, sig, sigint_ignored) -> None:
    path = tmp_path / "builds.sqlite"
    src = Path(cli.__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-c", STOPPED_BY_SIGNAL, str(path), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(src)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_sigint if sigint_ignored else None,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while "started" not in (line := process.stdout.readline()):
            assert line and time.monotonic() < deadline, process.stderr and process.stderr.read()
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in err
    with BuildStore(path) as store:
        [record] = store.list()
    assert record.state is BuildState.CANCELLED


def test_a_timeout_is_recorded_as_failed(store) -> None:
    class Slow:
        async def run(self, build_id, request, emit) -> RunOutcome:
            await asyncio.sleep(30)
            raise AssertionError("unreachable")

    builder = cli.Builder(environments(store, Slow(), timeout_s=0.05))
    target = cli.Target(BuildRequest(URL, None, "demo", None, None), where="--name")
    [result] = asyncio.run(builder.build_all([target], lambda result: None))
    assert (result.state, result.reason) == ("failed", "timed out after 0.05 s")
    assert store.list()[0].state is BuildState.FAILED


def test_summary_lines() -> None:
    base = cli.BuildResult("i", "demo", "demo:main", "built", False, COMMIT, 12.34, None)
    assert base.summary() == f"built demo:main in 12.3 s (commit {COMMIT[:7]})"
    reused = cli.BuildResult("i", "demo", "demo:main", "built", True, COMMIT, 0.5, None)
    assert reused.summary() == f"reused demo:main in 0.5 s (commit {COMMIT[:7]} was already built)"
    failed = cli.BuildResult("i", "demo", "demo:x", "failed", False, None, 3.0, "no branch")
    assert failed.summary() == "failed demo:x after 3.0 s: no branch"
    assert not failed.ok and base.ok and reused.ok
    assert cli.tally([base, reused, failed]) == "3 images: 1 built, 1 reused, 1 failed"
