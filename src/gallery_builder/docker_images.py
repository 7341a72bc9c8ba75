"""The gallery's view of the local Docker image store: environment images and who uses them.

Synchronous docker-py calls (the async caller wraps them in `asyncio.to_thread`). Everything
goes through the low-level API (`client.api`), one request per question, and labels are read
from an image's `Config.Labels`, never `ContainerConfig` (the last build step's container).
"""

from __future__ import annotations

import threading
from typing import Any

import docker
from docker.errors import DockerException, NotFound

from gallery_common.image_labels import MARKER_FILTER, EnvironmentLabels, parse_labels

# Builds are tagged "<name>:<prefix><build id>" until they succeed (see build_runner).
BUILD_TAG_PREFIX = "gallery-build-"


class DockerImages:
    """Questions about, and removal of, images in the local Docker engine."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        """Use `client`, or connect with `docker.from_env()` on first use."""
        self._client = client
        self._lock = threading.Lock()

    @property
    def api(self) -> Any:
        """docker-py's low-level APIClient (connecting on first use)."""
        with self._lock:  # to_thread callers may race to create the client
            if self._client is None:
                self._client = docker.from_env()
            return self._client.api

    def close(self) -> None:
        """Close the connection to Docker, if one was opened."""
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None

    def inspect(self, image: str) -> dict[str, Any] | None:
        """The image's inspect data, or None when it does not exist."""
        try:
            return self.api.inspect_image(image)
        except NotFound:
            return None

    def exists(self, image: str) -> bool:
        """True when `image` (a name:tag or an id) is in the local image store."""
        return self.inspect(image) is not None

    def image_id(self, image: str) -> str | None:
        """The image's id ("sha256:..."), or None when it does not exist."""
        attrs = self.inspect(image)
        return attrs.get("Id") if attrs else None

    def labels(self, image: str) -> EnvironmentLabels | None:
        """The gallery labels of `image`; None if it does not exist or is not a gallery image."""
        attrs = self.inspect(image)
        if attrs is None:
            return None
        config = attrs.get("Config") or {}
        return parse_labels(config.get("Labels"))

    def size(self, image: str) -> int | None:
        """The image's size in bytes, or None when it does not exist."""
        attrs = self.inspect(image)
        if attrs is None:
            return None
        size = attrs.get("Size")
        return size if isinstance(size, int) else None

    def tag(self, source: str, target: str) -> None:
        """Give the image `source` the name `target` ("repository:tag"), moving that tag here."""
        repository, tag = split_image_name(target)
        if not self.api.tag(source, repository, tag):
            raise DockerException(f"Docker did not tag {source} as {target}")

    def remove(self, image: str, *, prune: bool = False) -> bool:
        """Remove a tag (or, by id, an untagged image); False when it was not there.

        Never forced: Docker refuses (APIError 409) while a container uses the image or when
        an id still has several tags. Untagged parent images are kept unless `prune`.
        """
        try:
            self.api.remove_image(image, force=False, noprune=not prune)
        except NotFound:
            return False
        return True

    def running_containers_using(self, image: str) -> list[str]:
        """Names of running containers created from this image (matched by image id)."""
        image_id = self.image_id(image)
        if image_id is None:
            return []
        containers = self.api.containers(filters={"status": "running"})
        return sorted(
            _container_name(container)
            for container in containers
            if container.get("ImageID") == image_id
        )

    def remove_build_leftovers(self) -> list[str]:
        """Remove temporary build tags (and their images); return the names removed.

        Call it when no build is running (at start-up): a build cancelled in its last
        instant can leave one behind, because Docker may tag before it notices the cancel.
        """
        leftovers = sorted(
            tag
            for summary in self.api.images(filters={"label": MARKER_FILTER})
            for tag in summary.get("RepoTags") or []
            if is_build_tag(tag)
        )
        return [tag for tag in leftovers if self.remove(tag, prune=True)]


def split_image_name(image: str) -> tuple[str, str]:
    """("repository", "tag") of "repository:tag"; the tag defaults to "latest"."""
    repository, sep, tag = image.rpartition(":")
    # a ":" before the last "/" belongs to a registry port, not to the tag
    if not sep or "/" in tag:
        return image, "latest"
    return repository, tag


def build_tag(image: str, build_id: str) -> str:
    """The temporary name a build of `image` gets until it succeeds."""
    repository, _tag = split_image_name(image)
    safe_id = "".join(ch for ch in build_id if ch.isascii() and (ch.isalnum() or ch in "_.-"))
    return f"{repository}:{BUILD_TAG_PREFIX}{safe_id[:100] or 'unknown'}"


def is_build_tag(image: str) -> bool:
    """True for a temporary build name made by `build_tag`."""
    return split_image_name(image)[1].startswith(BUILD_TAG_PREFIX)


def _container_name(container: dict[str, Any]) -> str:
    names = container.get("Names") or []
    # The API reports names with a leading "/".
    return names[0].lstrip("/") if names else str(container.get("Id", ""))[:12]
