"""`build-image`: build environment images from the command line, as the builder service does.

    build-image --repo URL|PATH [--ref REF] [--name NAME] [--memory GB] [--cpu N] [--force]
    build-image --file [GALLERY_FILE] [--force] [--fill-data]
    build-image --prune

A build here is a build of the service: the same request validation (with the configured
limits and the stack's own hosts refused), the same BuildRunner (repo2docker through the
configured engine, the same labels and image names, reuse of an image already built from the
resolved commit), and the same BuildQueue driving the same sqlite BuildStore. So the record
goes QUEUED -> BUILDING -> BUILT / FAILED with its log, and the image shows up on the
Environments page and API and on the spawn page like any other.

Only here may the repository be a local directory (never through the web API). It must be a
git repository: it is built through a `file://` URL, so exactly the commit the ref names is
built and labelled, never uncommitted changes.

`--prune` removes this stack's environment images that no environment references (as the
API's prune does) and builds nothing.

Exit status: 0 when every image is built (or reused), 1 when one failed, 2 for bad arguments
(nothing is built then), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

from gallery_builder.after_build import AfterBuild
from gallery_builder.build_queue import BuildQueue, Runner
from gallery_builder.build_request import (
    BuildRequest,
    RepositoryCheck,
    Resolver,
    ValidationError,
    image_name,
    validate_repository_url,
)
from gallery_builder.build_runner import BuildRunner
from gallery_builder.build_setup import build_runner
from gallery_builder.build_store import BuildRecord, BuildState, BuildStore
from gallery_builder.builder_settings import BuilderSettings
from gallery_builder.data_fill import FillSettings
from gallery_builder.docker_images import CachedGateways, DockerImages
from gallery_builder.environments import EnvironmentRefusal, Environments, RequestRules
from gallery_common.gallery_file import GalleryFileError, load_gallery
from gallery_common.settings import SettingError

PROG = "build-image"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

STORE_FILE = "builds.sqlite"
STATE_DIR_ENV = "GALLERY_BUILDER_STATE_DIR"
USER_DATA_DIR = "neurolang-gallery"
# Where compose mounts the gallery file into the hub and the builder.
CONTAINER_GALLERY_FILE = Path("/srv/gallery/gallery.yaml")
# GALLERY_FILE_PATH: the path inside a container (as the hub reads it); GALLERY_FILE: the
# host path compose mounts, which is also the right one when running on the host.
GALLERY_FILE_ENVS = ("GALLERY_FILE_PATH", "GALLERY_FILE")
DEFAULT_GALLERY_FILE = Path("gallery.yaml")

# Request fields (as ValidationError.field names them) -> option, and -> gallery file key.
_OPTIONS = {
    "repository": "--repo",
    "ref": "--ref",
    "name": "--name",
    "memory": "--memory",
    "cpu": "--cpu",
}
_GALLERY_KEYS = {"repository": "repo"}  # the other keys are the same
# How a --repo value that is not an existing directory still says "I am a path".
_PATH_PREFIXES = ("/", "./", "../", "~")
_USE_DEFAULT_FILE = object()  # `--file` given without a path

T = TypeVar("T")


class UsageError(Exception):
    """A bad argument; `where` names it (an option, or a place in the gallery file)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class StoreError(Exception):
    """The build store cannot be opened."""


@dataclass(frozen=True)
class Target:
    """One image to build: its validated request, and how to name it in an error."""

    request: BuildRequest
    where: str
    local: Path | None = None  # the repository directory, for a local build


