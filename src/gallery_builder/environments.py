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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gallery_builder.build_queue import BuildQueue
from gallery_builder.build_request import (
    BuildRequest,
    RepositoryCheck,
    Resolver,
    ValidationError,
    parse_build_request,
)
from gallery_builder.build_store import TERMINAL_STATES, BuildRecord, BuildStore
from gallery_builder.builder_settings import STACK_HOSTS, BuilderSettings

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

    def remove(self, image: str, *, prune: bool = False) -> bool: ...

    def running_containers_using(self, image: str) -> list[str]: ...


@dataclass(frozen=True)
class RequestRules:
    """How submitted fields are checked: the configured limits and repository policy."""

    max_memory_gb: float
    max_cpu: float
    allow_private: bool = True
    blocked_hosts: frozenset[str] = STACK_HOSTS
    resolve: Resolver = socket.getaddrinfo

    @classmethod
    def from_settings(
        cls, settings: BuilderSettings, resolve: Resolver | None = None
    ) -> RequestRules:
        """The rules the builder's settings give (the stack's own hosts always refused)."""
        return cls(
            max_memory_gb=settings.max_memory_gb,
            max_cpu=settings.max_cpu,
            allow_private=settings.allow_private_repositories,
            resolve=resolve or socket.getaddrinfo,
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
            resolve=self.resolve,
            check_repository=check_repository,
        )


class Environments:
    """Environment operations on one store, queue and image store."""

    def __init__(
        self, store: BuildStore, queue: BuildQueue, images: ImageStore, rules: RequestRules
    ) -> None:
        self.store = store
        self.queue = queue
        self.images = images
        self.rules = rules

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
        request = self.rules.parse({k: v for k, v in stored.items() if v is not None})
        return await self.add(request)

    async def cancel(self, build_id: str) -> BuildRecord:
        """Cancel a queued or running build; Conflict if it has already ended."""
        record = await self.get(build_id)
        if record.state in TERMINAL_STATES:
            raise Conflict(f"build {build_id} has already ended ({record.state})")
        await self.queue.cancel(build_id)
        return await self.get(build_id)

    async def delete(self, build_id: str) -> BuildRecord:
        """Remove the image of `build_id` and every build of it; returns the build given.

        Conflict while a build of the image is queued or running, or while a user server
        runs the image.
        """
        record = await self.get(build_id)
        siblings = await asyncio.to_thread(self.store.builds_of_image, record.image)
        if any(r.state not in TERMINAL_STATES for r in siblings):
            raise Conflict(f"a build of {record.image} is queued or running: cancel it first")
        users = await asyncio.to_thread(self.images.running_containers_using, record.image)
        if users:
            raise Conflict(
                f"{record.image} is in use by {len(users)} running server(s): "
                f"{', '.join(sorted(users))}; stop them first"
            )
        if await asyncio.to_thread(self.images.exists, record.image):
            # prune: also the image's untagged parent layers, or deleting would free nothing.
            await asyncio.to_thread(self.images.remove, record.image, prune=True)
        for sibling in siblings:
            await asyncio.to_thread(self.store.delete, sibling.id)
        return record
