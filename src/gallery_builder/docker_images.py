"""The gallery's view of the local Docker image store: environment images and who uses them.

Synchronous docker-py calls (the async caller wraps them in `asyncio.to_thread`). Everything
goes through the low-level API (`client.api`), one request per question, and labels are read
from an image's `Config.Labels`, never `ContainerConfig` (the last build step's container).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound

from gallery_common.image_labels import MARKER_FILTER, EnvironmentLabels, parse_labels

# Builds are tagged "<name>:<prefix><build id>" until they succeed (see build_runner).
BUILD_TAG_PREFIX = "gallery-build-"


class DockerImages:
    """Questions about, and removal of, images in the local Docker engine."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        """Use `client`, or connect with `docker.from_env()` on first use."""
        self._client = client
        self._lock = threading.Lock()
        self._data_root: str | None = None

    @property
    def api(self) -> Any:
        """docker-py's low-level APIClient (connecting on first use)."""
        with self._lock:  # to_thread callers may race to create the client
            if self._client is None:
                self._client = docker.from_env()
            return self._client.api

    def api_version(self) -> str:
        """The Docker API version spoken with the daemon (negotiated when connecting)."""
        return str(self.api.api_version)

    def close(self) -> None:
        """Close the connection to Docker, if one was opened."""
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None
            self._data_root = None

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

    def gallery_images(self) -> list[dict[str, Any]]:
        """Summaries (Id, RepoTags, Labels, Size) of every image with the gallery marker."""
        return list(self.api.images(filters={"label": MARKER_FILTER}))

    def container_images(self) -> dict[str, list[str]]:
        """{image id: names of the containers, running or stopped, created from it}."""
        found: dict[str, list[str]] = {}
        for container in self.api.containers(all=True):
            found.setdefault(container.get("ImageID", ""), []).append(_container_name(container))
        return found

    def containers_using(self, image: str) -> list[str]:
        """Names of the containers, running or stopped, created from this image."""
        image_id = self.image_id(image)
        if image_id is None:
            return []
        return sorted(self.container_images().get(image_id, []))

    def remove_layers(self, layer_ids: Iterable[str]) -> list[str]:
        """Remove, newest first, the untagged images of `layer_ids` that nothing else needs.

        What a failed or cancelled build leaves: removing its last layer prunes its untagged
        parents too. Tagged images, and layers with other children or a container, stay.
        """
        removed = []
        for layer in reversed(list(dict.fromkeys(layer_ids))):
            attrs = self.inspect(layer)
            if attrs is None or any(t != "<none>:<none>" for t in attrs.get("RepoTags") or []):
                continue
            try:
                self.api.remove_image(attrs["Id"], force=False, noprune=False)
            except NotFound:
                continue
            except APIError:
                continue  # 409: a child image or a container still needs it
            removed.append(layer)
        return removed

    def data_root_usage(self) -> DiskUsage:
        """Space on the filesystem of Docker's data root (see `DiskUsage`).

        Where the data root is is asked once (`docker info` takes ~20 ms; it does not move
        while the daemon runs); the free space is read each time.
        """
        root = self._data_root
        if root is None:
            try:
                root = self._data_root = str(self.api.info().get("DockerRootDir") or "")
            except DockerException:
                root = ""
        # In a container the data root is not mounted, but its root filesystem (an overlay
        # on the data root, with overlay2) has the same free space.
        path = root if root and os.path.isdir(root) else "/"
        usage = shutil.disk_usage(path)
        return DiskUsage(total=usage.total, used=usage.used, free=usage.free)

    def host_gateways(self) -> frozenset[str]:
        """The gateway address of every Docker network: each is an address of the host."""
        found = set()
        for network in self.api.networks():
            for config in (network.get("IPAM") or {}).get("Config") or []:
                gateway = str(config.get("Gateway") or "").partition("/")[0]
                if gateway:
                    found.add(gateway)
        return frozenset(found)

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


@dataclass(frozen=True)
class DiskUsage:
    """Bytes on the filesystem that holds Docker's data root."""

    total: int
    used: int
    free: int

    def to_json(self) -> dict[str, int]:
        return {"total_bytes": self.total, "used_bytes": self.used, "free_bytes": self.free}


class CachedGateways:
    """`DockerImages.host_gateways`, asked again at most every `ttl_s` seconds."""

    def __init__(self, images: DockerImages, ttl_s: float = 30.0) -> None:
        self.images = images
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._value: frozenset[str] = frozenset()
        self._at = float("-inf")

    def __call__(self) -> frozenset[str]:
        with self._lock:
            if time.monotonic() - self._at > self.ttl_s:
                # Docker unreachable: the last answer (builds fail anyway without Docker).
                with contextlib.suppress(DockerException):
                    self._value = self.images.host_gateways()
                    self._at = time.monotonic()
            return self._value


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