@dataclass(frozen=True)
class BuildResult:
    """How one image's build ended, for the summary line and --json."""

    id: str | None
    name: str
    image: str
    state: str
    reused: bool
    commit: str | None
    seconds: float
    reason: str | None

    @property
    def ok(self) -> bool:
        """True when the image exists now (built or reused)."""
        return self.state == BuildState.BUILT.value

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object (one element of the --json array)."""
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "state": self.state,
            "reused": self.reused,
            "commit": self.commit,
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
        }

    def summary(self) -> str:
        """One human line: what happened to the image, how long it took, and why if it failed."""
        short = (self.commit or "?")[:7]
        if self.ok and self.reused:
            return f"reused {self.image} in {self.seconds:.1f} s (commit {short} was already built)"
        if self.ok:
            return f"built {self.image} in {self.seconds:.1f} s (commit {short})"
        reason = self.reason or "no reason given"
        return f"{self.state} {self.image} after {self.seconds:.1f} s: {reason}"


# --- arguments ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `build-image`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Build environment images like the builder service does: same validation, "
            "labels, image names and build records, so they appear on the Environments page."
        ),
        epilog="Exit status: 0 all built or reused, 1 a build failed, 2 bad arguments.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--repo",
        metavar="URL|PATH",
        help="git URL, or a local git repository directory, to build one image from",
    )
    source.add_argument(
        "--prune",
        action="store_true",
        help="remove this stack's environment images that no environment references",
    )
    source.add_argument(
        "--file",
        nargs="?",
        const=_USE_DEFAULT_FILE,
        metavar="PATH",
        help=(
            "build every image under `images:` of a gallery file (default: $GALLERY_FILE_PATH, "
            f"$GALLERY_FILE, {CONTAINER_GALLERY_FILE} if present, else ./gallery.yaml)"
        ),
    )
    parser.add_argument("--ref", help="branch, tag or commit (default: the default branch)")
    parser.add_argument("--name", help="environment name (default: from the repository)")
    parser.add_argument("--memory", metavar="GB", help="memory limit of its servers, in GB")
    parser.add_argument("--cpu", metavar="N", help="CPU limit of its servers, in cores")
    parser.add_argument(
        "--force",
        action="store_true",
        help="build even when an image of the same commit exists (default: reuse it)",
    )
    parser.add_argument(
        "--fill-data",
        action="store_true",
        help=(
            "after each build (or reuse), run the image's gallery examples once with their "
            "data folder writable, on the stack's users network (needs the running stack); "
            "a failed fill fails the image"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as a JSON array on stdout; the log goes to stderr",
    )
    records = parser.add_mutually_exclusive_group()
    records.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help=(
            "where the build records are (builds.sqlite; default: the builder's state dir "
            f"when configured or present, else ~/.local/share/{USER_DATA_DIR})"
        ),
    )
    records.add_argument(
        "--no-record",
        action="store_true",
        help="keep no build records (the images are still labelled and listed by the hub)",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse `argv`; argparse exits with status 2 and a usage message on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.file is not None:
        for option in ("ref", "name", "memory", "cpu"):
            if getattr(args, option) is not None:
                # Each image of the file has its own; silently ignoring one would surprise.
                parser.error(f"argument --{option}: not allowed with argument --file")
    return args


# --- validation -----------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    return text.startswith(_PATH_PREFIXES) or text in (".", "..")


def local_directory(text: object, base: Path) -> Path | None:
    """The directory a repository value names, or None when it is to be read as a URL.

    An existing directory is local; so is anything written like a path (/x, ./x, ~/x), which
    then fails as "no such directory" rather than as a strange URL. Relative paths are
    relative to `base`.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    stripped = text.strip()
    path = Path(stripped).expanduser()
    if not path.is_absolute():
        path = base / path
    return path if path.is_dir() or _looks_like_path(stripped) else None


def is_git_repository(path: Path) -> bool:
    """True for a working tree (with .git, a directory or a file) or a bare repository."""
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def local_repository_url(path: Path) -> str:
    """The file:// URL git and repo2docker get for a local repository; else ValidationError."""
    if any(not ch.isprintable() for ch in str(path)):
        raise ValidationError("repository", "the path must not contain control characters")
    if not path.is_dir():
        raise ValidationError("repository", f"no such directory: {path}")
    real = path.resolve()
    if not is_git_repository(real):
        raise ValidationError(
            "repository",
            f"{real} is not a git repository; images are built from a commit "
            "(git init, git add and git commit first)",
        )
    # A URL, not the path: repo2docker then clones the commit instead of using the working
    # tree as it is, so the image holds exactly what its commit label says.
    return real.as_uri()


