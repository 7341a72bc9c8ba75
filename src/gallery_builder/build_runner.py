"""Run one build: resolve the ref with git, then turn the commit into an image with repo2docker.

Before git runs, the repository URL is checked again and git is held to the addresses the
check saw (`fetch_guard`); the builder fetches the commit and its checked submodules, and
repo2docker builds that directory, its steps in the build's box (`build_box`: limits, a
sealed network, the egress proxy). A build is refused while Docker's data root has less
free space than configured.

repo2docker builds under a temporary tag ("<name>:gallery-build-<id>"); only a successful
build is tagged with the environment's real name, and the image it replaces keeps a
previous tag for roll back (`image_retention`). Whatever the outcome, the layers a build
made that nothing needs (a failed step's parents, a cancelled build's) are removed. The
temporary tag keeps a failed or cancelled build from ever replacing a working image, and
stops repo2docker from "reusing" an older image that happens to carry the same name. Git
access (credentials, askpass, scrubbing) is in `git_access`, ref lookup in `git_refs`,
checkouts in `git_fetch`, child processes in `processes`, and the repo2docker command
line in `repo2docker_command`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from docker.errors import DockerException, NotFound
from requests.exceptions import RequestException

from gallery_builder.build_box import Box, BoxError, BuildBoxes
from gallery_builder.build_request import BuildRequest, image_name
from gallery_builder.build_store import BuildState
from gallery_builder.docker_errors import describe_docker_error
from gallery_builder.docker_images import DockerImages, build_tag
from gallery_builder.fetch_guard import FetchGuard, Pins
from gallery_builder.git_access import (
    Scrubber,
    git_environment,
    inherited_environment,
    write_askpass,
)
from gallery_builder.git_fetch import checkout_commit
from gallery_builder.git_refs import ResolvedRef, resolve_ref
from gallery_builder.image_retention import Retention, previous_tag
from gallery_builder.processes import (
    DEFAULT_KILL_GRACE_S,
    ProcessError,
    read_chunks,
    spawn,
    terminate_process_group,
)
from gallery_builder.repo2docker_command import (
    DEFAULT_ENGINE,
    EngineOptions,
    ImageCheckOptions,
    repo2docker_command,
    write_repo2docker_config,
)
from gallery_builder.repository_policy import RepositoryRefused
from gallery_builder.warm_repo2docker import (
    WARM_ENTRY,
    SpareRepo2Docker,
    hand_over,
    start_waiting,
)
from gallery_common.image_compatibility import ImageFacts, facts_from_json
from gallery_common.image_labels import make_labels, strip_credentials

log = logging.getLogger(__name__)

DEFAULT_GIT_TIMEOUT_S = 60.0
_ERROR_LINE = re.compile(r"error|fatal|failed|exception", re.IGNORECASE)
# How the classic builder reports a step killed by SIGKILL (the kernel's OOM killer).
_KILLED_STEP = re.compile(r"returned a non-zero code: 137")


class BuildError(Exception):
    """A build cannot go on; the message is for the admin and never contains secrets."""


@dataclass(frozen=True)
class RunOutcome:
    """How a build ended. `image` is the name the runner chose (None if it never got that far)."""

    state: BuildState
    image: str | None = None
    reason: str | None = None
    resolved_commit: str | None = None
    image_size: int | None = None
    reused: bool = False
    # The image check, when it ran inside the build (InBuildCheck): its facts, or why not.
    facts: ImageFacts | None = None
    check_error: str | None = None


@dataclass(frozen=True)
class InBuildCheck:
    """The image check run by the engine before its last step (so the facts go on with the
    other labels): the gallery's paths for an image name, the check containers' names."""

    paths: Callable[[str], Sequence[str]]
    name_prefix: str = "gallery"
    uid: str = "1000"


# The last lines of repo2docker's output searched for the reason a build failed.
_RECENT_LINES = 50


def _default_repo2docker() -> str:
    # The repo2docker installed next to this interpreter (a venv) wins over PATH.
    return shutil.which("repo2docker", path=str(Path(sys.executable).parent)) or "repo2docker"


class _Emitter:
    """Scrubs and newline-terminates text (a line or a block of lines), then hands it to
    `emit` and `on_line`."""

    def __init__(
        self,
        emit: Callable[[str], None],
        scrub: Scrubber,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self._emit = emit
        self._on_line = on_line
        self.scrub = scrub

    def __call__(self, text: str) -> None:
        text = self.scrub(text)
        text = text if text.endswith("\n") else text + "\n"
        self._emit(text)
        if self._on_line is not None:
            self._on_line(text)


class BuildRunner:
    """Builds one BuildRequest at a time per `run` call; many runs may overlap."""

    def __init__(
        self,
        *,
        images: DockerImages | None = None,
        repo2docker: str | None = None,
        engine: str = DEFAULT_ENGINE,
        git_timeout_s: float = DEFAULT_GIT_TIMEOUT_S,
        kill_grace_s: float = DEFAULT_KILL_GRACE_S,
        builder_version: str | None = None,
        work_root: Path | str | None = None,
        base_env: Mapping[str, str] | None = None,
        reuse_existing: bool = True,
        on_line: Callable[[str], None] | None = None,
        guard: FetchGuard | None = None,
        boxes: BuildBoxes | None = None,
        keep_previous: int = 1,
        min_free_disk_gb: float = 0,
        trim_slow_imports: bool = False,
        stack: str = "",
        warm_start: bool = False,
        spare_repo2docker: bool = False,
    ) -> None:
        """Configure the runner.

        `repo2docker` is the program to run (default: the one next to this interpreter, else
        PATH); `work_root` holds each build's private temporary directory (default: TMPDIR);
        `base_env` replaces os.environ as the child processes' starting environment.
        With `reuse_existing` (the default) an image already built from the resolved commit
        with the same limits is kept instead of built again; False always builds.
        `on_line` gets every log line too (scrubbed), e.g. to echo it on a terminal.
        `guard` checks the repository (and submodules) again at fetch time; `boxes` give
        each build its limits and sealed network (None: no limits, Docker's default
        network); `keep_previous` previous images stay per environment; builds are refused
        below `min_free_disk_gb` free (0: no check); `trim_slow_imports` removes
        rfc3987_syntax from the image; `stack` labels the images with the compose project.
        With `warm_start` (only for the default `repo2docker`, the one of this interpreter)
        repo2docker is started, and imports itself, while git fetches; with
        `spare_repo2docker` as well, one is started ahead of the next build instead
        (`warm_repo2docker.SpareRepo2Docker`), each after the build before.
        """
        self.images = images or DockerImages()
        self.repo2docker = repo2docker or _default_repo2docker()
        self.engine = engine
        self.git_timeout_s = git_timeout_s
        self.kill_grace_s = kill_grace_s
        self.builder_version = builder_version
        self.work_root = Path(work_root) if work_root is not None else None
        self.base_env = base_env
        self.reuse_existing = reuse_existing
        self.on_line = on_line
        self.guard = guard or FetchGuard()
        self.boxes = boxes
        self.retention = Retention(self.images, keep_previous)
        self.min_free_disk_gb = min_free_disk_gb
        self.trim_slow_imports = trim_slow_imports
        self.stack = stack
        self.warm_entry: tuple[str, ...] | None = (
            WARM_ENTRY if warm_start and repo2docker is None else None
        )
        self.spare_repo2docker: SpareRepo2Docker | None = (
            SpareRepo2Docker(self.warm_entry, inherited_environment(base_env), self.work_root)
            if self.warm_entry is not None and spare_repo2docker
            else None
        )
        self._housekeeping: set[asyncio.Future[None]] = set()
        # Set by AfterBuild: the engine then checks the image before its last step.
        self.in_build_check: InBuildCheck | None = None

    async def run(
        self, build_id: str, request: BuildRequest, emit: Callable[[str], None]
    ) -> RunOutcome:
        """Build `request`, emitting log lines (scrubbed, each ending in a newline).

        Returns BUILT (possibly `reused`) or FAILED with a reason; does not raise for
        build problems. Cancelling the coroutine (e.g. a caller's timeout) kills
        repo2docker's whole process group and removes the temporary files; the image
        name is applied only on success, so nothing half-built is left tagged.
        """
        say = _Emitter(emit, Scrubber.for_credentials(request.credentials), self.on_line)
        ref_text = request.ref or "the default branch"
        say(
            f"Building {request.name} from {strip_credentials(request.repository)} "
            f"at {ref_text} (build {build_id})"
        )
        workdir = Path(tempfile.mkdtemp(prefix="gallery-build-", dir=self.work_root))
        state = _BuildState(build_id=build_id, request=request, workdir=workdir, say=say)
        try:
            return await self._build(state)
        except (BuildError, ProcessError) as e:
            return state.failed(str(e))
        except (DockerException, RequestException) as e:
            return state.failed(f"Docker: {describe_docker_error(e)}")
        finally:
            await self._cleanup(state)

    async def _build(self, state: _BuildState) -> RunOutcome:
        request, say = state.request, state.say
        await self._check_free_disk()
        try:
            # Checked again (the build may have waited): these addresses are git's.
            state.pins = await asyncio.to_thread(
                Pins.for_repository, state.workdir, request.repository, self.guard
            )
        except RepositoryRefused as e:
            raise BuildError(f"repository: {e}") from None
        resolved = await resolve_ref(
            state.workdir,
            request.repository,
            request.ref,
            request.credentials,
            timeout=self.git_timeout_s,
            askpass=state.askpass,
            scrub=say.scrub,
            base_env=self.base_env,
            pins=state.pins,
        )
        state.commit = resolved.commit
        state.image = image_name(request.name, request.ref or resolved.ref_name or "latest")
        asked = request.ref or f"the default branch ({resolved.ref_name or 'HEAD'})"
        state.phase(f"{asked} is commit {resolved.commit}")
        if self.reuse_existing and await self._reusable(state.image, request, resolved.commit):
            size = await asyncio.to_thread(self.images.size, state.image)
            state.phase(
                f"commit {resolved.commit[:7]} is already built as {state.image}; reusing it"
            )
            return state.outcome(BuildState.BUILT, image_size=size, reused=True)
        # The environment's current image seeds Docker's layer cache: a commit that changes
        # only notebooks re-runs only the steps after the content is copied in.
        if self.warm_entry is not None:
            await self._start_warm(state)
        previous = await asyncio.to_thread(self.images.image_id, state.image)
        if previous is not None:
            state.phase(f"Using the current image of {state.image} as the layer cache")
        status, last_error = await self._repo2docker(state, resolved, previous)
        if status != 0:
            return state.failed(self._failure_reason(status, last_error))
        state.phase("repo2docker finished; publishing the image")
        size, notes = await asyncio.to_thread(
            self._publish, state.temp_image, state.image, resolved.commit
        )
        state.published = True
        for note in notes:
            say(note)
        state.phase(f"Built {state.image} ({_human_size(size)})")
        facts, check_error = state.check_result()
        return state.outcome(
            BuildState.BUILT, image_size=size, facts=facts, check_error=check_error
        )

    async def _check_free_disk(self) -> None:
        """BuildError when Docker's data root has less free space than configured."""
        if self.min_free_disk_gb <= 0:
            return
        usage = await asyncio.to_thread(self.images.data_root_usage)
        if usage.free < self.min_free_disk_gb * 1024**3:
            raise BuildError(
                f"only {usage.free / 1024**3:.1f} GB free on Docker's data root, below "
                f"GALLERY_MIN_FREE_DISK_GB ({self.min_free_disk_gb:g} GB): delete "
                "environments or prune unused images first"
            )

    def _failure_reason(self, status: int, last_error: str) -> str:
        """Why repo2docker failed, in the admin's terms (out of memory when a step was killed)."""
        if _KILLED_STEP.search(last_error) and self.boxes is not None:
            limit = self.boxes.settings.memory_gb
            return (
                "a build step ran out of memory and was killed (exit code 137): builds may "
                f"use at most {limit:g} GB (GALLERY_BUILD_MEMORY_GB)"
            )
        detail = f": {last_error}" if last_error else ""
        return f"repo2docker exited with status {status}{detail}"

    async def _reusable(self, image: str, request: BuildRequest, commit: str) -> bool:
        """True when `image` exists, built from this commit with the same limits."""
        labels = await asyncio.to_thread(self.images.labels, image)
        return (
            labels is not None
            and labels.commit == commit
            and labels.repository == strip_credentials(request.repository)
            and labels.memory_limit_gb == request.memory_gb
            and labels.cpu_limit == request.cpu
        )

    async def _repo2docker(
        self, state: _BuildState, resolved: ResolvedRef, cache_image: str | None
    ) -> tuple[int, str]:
        """Run repo2docker into the temporary tag; (exit status, last error-looking line).

        `cache_image` (an image id) is Docker's cache source for the build.
        """
        request = state.request
        labels = make_labels(
            repository=request.repository,
            ref=request.ref or resolved.ref_name or "HEAD",
            commit=resolved.commit,
            display_name=request.name,
            memory_limit_gb=request.memory_gb,
            cpu_limit=request.cpu,
            builder_version=self.builder_version,
            stack=self.stack,
        )
        # One commit (shallow where the server allows), fetched here with its checked
        # submodules: repo2docker then builds the directory and clones nothing itself.
        state.phase(f"Fetching commit {resolved.commit[:7]}")
        assert state.pins is not None
        # The box (a sandbox container loading its firewall) is made while git fetches.
        opening = (
            asyncio.ensure_future(asyncio.to_thread(self.boxes.open, state.build_id))
            if self.boxes is not None
            else None
        )
        if opening is not None:
            opening.add_done_callback(functools.partial(_say_box_ready, state))
        try:
            checkout = await checkout_commit(
                state.workdir / "checkout",
                request.repository,
                resolved.commit,
                request.credentials,
                askpass=state.askpass,
                pins=state.pins,
                guard=self.guard,
                base_env=self.base_env,
                note=state.say,
                scrub=state.say.scrub,
            )
            state.phase(f"Fetched commit {resolved.commit[:7]}")
        except ProcessError as e:
            raise BuildError(str(e)) from None
        finally:
            # Whatever git did: the box is the build's, so its cleanup removes it.
            box_error = await self._opened_box(opening, state)
        source = str(checkout)
        if box_error is not None:
            raise BuildError(str(box_error))
        box = state.box
        check = None
        if self.in_build_check is not None:
            state.check_container = f"{self.in_build_check.name_prefix}-check-{state.build_id[:12]}"
            check = ImageCheckOptions(
                paths=list(self.in_build_check.paths(state.image or "")),
                container_name=state.check_container,
                facts_file=str(state.facts_file),
                uid=self.in_build_check.uid,
            )
        api_version = await asyncio.to_thread(self.images.api_version)
        config = write_repo2docker_config(
            state.workdir / "repo2docker_config.py",
            labels,
            cache_from=[cache_image] if cache_image else [],
            engine=EngineOptions(
                network_mode=box.network_mode if box else "",
                limits=box.limits if box else {},
                build_args=box.build_args if box else {},
                layers_file=str(state.layers_file),
                trim_slow_imports=self.trim_slow_imports,
                check=check,
                api_version=api_version,
            ),
        )
        state.temp_image = build_tag(state.image or "", state.build_id)
        argv = repo2docker_command(
            repository=source,
            commit=resolved.commit,
            image=state.temp_image,
            config_path=str(config),
            engine=self.engine,
            executable=self.repo2docker,
        )
        env = git_environment(request.repository, request.credentials, state.askpass, self.base_env)
        tmp = state.workdir / "tmp"
        tmp.mkdir(mode=0o700)
        # repo2docker's checkout and temp files then go away with the work directory
        env.update(TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
        state.phase(f"Running repo2docker for commit {resolved.commit[:7]}")
        return await self._stream(argv, env, state)

    async def _opened_box(
        self, opening: asyncio.Future[Box] | None, state: _BuildState
    ) -> BoxError | None:
        """Wait for the box being opened and give it to `state`; the BoxError, if any.

        Cancelled while it is still being made, the box is removed once it is there.
        """
        if opening is None:
            return None
        try:
            state.box = await asyncio.shield(opening)
        except BoxError as e:
            return e
        except asyncio.CancelledError:
            opening.add_done_callback(self._close_late_box)
            raise
        return None

    def _close_late_box(self, opening: asyncio.Future[Box]) -> None:
        if self.boxes is None or opening.cancelled() or opening.exception() is not None:
            return
        asyncio.get_running_loop().run_in_executor(None, self.boxes.close, opening.result())

    async def _start_warm(self, state: _BuildState) -> None:
        """Take the spare repo2docker, or start its interpreter now; `_stream` hands it the
        build later."""
        assert self.warm_entry is not None
        if self.spare_repo2docker is not None:
            state.process = await self.spare_repo2docker.take()
            if state.process is not None:
                state.phase("repo2docker was started ahead of this build")
                return
        env = inherited_environment(self.base_env)
        state.process = await start_waiting(self.warm_entry, env, state.workdir)

    async def _stream(
        self, argv: list[str], env: dict[str, str], state: _BuildState
    ) -> tuple[int, str]:
        process = state.process
        if process is not None and process.stdin is not None:  # started ahead: hand it over
            await hand_over(process, argv, env, state.workdir)
        else:
            process = await spawn(
                argv, env=env, cwd=state.workdir, stderr=asyncio.subprocess.STDOUT
            )
            state.process = process
        state.running = True
        recent: deque[str] = deque(maxlen=_RECENT_LINES)
        assert process.stdout is not None
        scrub = state.say.scrub
        async for block in read_chunks(process.stdout, scrub, longest_secret=scrub.longest):
            state.say(block)
            recent.extend(line.strip() for line in block.splitlines()[-_RECENT_LINES:])
        status = await process.wait()
        # A step killed for memory is the reason, whatever repo2docker printed after it.
        errors = [line for line in recent if line and _KILLED_STEP.search(line)]
        errors = errors or [line for line in recent if line and _ERROR_LINE.search(line)]
        return status, (errors[-1][:300] if errors else "")

    def _publish(self, temp_image: str, image: str, commit: str) -> tuple[int | None, list[str]]:
        """Give the finished build its real name; (size, log notes). Runs in a thread.

        The image it replaces keeps a previous tag (roll back). Previous images beyond the
        kept ones go after the outcome (`_sweep`: listing the images takes ~0.1 s).
        """
        labels = self.images.labels(temp_image)
        if labels is None or labels.commit != commit:
            raise BuildError(f"repo2docker succeeded but {temp_image} is missing or unlabelled")
        notes: list[str] = []
        previous = self.images.image_id(image)
        self.images.tag(temp_image, image)
        self.images.remove(temp_image)
        if previous is not None and previous != self.images.image_id(image):
            kept = previous_tag(image, previous)
            self.images.tag(previous, kept)
            if self.retention.keep > 0:
                notes.append(f"The image it replaces stays as {kept}, to roll back to")
        return self.images.size(image), notes

    async def _cleanup(self, state: _BuildState) -> None:
        """Kill what is still running, drop an unpublished temporary tag, delete temp files.

        After a published build, removing its box, stray layers, older previous images and
        the work directory is housekeeping that need not hold up the outcome: it goes on in a
        thread (`settle` waits for it); so does making the next build's box (a spare, when
        the boxes keep one).
        """
        deferred = False
        try:
            if state.process is not None and state.process.returncode is None:
                # kill first: emitting may be what failed, and repo2docker must not outlive us
                await terminate_process_group(state.process, self.kill_grace_s)
                if state.running:
                    with contextlib.suppress(Exception):
                        state.say("Stopped repo2docker")
            jobs: list[Callable[[], None]] = []
            if state.box is not None and self.boxes is not None:
                jobs.append(functools.partial(self.boxes.close, state.box))
            process = state.process
            if state.check_container and state.running and process and process.returncode:
                # repo2docker was stopped, perhaps while its image check ran
                jobs.append(functools.partial(self._remove_container, state.check_container))
            if state.temp_image is not None and not state.published:
                # after a failed publish it takes its layers along
                jobs.append(functools.partial(self._remove_quietly, state.temp_image))
            jobs.append(functools.partial(self._remove_layers, state.layer_ids()))
            if state.published and state.image is not None:
                jobs.append(functools.partial(self._sweep, state.image))
            if state.published:
                # Removing the checkout's files took 30-60 ms of the outcome's wait.
                jobs.append(functools.partial(shutil.rmtree, state.workdir, ignore_errors=True))
                self._later(jobs)
                deferred = True
            else:
                for job in jobs:
                    await asyncio.to_thread(job)
            if state.box is not None:
                self.make_spare_box()  # for the next build, once this one is done
            if state.process is not None:
                self.make_spare_repo2docker()
        finally:
            if not deferred:
                shutil.rmtree(state.workdir, ignore_errors=True)

    def make_spare_box(self) -> None:
        """Make a box ahead of the next build, in the background (if the boxes keep one)."""
        if self.boxes is not None:
            self._later([self.boxes.make_spare])

    def make_spare_repo2docker(self) -> None:
        """Start a repo2docker ahead of the next build, in the background (with
        `spare_repo2docker`)."""
        if self.spare_repo2docker is not None:
            task = asyncio.ensure_future(self.spare_repo2docker.make())
            self._housekeeping.add(task)
            task.add_done_callback(self._housekeeping.discard)

    async def end_spares(self) -> None:
        """End the repo2docker and remove the box kept for the next build (the builder stops)."""
        if self.spare_repo2docker is not None:
            await self.spare_repo2docker.end()
        if self.boxes is not None:
            await asyncio.to_thread(self.boxes.remove_spare)

    def _later(self, jobs: list[Callable[[], None]]) -> None:
        def run_all() -> None:
            for job in jobs:
                job()

        # In the executor at once: even a loop that stops next waits for it (asyncio.run).
        future = asyncio.get_running_loop().run_in_executor(None, run_all)
        self._housekeeping.add(future)
        future.add_done_callback(self._housekeeping.discard)

    async def settle(self) -> None:
        """Wait for the housekeeping of finished builds (boxes, stray layers) to end."""
        while self._housekeeping:
            await asyncio.gather(*self._housekeeping, return_exceptions=True)

    def _sweep(self, image: str) -> None:
        """Remove the previous images of `image` beyond the kept ones, unless a container
        uses them (the environments' periodic sweep removes those later)."""
        try:
            notes = self.retention.sweep([image])
        except Exception as e:  # cleanup must not turn a result into a crash
            log.warning("could not sweep the previous images of %s: %s", image, e)
            return
        for note in notes:
            log.info("%s", note)

    def _remove_layers(self, layers: list[str]) -> None:
        """Remove the untagged layers of this build that nothing needs (any outcome)."""
        if not layers:
            return
        try:
            removed = self.images.remove_layers(layers)
        except Exception as e:  # cleanup must not turn a result into a crash
            log.warning("could not remove a build's layers: %s", describe_docker_error(e))
            return
        if removed:
            log.info("removed %d unused layer(s) of a build", len(removed))

    def _remove_container(self, name: str) -> None:
        try:
            self.images.api.remove_container(name, force=True)
        except NotFound:
            pass
        except Exception as e:  # cleanup must not turn a result into a crash
            log.warning("could not remove container %s: %s", name, describe_docker_error(e))

    def _remove_quietly(self, image: str) -> None:
        try:
            self.images.remove(image, prune=True)
        except Exception as e:  # cleanup must not turn a result into a crash
            log.warning("could not remove temporary image %s: %s", image, describe_docker_error(e))


def _say_box_ready(state: _BuildState, opening: asyncio.Future[Box]) -> None:
    """Log, when it happens, that the build's box is there (sealed, or limits only)."""
    if opening.cancelled() or opening.exception() is not None:
        return
    box = opening.result()
    if box.network_mode:
        state.phase(
            f"Build steps run in a sealed network (box {box.name}): out only through the proxy"
        )


def _human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"{size / 1e6:.1f} MB"


@dataclass
class _BuildState:
    """What one `run` has learned and started so far, for its outcome and cleanup."""

    build_id: str
    request: BuildRequest
    workdir: Path
    say: _Emitter
    commit: str | None = None
    image: str | None = None
    temp_image: str | None = None
    process: asyncio.subprocess.Process | None = None
    running: bool = False  # repo2docker has its build (a warm start: it was only waiting)
    published: bool = False  # the image has its real name
    pins: Pins | None = None
    box: Box | None = None
    check_container: str | None = None
    _askpass: Path | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def layers_file(self) -> Path:
        """Where the engine writes the id of every image this build makes."""
        return self.workdir / "layers"

    @property
    def facts_file(self) -> Path:
        """Where the engine writes what its image check found."""
        return self.workdir / "image-check.json"

    def check_result(self) -> tuple[ImageFacts | None, str | None]:
        """(facts, None) or (None, why the check could not run) from the engine's image check;
        (None, None) when it did not run."""
        if self.check_container is None:
            return None, None
        try:
            result = json.loads(self.facts_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None, None
        if not isinstance(result, dict):
            return None, None
        facts = facts_from_json(result.get("data"))
        if facts is not None:
            return facts, None
        error = result.get("error")
        return None, self.say.scrub(str(error)) if error else None

    def layer_ids(self) -> list[str]:
        """The image ids the engine reported, in order (empty before it ran)."""
        try:
            return self.layers_file.read_text(encoding="ascii").split()
        except (OSError, UnicodeDecodeError):
            return []

    def phase(self, text: str) -> None:
        """Log a step of the build with the seconds since it started, e.g. "[  2.31 s] ..."."""
        self.say(f"[{time.monotonic() - self.started:7.2f} s] {text}")

    @property
    def askpass(self) -> Path:
        """The askpass program in this build's private directory (written on first use)."""
        if self._askpass is None:
            self._askpass = write_askpass(self.workdir)
        return self._askpass

    def outcome(self, state: BuildState, **fields: object) -> RunOutcome:
        """A RunOutcome carrying what is known so far."""
        return RunOutcome(
            state=state,
            image=self.image,
            resolved_commit=self.commit,
            **fields,  # type: ignore[arg-type]
        )

    def failed(self, reason: str) -> RunOutcome:
        """Log `reason` and return a FAILED outcome with it (scrubbed)."""
        reason = self.say.scrub(reason)
        self.say(f"Build failed: {reason}")
        return self.outcome(BuildState.FAILED, reason=reason)
