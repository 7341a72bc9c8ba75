"""A repo2docker container engine that builds through the Docker Engine API.

repo2docker 2025.08 and later build with `docker buildx build`, which this deployment does not
have. This engine builds with docker-py's low-level `APIClient.build` instead (the classic
builder, API 1.41 is enough) and streams the daemon's JSON progress back to repo2docker as
dicts (`string_output = False`), the form `Repo2Docker.build` handles for Docker output.

Register it under the `repo2docker.engines` entry-point group and select it with
`repo2docker --engine gallery-docker-api`. Labels the gallery needs on every image go in the
`DockerAPIEngine.extra_labels` trait (e.g. `c.DockerAPIEngine.extra_labels = {...}` in the
file given to `repo2docker --config`); they override same-named labels from anywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import docker
import docker.constants
import docker.utils
from docker.errors import DockerException, NotFound
from repo2docker.docker import DockerEngine
from repo2docker.engine import BuildError, ContainerEngineException, Image
from requests.exceptions import RequestException
from traitlets import Dict, Unicode
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from gallery_builder.docker_errors import describe_docker_error
from gallery_common.image_labels import strip_credentials

ENTRY_POINT_NAME = "gallery-docker-api"

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
        self.log.debug(
            "Building %s via the Docker Engine API with labels %s", tag, sorted(request["labels"])
        )
        error = None
        try:
            for raw in self.api_client.build(**request):
                chunk = _progress_chunk(raw)
                if "error" in chunk:
                    error = str(chunk["error"])
                yield chunk
                if error is not None:
                    break
        except _TRANSPORT_ERRORS as e:
            error = describe_docker_error(e)
            # Same shape as an error the daemon streams, so repo2docker reports it the same way.
            yield {"error": error, "errorDetail": {"message": error}}
        if error is not None:
            raise BuildError(error)

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
        limits = dict(container_limits or {})
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
            buildargs={str(k): str(v) for k, v in (buildargs or {}).items()},
            cache_from=list(cache_from or []),
            container_limits=limits,
            labels=self.merged_labels(labels),
            platform=platform or None,
            # Remove intermediate containers after every step, even when the build fails.
            rm=True,
            forcerm=True,
            decode=True,
        )
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