def repository_check(base: Path, rules: RequestRules) -> RepositoryCheck:
    """The repository check of build-image: a local directory (relative to `base`) becomes
    its file:// URL; anything else goes through the service's URL policy."""

    def check(value: object) -> str:
        local = local_directory(value, base)
        if local is not None:
            return local_repository_url(local)
        return validate_repository_url(
            value,
            allow_private=rules.allow_private,
            blocked_hosts=rules.blocked_hosts,
            host_addresses=rules.host_addresses(),
            resolve=rules.resolve,
        )

    return check


def target_for(fields: Mapping[str, Any], rules: RequestRules, base: Path, where: str) -> Target:
    """A Target from request fields (the API's keys), checked as the API checks them.

    Only a local directory is treated differently: it skips the URL policy (see
    `repository_check`); every other field goes through the same checks. ValidationError
    names the field at fault.
    """
    request = rules.parse(fields, check_repository=repository_check(base, rules))
    local = local_directory(fields.get("repository"), base)
    return Target(request, where=where, local=local.resolve() if local is not None else None)


def target_from_options(args: argparse.Namespace, rules: RequestRules) -> Target:
    """The one image --repo asks for; UsageError naming the option that is wrong."""
    fields = {
        "repository": args.repo,
        "ref": args.ref,
        "name": args.name,
        "memory": args.memory,
        "cpu": args.cpu,
    }
    try:
        return target_for(fields, rules, Path.cwd(), where="--name")
    except ValidationError as e:
        raise UsageError(_OPTIONS.get(e.field, e.field), e.message) from None


def default_gallery_file(env: Mapping[str, str]) -> Path:
    """The configured gallery file: see the --file help."""
    for variable in GALLERY_FILE_ENVS:
        value = env.get(variable, "").strip()
        if value:
            return Path(value)
    return CONTAINER_GALLERY_FILE if CONTAINER_GALLERY_FILE.is_file() else DEFAULT_GALLERY_FILE


def targets_from_file(path: Path, rules: RequestRules) -> list[Target]:
    """Every image under `images:` of the gallery file; UsageError naming the entry and key."""
    try:
        gallery = load_gallery(path)
    except GalleryFileError as e:
        raise UsageError(f"--file: {path}", str(e)) from None
    targets = []
    for spec in gallery.images.values():
        fields = {
            "repository": spec.repo,
            "ref": spec.ref,
            "name": spec.name,
            "memory": spec.memory,
            "cpu": spec.cpu,
        }
        entry = f"--file: {path}: images.{spec.name}"
        try:
            # Local paths in the file are relative to the file, like its thumbnails are.
            targets.append(target_for(fields, rules, path.parent, where=entry))
        except ValidationError as e:
            raise UsageError(f"{entry}.{_GALLERY_KEYS.get(e.field, e.field)}", e.message) from None
    return targets


def collect_targets(
    args: argparse.Namespace, rules: RequestRules, env: Mapping[str, str]
) -> list[Target]:
    """The validated images the arguments ask for; UsageError if any argument is wrong."""
    if args.prune:
        return []
    if args.repo is not None:
        return [target_from_options(args, rules)]
    path = default_gallery_file(env) if args.file is _USE_DEFAULT_FILE else Path(args.file)
    return targets_from_file(path, rules)


def check_names(targets: Sequence[Target], environments: Environments) -> None:
    """Refuse, as the API does (409 there), a name another repository already uses."""
    for target in targets:
        conflict = environments.name_conflict(target.request)
        if conflict:
            raise UsageError(target.where, conflict)


# --- build records --------------------------------------------------------------------------


def default_state_dir(env: Mapping[str, str], settings: BuilderSettings) -> Path:
    """The builder's state dir when configured or present (in its container), else per user.

    On a host without the builder, records go to $XDG_DATA_HOME/neurolang-gallery (by
    default ~/.local/share/neurolang-gallery).
    """
    if env.get(STATE_DIR_ENV, "").strip() or settings.state_dir.is_dir():
        return settings.state_dir
    data_home = env.get("XDG_DATA_HOME", "").strip()
    if data_home and Path(data_home).is_absolute():
        return Path(data_home) / USER_DATA_DIR
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / USER_DATA_DIR


