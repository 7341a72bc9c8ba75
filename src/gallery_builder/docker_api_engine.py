"""A repo2docker container engine that builds through the Docker Engine API.

repo2docker 2025.08 and later build with `docker buildx build`, which this deployment does not
have. This engine builds with docker-py's low-level `APIClient.build` instead (the classic
builder, API 1.41 is enough) and streams the daemon's JSON progress back to repo2docker as
dicts (`string_output = False`), the form `Repo2Docker.build` handles for Docker output.

Register it under the `repo2docker.engines` entry-point group and select it with
`repo2docker --engine gallery-docker-api`. Labels the gallery needs on every image go in the
`DockerAPIEngine.extra_labels` trait (e.g. `c.DockerAPIEngine.extra_labels = {...}` in the
file given to `repo2docker --config`); they override same-named labels from anywhere else.

Labels go on in one step, and only the builder's: the repository's own labels under the
gallery's prefix (say, a Dockerfile's `LABEL org.neurolang-gallery.memory-limit-gb=512`)
are overwritten, or blanked when the builder sets no value. With `check_image`, the image
check (`image_probe`) runs on the repository's build first, and its facts are one more label
of that step. With `trim_slow_imports`, the same final build also removes `rfc3987_syntax`
(about 1.7 s of every Jupyter server start; jsonschema's format checks do without it) from
where the check found it (as the image's USER when that user can, else as root, restoring
the USER; without the check's word, a search of the whole file system as root), and adds
no step at all when it is not there.

Builds run in the box the builder gives them: `build_network_mode` (a sealed container's
network), `build_limits` (memory, CPU) on every step, `build_args_extra` (the egress
proxy). Every image id the daemon reports goes to `layers_file`, so the builder can remove
what a failed or cancelled build left untagged.

Labels go on in one step. The classic builder turns the build's `labels` argument into one
LABEL instruction per label, each a container and a commit of its own (thirteen of them for
a gallery image), so the engine builds the repository without them, exactly as a plain
`docker build` would (and as cacheable), then adds every label in one step on top of that
image: a commit of the image with the labels (`label_commit`, what the builder's LABEL
step does, without a second build request), or, when that cannot keep the image's
configuration or there is something to trim, a build of a single LABEL instruction.
Beside the image check run the things that need not wait for it: making the commit's
container (`label_commit.CommitAhead`) and, once the check has run, removing its container.
When the build has a cache source (the image it replaces) with the check's facts for the
same paths, the whole commit is made during the check, with those facts as of this check
(`label_commit.CommitGuess`): a rebuild's facts rarely change, and the commit is kept only
when the labels are exactly the ones the check then gives (else removed, and the commit
made as before). All of it is done before the engine's build returns.
After the build it says which steps came from the layer cache and how long each took.
"""

from __future__ import annotations

import functools
import io
import json
import re
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import docker
import docker.constants
import docker.utils
from docker.errors import DockerException, NotFound
from repo2docker.docker import DockerEngine
from repo2docker.engine import BuildError, ContainerEngineException, Image
from requests.exceptions import RequestException
from traitlets import Bool, Dict, List, Unicode
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from gallery_builder.docker_errors import describe_docker_error
from gallery_builder.image_probe import (
    CheckError,
    check_stamp,
    expected_facts,
    remove_check_container,
    run_check,
    slow_import_of,
)
from gallery_builder.label_commit import CommitAhead, CommitGuess, commit_fits, commit_labels
from gallery_common.image_compatibility import COMPATIBILITY_LABEL, facts_from_json
from gallery_common.image_labels import LABEL_PREFIX, strip_credentials

ENTRY_POINT_NAME = "gallery-docker-api"

# The Engine API's /build takes a CPU cap (cpuperiod, cpuquota) that docker-py's list of
# accepted container_limits keys predates; docker-py passes the keys through unchanged.
for _key in ("cpuperiod", "cpuquota"):
    if _key not in docker.constants.CONTAINER_LIMITS_KEYS:
        docker.constants.CONTAINER_LIMITS_KEYS.append(_key)

