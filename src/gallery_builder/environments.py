"""Environment operations: the one place for the rules of adding, rebuilding, cancelling,
deleting and listing environments, shared by the web API and `build-image`.

An environment is an image `<name>:<tag>`; each build of it is a record in the BuildStore,
built by the BuildQueue. Nothing here knows about HTTP or the command line: a refused
operation raises `NotFound`, `Conflict` or (for a bad field) `ValidationError`, and the
caller words it for its audience.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from docker.errors import APIError

from gallery_builder.build_queue import BuildQueue
from gallery_builder.build_request import (
    BuildRequest,
    RepositoryCheck,
    Resolver,
    ValidationError,
    parse_build_request,
)
from gallery_builder.build_store import TERMINAL_STATES, BuildRecord, BuildState, BuildStore
from gallery_builder.builder_settings import STACK_HOSTS, BuilderSettings
from gallery_builder.docker_images import DiskUsage, is_build_tag
from gallery_builder.image_retention import (
    PreviousImage,
    Retention,
    is_previous_of,
    previous_images,
    previous_tag,
)
from gallery_common.image_labels import STACK_LABEL, EnvironmentLabels

log = logging.getLogger(__name__)


class EnvironmentRefusal(Exception):
    """An operation that is not possible; the message says why, for the admin."""


class NotFound(EnvironmentRefusal):
    """No such build."""


class Conflict(EnvironmentRefusal):
    """Not possible in the current state (a name taken, a build running, an image in use)."""


class ImageStore(Protocol):
    """What the operations need from DockerImages (tests pass fakes)."""

    def exists(self, image: str) -> bool: ...

    def image_id(self, image: str) -> str | None: ...

    def labels(self, image: str) -> EnvironmentLabels | None: ...

    def size(self, image: str) -> int | None: ...

    def tag(self, source: str, target: str) -> None: ...

    def remove(self, image: str, *, prune: bool = False) -> bool: ...

    def containers_using(self, image: str) -> list[str]: ...

    def gallery_images(self) -> list[dict[str, Any]]: ...

    def container_images(self) -> dict[str, list[str]]: ...

    def data_root_usage(self) -> DiskUsage: ...


@dataclass(frozen=True)
class RequestRules:
    """How submitted fields are checked: the configured limits and repository policy."""

    max_memory_gb: float
    max_cpu: float
    allow_private: bool = True
    blocked_hosts: frozenset[str] = STACK_HOSTS
    resolve: Resolver = socket.getaddrinfo
    # The host's own addresses (its bridge gateways), asked for at each check.
    host_addresses: Callable[[], frozenset[str]] = field(default=lambda: frozenset())

    @classmethod
    def from_settings(
        cls,
        settings: BuilderSettings,
        resolve: Resolver | None = None,
        host_addresses: Callable[[], frozenset[str]] | None = None,
    ) -> RequestRules:
        """The rules the builder's settings give (the stack's own hosts always refused)."""
        return cls(
            max_memory_gb=settings.max_memory_gb,
            max_cpu=settings.max_cpu,
            allow_private=settings.allow_private_repositories,
            resolve=resolve or socket.getaddrinfo,
            host_addresses=host_addresses or (lambda: frozenset()),
        )

    def parse(self, body: Any, *, check_repository: RepositoryCheck | None = None) -> BuildRequest:
        """A BuildRequest from submitted fields; ValidationError naming the field at fault.

        `check_repository` replaces the URL policy (build-image's local directories).
        """
        return parse_build_request(
            body,
            max_memory_gb=self.max_memory_gb,
            max_cpu=self.max_cpu,
            allow_private=self.allow_private,
            blocked_hosts=self.blocked_hosts,
            host_addresses=self.host_addresses(),
            resolve=self.resolve,
            check_repository=check_repository,
        )

    async def parse_async(self, body: Any) -> BuildRequest:
        """`parse` in a thread: its DNS lookups must not block the event loop."""
        return await asyncio.to_thread(self.parse, body)


class Environments:
    """Environment operations on one store, queue and image store."""

    def __init__(
        self,
        store: BuildStore,
        queue: BuildQueue,
        images: ImageStore,
        rules: RequestRules,
        *,
        keep_previous: int = 1,
        min_free_disk_gb: float = 0,
        stack: str = "",
    ) -> None:
        """Operations on `store`, `queue` and `images`; `rules` check submitted fields.

        `keep_previous` previous images stay per environment; new builds are refused while
        Docker's data root has less than `min_free_disk_gb` free (0: never); `prune` removes
        only images labelled with `stack` (the compose project).
        """
        self.store = store
        self.queue = queue
        self.images = images
        self.rules = rules
        self.retention = Retention(images, keep_previous)
        self.min_free_disk_gb = min_free_disk_gb
        self.stack = stack

    # --- reading --------------------------------------------------------------------------

    async def latest(self) -> list[BuildRecord]:
        """The latest build of every image, newest first: the environments list."""
        return await asyncio.to_thread(self.store.latest_per_image)

    async def get(self, build_id: str) -> BuildRecord:
        """The build `build_id`; NotFound if there is none."""
        record = await asyncio.to_thread(self.store.get, build_id)
        if record is None:
            raise NotFound(f"no build {build_id}")
        return record

    async def overview(self) -> dict[str, Any]:
        """The environments list for the API and page: each latest build with its previous
        images, and the Docker data root's space."""
        records = await self.latest()
        return await asyncio.to_thread(self._overview, records)

    def _overview(self, records: list[BuildRecord]) -> dict[str, Any]:
        summaries = self.images.gallery_images()
        containers = self.images.container_images()
        environments = []
        for record in records:
            previous = previous_images(record.image, summaries, containers)
            environments.append({**record.to_json(), "previous": [p.to_json() for p in previous]})
        usage = self.images.data_root_usage()
        disk = {**usage.to_json(), "min_free_bytes": int(self.min_free_disk_gb * 1024**3)}
        return {"environments": environments, "disk": disk}

    async def wait(self, build_id: str) -> BuildRecord | None:
        """The build's record once it has ended and its run is over (None if deleted)."""
        return await self.queue.wait(build_id)

    # --- changing -------------------------------------------------------------------------

    def name_conflict(self, request: BuildRequest) -> str | None:
        """Why `request` may not use its name (another repository has it), or None."""
        owner = self.store.latest_for_name(request.name)
        if owner is not None and owner.repository != request.repository:
            return f"the name {request.name!r} is already used by {owner.repository}"
        return None

    async def add(self, request: BuildRequest) -> BuildRecord:
        """Record and queue a build of `request`; Conflict if another repository has its name.

        The answer may already be final: a commit that is built is reused at once.
        """
        conflict = await asyncio.to_thread(self.name_conflict, request)
        if conflict:
            raise Conflict(conflict)
        await self._check_free_disk()
        record = self.queue.enqueue(request)
        return await asyncio.to_thread(self.store.get, record.id) or record

    async def rebuild(self, build_id: str, body: Mapping[str, Any] | None = None) -> BuildRecord:
        """Build the ref of `build_id` again, with the same name and limits.

        `body` may carry only `credentials` (never stored, so a private repository needs
        them again). The stored fields go through the same checks as a new request: e.g. a
        local path built by build-image cannot be rebuilt through the API.
        """
        record = await self.get(build_id)
        body = {} if body is None else body
        if not isinstance(body, Mapping) or set(body) - {"credentials"}:
            raise ValidationError("body", "only 'credentials' may be given to a rebuild")
        stored = {
            "repository": record.repository,
            "name": record.name,
            "ref": record.ref,
            "memory": record.memory_gb,
            "cpu": record.cpu,
            "credentials": body.get("credentials"),
        }
        request = await self.rules.parse_async({k: v for k, v in stored.items() if v is not None})
        return await self.add(request)

    async def cancel(self, build_id: str) -> BuildRecord:
        """Cancel a queued or running build; Conflict if it has already ended."""
        record = await self.get(build_id)
        if record.state in TERMINAL_STATES:
            raise Conflict(f"build {build_id} has already ended ({record.state})")
        await self.queue.cancel(build_id)
        return await self.get(build_id)

    async def _check_free_disk(self) -> None:
        """Conflict while Docker's data root has less free space than configured."""
        if self.min_free_disk_gb <= 0:
            return
        usage = await asyncio.to_thread(self.images.data_root_usage)
        if usage.free < self.min_free_disk_gb * 1024**3:
            raise Conflict(
                f"only {usage.free / 1024**3:.1f} GB free on Docker's data root, below "
                f"GALLERY_MIN_FREE_DISK_GB ({self.min_free_disk_gb:g} GB): delete "
                "environments or prune unused images first"
            )

    async def delete(self, build_id: str) -> BuildRecord:
        """Remove the image of `build_id`, its previous images and every build of it;
        returns the build given.

        Conflict while a build of the image is queued or running, or while any container
        (a user server, running or stopped) uses the image or one of its previous images.
        """
        record = await self.get(build_id)
        siblings = await asyncio.to_thread(self.store.builds_of_image, record.image)
        if any(r.state not in TERMINAL_STATES for r in siblings):
            raise Conflict(f"a build of {record.image} is queued or running: cancel it first")
        previous = await asyncio.to_thread(self.retention.previous, record.image)
        users = await asyncio.to_thread(self.images.containers_using, record.image)
        users = sorted({*users, *(name for p in previous for name in p.used_by)})
        if users:
            raise Conflict(
                f"{record.image} is in use by {len(users)} server(s): "
                f"{', '.join(users)}; stop them first"
            )
        for old in previous:
            await asyncio.to_thread(self.images.remove, old.image, prune=True)
        if await asyncio.to_thread(self.images.exists, record.image):
            # prune: also the image's untagged parent layers, or deleting would free nothing.
            await asyncio.to_thread(self.images.remove, record.image, prune=True)
        for sibling in siblings:
            await asyncio.to_thread(self.store.delete, sibling.id)
        return record

    async def rollback(self, build_id: str, body: Mapping[str, Any] | None = None) -> BuildRecord:
        """Make a previous image of `build_id`'s environment current again; the new record.

        `body` may name the previous image (`{"image": ...}`); default: the newest. The
        image it replaces becomes a previous image in turn. Conflict while a build of the
        environment is queued or running, or when it has no previous image.
        """
        record = await self.get(build_id)
        body = {} if body is None else body
        if not isinstance(body, Mapping) or set(body) - {"image"}:
            raise ValidationError("body", "only 'image' (a previous image) may be given")
        wanted = body.get("image")
        if wanted is not None and not isinstance(wanted, str):
            raise ValidationError("image", "must be a string")
        siblings = await asyncio.to_thread(self.store.builds_of_image, record.image)
        if any(r.state not in TERMINAL_STATES for r in siblings):
            raise Conflict(f"a build of {record.image} is queued or running: wait for it")
        previous = await asyncio.to_thread(self.retention.previous, record.image)
        if not previous:
            raise Conflict(f"{record.image} has no previous image to roll back to")
        if wanted is None:
            target = previous[0]
        else:
            target = next((p for p in previous if p.image == wanted), None)
            if target is None:
                raise ValidationError("image", f"not a previous image of {record.image}")
        return await asyncio.to_thread(self._roll_back, record, target)

    def _roll_back(self, record: BuildRecord, target: PreviousImage) -> BuildRecord:
        current = self.images.image_id(record.image)
        self.images.tag(target.id, record.image)
        self.images.remove(target.image)  # only the previous tag: the image has its name now
        if current is not None and current != target.id:
            self.images.tag(current, previous_tag(record.image, current))
        labels = self.images.labels(record.image)
        rolled = self.store.create(
            name=record.name,
            image=record.image,
            repository=record.repository,
            ref=record.ref,
            resolved_commit=target.commit or None,
            memory_gb=labels.memory_limit_gb if labels else None,
            cpu=labels.cpu_limit if labels else None,
        )
        self.store.append_log(
            rolled.id,
            f"Rolled {record.image} back to commit {target.commit[:7] or '?'} "
            f"(the image built at {target.build_time or 'an unknown time'})\n",
        )
        return self.store.set_state(
            rolled.id,
            BuildState.BUILT,
            resolved_commit=target.commit or None,
            image_size=self.images.size(record.image),
            reused=True,
        )

    async def sweep(self) -> list[str]:
        """Remove previous images beyond the kept ones that no container uses any more."""
        records = await self.latest()
        return await asyncio.to_thread(self.retention.sweep, [r.image for r in records])

    async def prune(self) -> dict[str, Any]:
        """Remove this stack's environment images that no environment references.

        Referenced: each environment's image and its previous images. Images a container
        uses are kept (listed with who uses them). Returns what was removed and kept.
        """
        records = await self.latest()
        return await asyncio.to_thread(self._prune, {r.image for r in records})

    def _prune(self, referenced: set[str]) -> dict[str, Any]:
        containers = self.images.container_images()
        removed: list[str] = []
        kept: list[dict[str, Any]] = []
        freed = 0

        def needed(tag: str) -> bool:
            return (
                tag in referenced
                or is_build_tag(tag)
                or any(is_previous_of(tag, image) for image in referenced)
            )

        for summary in self.images.gallery_images():
            labels = summary.get("Labels") or {}
            if not self.stack or labels.get(STACK_LABEL) != self.stack:
                continue  # another stack's (or an older builder's) image
            tags = [t for t in summary.get("RepoTags") or [] if t != "<none>:<none>"]
            unneeded = [t for t in tags if not needed(t)]
            still_named = len(unneeded) < len(tags)
            used_by = sorted(containers.get(summary.get("Id", ""), []))
            if not still_named and used_by:
                kept += [{"image": name, "used_by": used_by} for name in unneeded or tags]
                continue
            # An image an environment still names only loses its other tags.
            names = unneeded if (unneeded or still_named) else [str(summary.get("Id", ""))]
            for name in names:
                try:
                    self.images.remove(name, prune=True)
                except APIError:
                    kept.append({"image": name, "used_by": used_by})
                    continue
                removed.append(name)
            if not still_named:
                freed += summary.get("Size") or 0
        return {"removed": removed, "kept": kept, "freed_bytes": freed}