def open_store(path: Path) -> BuildStore:
    """The BuildStore at `path`, its directory created private if missing; else StoreError."""
    try:
        # Only the leaf is made private: the parents (~/.local/share) are not ours to change.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return BuildStore(path)
    except (OSError, sqlite3.Error, RuntimeError) as e:
        raise StoreError(f"cannot use the build store {path}: {e}") from e


# --- local repositories ---------------------------------------------------------------------


def _git_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def user_git_configs(env: Mapping[str, str]) -> list[str]:
    """The global git config files git would read for this user (they may not exist)."""
    configured = env.get("GIT_CONFIG_GLOBAL", "").strip()
    if configured:
        return [configured]
    home = env.get("HOME", "").strip()
    if not home:
        return []
    xdg = env.get("XDG_CONFIG_HOME", "").strip() or f"{home}/.config"
    return [f"{xdg}/git/config", f"{home}/.gitconfig"]


def git_config_text(directories: Sequence[Path], env: Mapping[str, str]) -> str:
    """A global git config: the user's own (included), plus trust in `directories`.

    git refuses to read a repository another user owns ("dubious ownership"), which a
    directory mounted into the builder container usually is; safe.directory is honoured
    only in global config, so this file is given to git as GIT_CONFIG_GLOBAL.
    """
    lines = ["# Written by build-image for one run, and removed after it.", "[include]"]
    lines += [f"\tpath = {_git_quote(path)}" for path in user_git_configs(env)]
    lines.append("[safe]")
    for directory in directories:
        lines.append(f"\tdirectory = {_git_quote(str(directory))}")
        lines.append(f"\tdirectory = {_git_quote(str(directory / '.git'))}")
    return "\n".join(lines) + "\n"


@contextmanager
def child_environment(targets: Sequence[Target], env: Mapping[str, str]) -> Iterator[dict]:
    """The environment for git and repo2docker: `env`, trusting the local repositories."""
    local = sorted({target.local for target in targets if target.local is not None})
    if not local:
        yield dict(env)
        return
    with tempfile.TemporaryDirectory(prefix="build-image-") as directory:
        config = Path(directory) / "gitconfig"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(git_config_text(local, env))
        yield {**env, "GIT_CONFIG_GLOBAL": str(config)}


# --- building -------------------------------------------------------------------------------


class RunnerFactory(Protocol):
    """Makes the runner of one build-image run (tests pass one that makes fakes)."""

    def __call__(
        self,
        settings: BuilderSettings,
        *,
        reuse_existing: bool,
        on_line: Callable[[str], None],
        base_env: Mapping[str, str],
    ) -> Runner: ...


def make_runner(
    settings: BuilderSettings,
    *,
    reuse_existing: bool,
    on_line: Callable[[str], None],
    base_env: Mapping[str, str],
) -> BuildRunner:
    """The service's runner: same engine, default repo2docker, labels and image names.

    `reuse_existing=False` (--force) builds even a commit that is already built; `on_line`
    gets every log line (the terminal echo).
    """
    return build_runner(
        settings,
        DockerImages(),
        base_env=base_env,
        reuse_existing=reuse_existing,
        on_line=on_line,
    )


def result_for(
    record: BuildRecord | None, fallback: BuildRecord, seconds: float, *, recorded: bool
) -> BuildResult:
    """The result of a finished build from its record (gone if someone deleted it)."""
    if record is None:
        record = fallback
        state, reason = BuildState.FAILED.value, "the build record was deleted while it ran"
    else:
        state, reason = record.state.value, record.reason
    return BuildResult(
        id=record.id if recorded else None,
        name=record.name,
        image=record.image,
        state=state,
        reused=record.reused,
        commit=record.resolved_commit,
        seconds=seconds,
        reason=reason,
    )