SLOW_IMPORT_PACKAGE = "rfc3987_syntax"
# Its package and metadata folders in any site-packages; printed, then removed.
TRIM_COMMAND = (
    "find / -xdev -type d \\( -name rfc3987_syntax -o -name 'rfc3987_syntax-*.dist-info' \\) "
    "-path '*-packages/*' -prune -print -exec rm -rf {} +"
)
_SAFE_USER = re.compile(r"[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)?")
_ROOT_USERS = frozenset({"", "root", "0", "0:0", "root:root"})
_LAYER_LINE = re.compile(r"^ ---> ([0-9a-f]{12,64})$", re.MULTILINE)

# Other APIClient.build options that may arrive through Repo2Docker.extra_build_kwargs.
PASSTHROUGH_BUILD_KWARGS = frozenset(
    {
        "nocache",
        "pull",
        "shmsize",
        "target",
        "network_mode",
        "extra_hosts",
        "isolation",
        "squash",
        "timeout",
        "use_config_proxy",
    }
)

# scheme://user[:secret]@host...: labels end up in the image's history for anyone to read.
_URL_WITH_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")

# Failures of the daemon or of the connection to it, while starting or streaming a request.
_TRANSPORT_ERRORS = (DockerException, RequestException, Urllib3HTTPError, OSError)