class Builder:
    """Builds targets one after the other through the environment operations, as the service."""

    def __init__(self, environments: Environments, *, recorded: bool = True) -> None:
        """Build through `environments` (its queue must be started by `build_all`)."""
        self.environments = environments
        self.recorded = recorded

    async def build_all(
        self, targets: Sequence[Target], report: Callable[[BuildResult], None]
    ) -> list[BuildResult]:
        """Build each target in turn; `report` gets each result as soon as it is known."""
        queue = self.environments.queue
        queue.start()
        results = []
        try:
            for target in targets:
                result = await self.build(target)
                report(result)
                results.append(result)
        except asyncio.CancelledError:
            # Ctrl-C or SIGTERM, wherever it lands: the running build ends CANCELLED.
            for build_id in [*queue.running(), *queue.queued()]:
                with suppress(EnvironmentRefusal):
                    await self.environments.cancel(build_id)  # kills repo2docker
            raise
        finally:
            await queue.stop()
        return results

    async def build(self, target: Target) -> BuildResult:
        """Record, queue and wait for one build; Ctrl-C cancels it (recorded CANCELLED)."""
        request = target.request
        image = image_name(request.name, request.ref or "latest")
        started = time.monotonic()
        try:
            record = await self.environments.add(request)
        except (ValueError, EnvironmentRefusal) as e:  # e.g. a token in the URL
            return BuildResult(None, request.name, image, "failed", False, None, 0.0, str(e))
        final = await self.environments.wait(record.id)
        return result_for(final, record, time.monotonic() - started, recorded=self.recorded)


# --- output ---------------------------------------------------------------------------------


def writer(stream: Callable[[], TextIO]) -> Callable[[str], None]:
    """Write text to the stream `stream()` returns now, flushed; a closed pipe is ignored."""

    def write(text: str) -> None:
        try:
            out = stream()
            out.write(text)
            out.flush()
        except (OSError, ValueError):
            pass  # the reader went away (e.g. `| head`); the build and its record go on

    return write