class DockerAPIEngine(DockerEngine):
    """repo2docker engine: builds with the Docker Engine API, no `docker` CLI or buildx needed.

    Connects to Docker lazily (on the first build or inspect), from the environment
    (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) plus `extra_init_args`, negotiating
    the API version with the daemon unless `extra_init_args` sets one. Running containers
    is inherited from repo2docker's DockerEngine, which also uses docker-py.
    """

    # Build progress is Docker's JSON stream decoded to dicts, not plain strings.
    string_output = False

    extra_labels = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="""
        Labels added to every image this engine builds, on top of the labels repo2docker
        passes. On a clash these win, so the gallery's own labels cannot be overridden.
        """,
        config=True,
    )

    build_network_mode = Unicode(
        "",
        help="network_mode of every build step, e.g. 'container:<id>' of a sealed container.",
        config=True,
    )
    build_limits = Dict(
        help="container_limits of every build step (memory, memswap, cpuperiod, cpuquota); "
        "they win over repo2docker's.",
        config=True,
    )
    build_args_extra = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="More build args, e.g. HTTP_PROXY (Docker keeps the proxy ones out of the image).",
        config=True,
    )
    layers_file = Unicode(
        "",
        help="A file that gets the id of every image the builds create, one a line.",
        config=True,
    )
    trim_slow_imports = Bool(
        False,
        help="Remove rfc3987_syntax (a slow import jsonschema does without) in the last step.",
        config=True,
    )
    check_image = Bool(
        False,
        help="Run the image check (gallery_builder.image_check) on the repository's build, "
        "before the last step, which then adds its facts as a label.",
        config=True,
    )
    check_paths = List(
        Unicode(), help="The gallery's notebook paths the check looks for.", config=True
    )
    check_uid = Unicode("1000", help="The uid the check runs as (the user servers').", config=True)
    check_container_name = Unicode("", help="The name of the check's container.", config=True)
    facts_file = Unicode(
        "",
        help="A file that gets what the check found, as JSON: {'data': ...} or {'error': ...}.",
        config=True,
    )

    def __init__(self, *, parent: Any = None, api_client: Any = None) -> None:
        """Create the engine; `api_client` replaces the lazily created docker.APIClient."""
        super().__init__(parent=parent)
        self._api_client = api_client

    @property
    def api_client(self) -> docker.APIClient:
        """The docker-py APIClient, created (and the daemon first contacted) on first use."""
        if self._api_client is None:
            kwargs: dict[str, Any] = {"version": "auto"}
            kwargs.update(docker.utils.kwargs_from_env())
            kwargs.update(self.extra_init_args)
            self._api_client = docker.APIClient(**kwargs)
        return self._api_client

    def close(self) -> None:
        """Close the connection to Docker, if one was opened."""
        if self._api_client is not None and hasattr(self._api_client, "close"):
            self._api_client.close()
        self._api_client = None

    def build(
        self,
        *,
        push: bool = False,
        load: bool = False,
        buildargs: Mapping[str, str] | None = None,
        cache_from: list[str] | None = None,
        container_limits: Mapping[str, Any] | None = None,
        tag: str = "",
        custom_context: bool = False,
        dockerfile: str = "",
        fileobj: Any = None,
        path: str = "",
        labels: Mapping[str, Any] | None = None,
        platform: str | None = None,
        **kwargs: Any,
    ) -> Iterator[dict[str, Any]]:
        """Build an image into the local Docker image store, yielding Docker progress dicts.

        Each yielded dict is one decoded line of the daemon's build stream ("stream",
        "status", "aux", "error"...). A failure is yielded as an `{"error": ...}` dict,
        which `Repo2Docker.build` logs and turns into BuildError; a caller that keeps
        iterating after it gets BuildError raised from here. `load` is implied (the image
        always lands in the local store); `push` is not supported and raises ValueError.
        Intermediate containers are always removed, also when the build fails.
        """
        request = self._build_request(
            push=push,
            buildargs=buildargs,
            cache_from=cache_from,
            container_limits=container_limits,
            tag=tag,
            custom_context=custom_context,
            dockerfile=dockerfile,
            fileobj=fileobj,
            path=path,
            labels=labels,
            platform=platform,
            extra=kwargs,
        )
        labels = request.pop("labels")
        target = request.pop("tag")
        self.log.debug(
            "Building %s via the Docker Engine API with labels %s", target, sorted(labels)
        )
        steps = StepLog()
        # 1. The repository's own build: no labels, untagged, like a plain `docker build`.
        image_id = yield from self._run_build(request, steps)
        if image_id is None:
            raise BuildError("Docker did not say which image it built")
        # What runs beside the check and the last step (making the commit's container,
        # removing the check's); every call of it is done before the build returns.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="engine-beside") as beside:
            # 2. The image check looks inside it: its facts become one more label, and it
            #    says whether (and where) there is anything to trim.
            base = self._config_of(image_id)
            user = str(base.get("User") or "")
            data = None
            ahead = None
            guess = None
            try:
                if self.check_image:
                    checked_at = datetime.now(UTC)
                    if commit_fits(base):
                        guess = self._guess_commit(
                            beside.submit, image_id, base, labels, request["cache_from"], checked_at
                        )
                        if guess is None:
                            keys = all_labels(base, {**labels, COMPATIBILITY_LABEL: ""})
                            ahead = CommitAhead.start(
                                beside.submit, self.api_client, image_id, keys
                            )
                    yield {
                        "stream": "Checking the image (its Python packages, the gallery's paths)\n"
                    }
                    data = self._check(image_id, user, remove=beside.submit, checked_at=checked_at)
                    if data is not None:
                        facts = facts_from_json(data)
                        assert facts is not None  # run_check made sure
                        labels = {**labels, COMPATIBILITY_LABEL: facts.to_label()}
                # 3. Every label in one step on top of it (a commit, or one LABEL), under the tag.
                labels = all_labels(base, labels)
                if labels or self.trim_slow_imports:
                    image_id = yield from self._finish(
                        image_id, labels, target, base, data, request, steps, ahead, guess
                    )
                elif target:
                    self._tag(image_id, target)
            finally:
                if ahead is not None:  # not taken (a LABEL build step instead): it goes
                    ahead.discard(self.api_client)
                if guess is not None:  # not taken: it goes
                    guess.discard(self.api_client)
        for line in steps.summary():
            yield {"stream": line + "\n"}

    def _guess_commit(
        self,
        submit: Callable[..., Any],
        image_id: str,
        base: Mapping[str, Any],
        labels: Mapping[str, str],
        cache_from: list[str],
        checked_at: datetime,
    ) -> CommitGuess | None:
        """The labels' commit started with the facts of the image this build replaces (its
        cache source) as of `checked_at`; None when there is nothing to go by."""
        if not cache_from:
            return None
        previous = self._config_of(cache_from[0]).get("Labels")
        expected = expected_facts(previous, self.check_paths, check_stamp(checked_at))
        if expected is None:
            return None
        guessed = all_labels(base, {**labels, COMPATIBILITY_LABEL: expected})
        return CommitGuess.start(
            submit,
            self.api_client,
            image_id,
            base,
            guessed,
            made=lambda image: self._record_layers({"aux": {"ID": image}}),
        )

    def _tag(self, image_id: str, target: str) -> None:
        repository, _, tag = target.rpartition(":") if ":" in target else (target, "", "")
        self.api_client.tag(image_id, repository, tag or "latest")

    def _check(
        self,
        image_id: str,
        user: str,
        remove: Callable[..., object] | None = None,
        checked_at: datetime | None = None,
    ) -> dict | None:
        """Run the image check on `image_id`; its data (also into `facts_file`), None if it
        could not run (the reason goes into `facts_file`). `remove(function, api, id)`
        removes its container (default: at once); `checked_at`: the time its facts record."""
        started = time.monotonic()
        try:
            data = run_check(
                self.api_client,
                image_id,
                self.check_paths,
                name=self.check_container_name or f"gallery-check-{image_id[-12:]}",
                uid=self.check_uid,
                user=user,
                remove=(
                    functools.partial(remove, remove_check_container, self.api_client)
                    if remove is not None
                    else None
                ),
                checked_at=checked_at,
            )
            result: dict[str, Any] = {"data": data}
        except CheckError as e:
            data, result = None, {"error": str(e)}
        except _TRANSPORT_ERRORS as e:
            data, result = None, {"error": describe_docker_error(e)}
        result["seconds"] = round(time.monotonic() - started, 3)
        if self.facts_file:
            with open(self.facts_file, "w", encoding="utf-8") as handle:
                json.dump(result, handle)
        return data

    def _finish(
        self,
        image_id: str,
        labels: dict[str, str],
        target: str | None,
        base: Mapping[str, Any],
        data: dict | None,
        request: Mapping[str, Any],
        steps: StepLog,
        ahead: CommitAhead | None = None,
        guess: CommitGuess | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The last step: labels (and the trim), falling back to labels alone if it fails.

        `ahead`: the commit's container, made while the check ran (taken if it fits);
        `guess`: the commit made while the check ran (taken if its labels are these)."""
        limits = request["container_limits"]
        user = str(base.get("User") or "")
        trim: list[tuple[str, bool]] = []
        if self.trim_slow_imports and not _SAFE_USER.fullmatch(user or "root"):
            yield {"stream": f"Not removing {SLOW_IMPORT_PACKAGE}: unusual USER {user!r}\n"}
        elif self.trim_slow_imports:
            trim = trim_plan(data)
            if not trim:
                yield {"stream": f"{SLOW_IMPORT_PACKAGE} is not in the image: nothing to remove\n"}
        for command, as_root in trim:
            yield {"stream": f"Adding {len(labels)} labels, removing {SLOW_IMPORT_PACKAGE}\n"}
            dockerfile = label_dockerfile(
                image_id, labels, trim_user=user if as_root else "", trim_command=command
            )
            try:
                built = yield from self._run_build(
                    label_request_for(dockerfile, target, limits), steps
                )
                return built or image_id
            except BuildError as e:
                yield {"stream": f"Could not remove {SLOW_IMPORT_PACKAGE} ({e})\n"}
        yield {"stream": f"Adding {len(labels)} labels in one step\n"}
        if commit_fits(base):
            started = time.monotonic()
            how = "a commit, made during the check"
            try:
                built = guess.take(self.api_client, labels) if guess is not None else None
                if built is not None:
                    if target:
                        self._tag(built, target)
                else:
                    how = "a commit"
                    made = ahead.take(self.api_client, labels) if ahead is not None else None
                    built = commit_labels(
                        self.api_client, image_id, base, labels, target or "", container=made
                    )
            except _TRANSPORT_ERRORS as e:
                yield {"stream": f"Could not commit the labels ({describe_docker_error(e)})\n"}
            else:
                self._record_layers({"aux": {"ID": built}})
                steps.add(f"LABEL {len(labels)} labels ({how})", started)
                yield {"stream": f"Committed the labels as {built.removeprefix('sha256:')[:12]}\n"}
                return built
        built = yield from self._run_build(label_request(image_id, labels, target, limits), steps)
        return built or image_id

    def _config_of(self, image_id: str) -> dict[str, Any]:
        """The image's Config (labels, user); {} when Docker cannot say."""
        try:
            return dict(self.api_client.inspect_image(image_id).get("Config") or {})
        except (NotFound, *_TRANSPORT_ERRORS):
            return {}

    def _record_layers(self, chunk: Mapping[str, Any]) -> None:
        """Append the image ids a progress chunk reports to `layers_file`."""
        if not self.layers_file:
            return
        found = []
        text = chunk.get("stream")
        if isinstance(text, str) and " ---> " in text:
            found += _LAYER_LINE.findall(text)
        if built := _built_image_id(chunk):
            found.append(built)
        if found:
            with open(self.layers_file, "a", encoding="ascii") as handle:
                handle.write("".join(f"{layer}\n" for layer in found))

    def _run_build(self, request: Mapping[str, Any], steps: StepLog) -> Iterator[dict[str, Any]]:
        """Stream one build request; returns the id of the image it built (a generator's return).

        Raises BuildError after yielding an error chunk, as the daemon's errors are yielded.
        """
        error = None
        image_id = None
        try:
            for raw in self.api_client.build(**request):
                chunk = _progress_chunk(raw)
                if "error" in chunk:
                    error = str(chunk["error"])
                image_id = _built_image_id(chunk) or image_id
                self._record_layers(chunk)
                steps.see(chunk)
                yield chunk
                if error is not None:
                    break
        except _TRANSPORT_ERRORS as e:
            error = describe_docker_error(e)
            # Same shape as an error the daemon streams, so repo2docker reports it the same way.
            yield {"error": error, "errorDetail": {"message": error}}
        steps.end()
        if error is not None:
            raise BuildError(error)
        return image_id

    def _build_request(
        self,
        *,
        push: bool,
        buildargs: Mapping[str, str] | None,
        cache_from: list[str] | None,
        container_limits: Mapping[str, Any] | None,
        tag: str,
        custom_context: bool,
        dockerfile: str,
        fileobj: Any,
        path: str,
        labels: Mapping[str, Any] | None,
        platform: str | None,
        extra: Mapping[str, Any],
    ) -> dict[str, Any]:
        if push:
            raise ValueError(
                "DockerAPIEngine builds into the local Docker image store only; push=True "
                "is not supported"
            )
        if fileobj is None and not path:
            raise ValueError("build needs either fileobj (a build context) or path")
        limits = {**(container_limits or {}), **self.build_limits}
        unknown_limits = set(limits) - set(docker.constants.CONTAINER_LIMITS_KEYS)
        if unknown_limits:
            # docker-py rejects these with a misleading "invalid tag" message; say what it is.
            raise ValueError(
                f"unsupported container_limits keys {sorted(unknown_limits)}; supported: "
                f"{sorted(docker.constants.CONTAINER_LIMITS_KEYS)}"
            )
        ignored = sorted(set(extra) - PASSTHROUGH_BUILD_KWARGS)
        if ignored:
            self.log.warning("DockerAPIEngine ignores unsupported build options %s", ignored)

        request: dict[str, Any] = {
            key: value for key, value in extra.items() if key in PASSTHROUGH_BUILD_KWARGS
        }
        request.update(
            tag=tag or None,
            dockerfile=dockerfile or None,
            buildargs={
                str(k): str(v) for k, v in {**(buildargs or {}), **self.build_args_extra}.items()
            },
            cache_from=list(cache_from or []),
            container_limits=limits,
            labels=self.merged_labels(labels),
            platform=platform or None,
            # Remove intermediate containers after every step, even when the build fails.
            rm=True,
            forcerm=True,
            decode=True,
        )
        if self.build_network_mode:
            request["network_mode"] = self.build_network_mode
        if fileobj is not None:
            request.update(fileobj=fileobj, custom_context=custom_context)
        else:
            request.update(path=path)
        return request

    def merged_labels(self, labels: Mapping[str, Any] | None) -> dict[str, str]:
        """`labels` plus `extra_labels` (which win on a clash), all values as strings.

        A value that is a URL with userinfo (repo2docker's own `repo2docker.repo` label when
        it was given https://user:token@host/repo) loses the userinfo, query and fragment.
        """
        # The API takes map[string]string; a number would fail the whole build request.
        merged = {str(k): str(v) for k, v in (labels or {}).items()}
        merged.update(self.extra_labels)
        return {
            key: strip_credentials(value) if _URL_WITH_USERINFO.match(value) else value
            for key, value in merged.items()
        }

    def inspect_image(self, image: str) -> Image | None:
        """The image's tags and configuration (its `Config`), or None if it does not exist.

        Raises ContainerEngineException when Docker cannot be asked.
        """
        try:
            attrs = self.api_client.inspect_image(image)
        except NotFound:
            return None
        except _TRANSPORT_ERRORS as e:
            raise ContainerEngineException(
                f"cannot inspect image {image}: {describe_docker_error(e)}"
            ) from e
        return image_from_inspect(attrs)


def image_from_inspect(attrs: Mapping[str, Any]) -> Image:
    """repo2docker's Image from the Docker API's image inspect result.

    Uses `Config` (the image's own configuration, with its Labels), never `ContainerConfig`,
    which describes the container of the last build step.
    """
    config = dict(attrs.get("Config") or {})
    # repo2docker reads WorkingDir unconditionally; the API omits it when empty.
    config.setdefault("WorkingDir", "")
    return Image(tags=list(attrs.get("RepoTags") or []), config=config)


_STEP_OR_CACHE_LINE = re.compile(
    r"^[ \t]*(?:Step \d+/\d+ : (?P<step>[^\n]*)|---> Using cache[ \t\r]*)$", re.MULTILINE
)
_BUILT_LINE = re.compile(r"Successfully built ([0-9a-f]{12,64})")


@dataclass
class _Step:
    text: str
    started: float
    seconds: float = 0.0
    cached: bool = False


@dataclass
class StepLog:
    """The steps of the daemon's build streams: which came from the cache, how long each took."""

    steps: list[_Step] = field(default_factory=list)
    clock: Any = time.monotonic

    def see(self, chunk: Mapping[str, Any]) -> None:
        """Take one progress chunk (a "Step N/M : ..." line starts a step)."""
        text = chunk.get("stream")
        if not isinstance(text, str):
            return
        # One scan of the chunk (a step's own output may be 100 000 lines): only the lines
        # that start a step or say it came from the cache.
        if "Step " not in text and "---> Using cache" not in text:
            return
        for match in _STEP_OR_CACHE_LINE.finditer(text):
            if match["step"] is not None:
                self.end()
                self.steps.append(_Step(match["step"].strip(), self.clock()))
            elif self.steps:
                self.steps[-1].cached = True

    def add(self, text: str, started: float) -> None:
        """A step the engine ran itself (not the daemon's build), from `started` until now."""
        self.end()
        self.steps.append(_Step(text, started))
        self.end()

    def end(self) -> None:
        """The current step (if any) ends now."""
        if self.steps and not self.steps[-1].seconds:
            self.steps[-1].seconds = max(self.clock() - self.steps[-1].started, 1e-6)

    def summary(self) -> list[str]:
        """Log lines: how many steps were cached, then each step with its time."""
        # FROM only names the image to start from: neither run nor cached.
        steps = [step for step in self.steps if not step.text.upper().startswith("FROM ")]
        if not steps:
            return []
        cached = sum(step.cached for step in steps)
        total = sum(step.seconds for step in steps)
        lines = [
            f"Build steps: {cached} of {len(steps)} from the layer cache, {total:.1f} s in all"
        ]
        for number, step in enumerate(steps, start=1):
            text = step.text if len(step.text) <= 60 else step.text[:57] + "..."
            where = "cached" if step.cached else "ran"
            lines.append(f"  {number:>2}. {where:<6} {step.seconds:6.2f} s  {text}")
        return lines


def _dockerfile_string(text: str) -> str:
    """`text` as a double-quoted Dockerfile word: no escapes or $variables interpreted."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def all_labels(base: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, str]:
    """`labels` and blanks for the gallery's labels the image has but `labels` does not set
    (the last step's labels; `base` is the image's Config)."""
    return {**own_labels_cleared(base.get("Labels"), labels), **labels}


def own_labels_cleared(
    existing: Mapping[str, Any] | None, labels: Mapping[str, str]
) -> dict[str, str]:
    """Blank values for the gallery's labels the image has but the builder does not set.

    Docker cannot remove a label; an empty value reads as "not set" (image_labels).
    """
    return {
        str(key): ""
        for key in existing or {}
        if str(key).startswith(LABEL_PREFIX) and key not in labels
    }


def trim_plan(data: dict | None) -> list[tuple[str, bool]]:
    """The ways to remove the slow import, best first: (shell command, as root).

    Without the image check's word (`data` None: it did not run) the whole file system is
    searched, as root; with it, only the folders it found are removed, as the image's USER
    when that user can, and nothing at all when there are none.
    """
    slow = slow_import_of(data) if data is not None else None
    if slow is None:
        return [(TRIM_COMMAND, True)]
    if not slow.paths:
        return []
    command = "rm -rf -- " + " ".join(f"'{path}'" for path in slow.paths)
    return [(command, False)] * slow.user_can_remove + [(command, True)]


def label_dockerfile(
    image_id: str,
    labels: Mapping[str, str],
    *,
    trim_user: str | None = None,
    trim_command: str = TRIM_COMMAND,
) -> str:
    """A Dockerfile adding every label to `image_id` in one LABEL instruction.

    With `trim_user` (the image's USER; "" for root, or to run as the image's USER) it first
    runs `trim_command` (removing the slow import), as root, and restores that USER.
    """
    lines = [f"FROM {image_id}"]
    if trim_user is not None:
        switch = trim_user not in _ROOT_USERS
        if switch:
            lines.append("USER root")
        lines.append(f"RUN {trim_command}")
        if switch:
            lines.append(f"USER {trim_user}")
    if labels:
        pairs = " \\\n    ".join(
            f"{_dockerfile_string(key)}={_dockerfile_string(value)}"
            for key, value in sorted(labels.items())
        )
        lines.append(f"LABEL {pairs}")
    return "\n".join(lines) + "\n"


def label_request(
    image_id: str,
    labels: Mapping[str, str],
    tag: str | None,
    limits: Mapping[str, Any],
    *,
    trim_user: str | None = None,
) -> dict[str, Any]:
    """The APIClient.build arguments of the one-step label build (its context: a Dockerfile).

    It needs no network: "none".
    """
    return label_request_for(label_dockerfile(image_id, labels, trim_user=trim_user), tag, limits)


def label_request_for(
    dockerfile: str, tag: str | None, limits: Mapping[str, Any]
) -> dict[str, Any]:
    """The APIClient.build arguments of a build of `dockerfile` alone, with no network."""
    data = dockerfile.encode("utf-8")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    return {
        "fileobj": context,
        "custom_context": True,
        "tag": tag or None,
        "container_limits": dict(limits),
        "network_mode": "none",
        "rm": True,
        "forcerm": True,
        "decode": True,
    }


def _built_image_id(chunk: Mapping[str, Any]) -> str | None:
    aux = chunk.get("aux")
    if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
        return aux["ID"]
    text = chunk.get("stream")
    if isinstance(text, str) and (match := _BUILT_LINE.search(text)):
        return match[1]
    return None


def _progress_chunk(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        # A non-chunked reply is decoded whole; keep repo2docker's dict contract anyway.
        return {"stream": raw if isinstance(raw, str) else repr(raw)}
    chunk = dict(raw)
    detail = chunk.get("errorDetail")
    if "error" not in chunk and isinstance(detail, dict) and detail.get("message"):
        # repo2docker only looks at "error"; some daemons fill only errorDetail.
        chunk["error"] = detail["message"]
    return chunk