def tally(results: Sequence[BuildResult]) -> str:
    """The closing line after several images: how many were built, reused and failed."""
    built = sum(r.ok and not r.reused for r in results)
    reused = sum(r.ok and r.reused for r in results)
    failed = len(results) - built - reused
    return f"{len(results)} images: {built} built, {reused} reused, {failed} failed"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def stoppable(work: Coroutine[Any, Any, T]) -> T:
    """Await `work`; SIGINT (Ctrl-C) and SIGTERM (docker stop, kill) cancel it.

    Without this, SIGTERM would end the process at once, leaving the build recorded as
    running and repo2docker (in its own process group) running on. SIGINT gets its own
    handler too: a process started in the background by a shell inherits SIGINT ignored,
    and Python then never raises KeyboardInterrupt.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    try:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, task.cancel)
    except (NotImplementedError, RuntimeError, ValueError):
        return await work  # not the main thread, or no signals here: nothing to catch
    try:
        return await work
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def settled(work: Coroutine[Any, Any, T], runner: Runner) -> T:
    """Await `work`, then the housekeeping of the builds it ran (BuildRunner.settle)."""
    try:
        return await work
    finally:
        inner = getattr(runner, "inner", runner)
        if isinstance(inner, BuildRunner):
            await inner.settle()


def _fail_usage(error: Exception) -> int:
    print(f"{PROG}: {error}", file=sys.stderr)
    return EXIT_USAGE


# --- main -----------------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    runner_factory: RunnerFactory = make_runner,
    store: BuildStore | None = None,
    env: Mapping[str, str] | None = None,
    resolve: Resolver = socket.getaddrinfo,
) -> int:
    """Run `build-image` with `argv` (default: sys.argv[1:]); return the exit status.

    `runner_factory` and `store` replace the real BuildRunner and BuildStore (tests pass
    fakes; a passed store is not closed), `env` replaces os.environ, `resolve` the DNS lookup.
    """
    env = os.environ if env is None else env
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage message
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    try:
        settings = BuilderSettings.from_env(env)
        gateways = CachedGateways(DockerImages())
        rules = RequestRules.from_settings(settings, resolve, host_addresses=gateways)
        targets = collect_targets(args, rules, env)
        if args.fill_data:
            FillSettings.from_env(env)  # a bad setting stops here, before anything is built
    except (UsageError, SettingError) as e:
        return _fail_usage(e)
    say = writer(lambda: sys.stderr if args.json else sys.stdout)
    try:
        results = run_builds(
            args,
            settings,
            rules,
            targets,
            env=env,
            runner_factory=runner_factory,
            store=store,
            say=say,
        )
    except UsageError as e:
        return _fail_usage(e)
    except StoreError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_FAILED
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"{PROG}: interrupted; the running build was cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    if len(results) > 1:
        say(tally(results) + "\n")
    if args.json:
        writer(lambda: sys.stdout)(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def run_builds(
    args: argparse.Namespace,
    settings: BuilderSettings,
    rules: RequestRules,
    targets: Sequence[Target],
    *,
    env: Mapping[str, str],
    runner_factory: RunnerFactory,
    store: BuildStore | None,
    say: Callable[[str], None],
) -> list[BuildResult]:
    """Open the store, check the names, build every target; the log and summaries go to `say`.

    Raises UsageError (a name taken by another repository: nothing is built), StoreError,
    and KeyboardInterrupt / CancelledError when interrupted (the running build is cancelled).
    """
    if not targets and not args.prune:
        say(f"{PROG}: the gallery file lists no images; nothing to build\n")
    with ExitStack() as stack:
        if store is None:
            store = _open_own_store(args, env, settings, stack, say)
        base_env = stack.enter_context(child_environment(targets, env))
        runner = runner_factory(
            settings, reuse_existing=not args.force, on_line=say, base_env=base_env
        )
        if runner_factory is make_runner:  # the real runner: with the check and the fill
            runner = with_after_build(runner, args, env, say)
        stack.callback(_close_images, runner)
        images = DockerImages()  # connects only if asked (build-image never deletes)
        stack.callback(images.close)
        queue = BuildQueue(
            store, runner, concurrency=1, timeout_s=settings.timeout_s, on_event=lambda _: None
        )
        environments = Environments(
            store,
            queue,
            images,
            rules,
            keep_previous=settings.keep_previous,
            min_free_disk_gb=settings.min_free_disk_gb,
            stack=settings.stack,
        )
        if args.prune:
            return [prune_result(asyncio.run(environments.prune()), say)]
        check_names(targets, environments)
        builder = Builder(environments, recorded=not args.no_record)

        def report(result: BuildResult) -> None:
            say(result.summary() + "\n")

        return asyncio.run(stoppable(settled(builder.build_all(targets, report), runner)))


def with_after_build(
    runner: Runner, args: argparse.Namespace, env: Mapping[str, str], say: Callable[[str], None]
) -> AfterBuild:
    """The runner followed by the image check and, with --fill-data, the data fill."""
    if args.file is not None and args.file is not _USE_DEFAULT_FILE:
        gallery_file = Path(args.file)
    else:
        gallery_file = default_gallery_file(env)
    return AfterBuild(
        runner,
        images=DockerImages(),
        gallery_file=gallery_file,
        fill=FillSettings.from_env(env) if args.fill_data else None,
        fill_every_build=args.fill_data,
        on_line=say,
    )


def prune_result(result: Mapping[str, Any], say: Callable[[str], None]) -> BuildResult:
    """Report a prune (what went, what stays and why) as one successful result."""
    for image in result["removed"]:
        say(f"removed {image}\n")
    for kept in result["kept"]:
        users = ", ".join(kept["used_by"]) or "Docker refused"
        say(f"kept {kept['image']} (in use: {users})\n")
    freed = result["freed_bytes"] / 1e6
    summary = f"pruned {len(result['removed'])} image(s), about {freed:.0f} MB"
    say(summary + "\n")
    return BuildResult(None, "prune", "", BuildState.BUILT.value, False, None, 0.0, summary)


def _open_own_store(
    args: argparse.Namespace,
    env: Mapping[str, str],
    settings: BuilderSettings,
    stack: ExitStack,
    say: Callable[[str], None],
) -> BuildStore:
    """The store the options ask for, closed (and, with --no-record, deleted) by `stack`."""
    if args.no_record:
        # The queue needs a store: a throwaway one keeps the code path the same.
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="build-image-")))
        path = directory / STORE_FILE
    else:
        path = (args.state_dir or default_state_dir(env, settings)) / STORE_FILE
    store = open_store(path)
    stack.callback(store.close)
    if not args.no_record:
        say(f"{PROG}: recording builds in {path}\n")
    return store


def _close_images(runner: Runner) -> None:
    images = getattr(runner, "images", None)
    if isinstance(images, DockerImages):
        images.close()


if __name__ == "__main__":
    sys.exit(main())
