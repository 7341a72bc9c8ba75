"""Which images of an environment are kept: its current image and up to N previous ones.

When a new build replaces `<name>:<tag>`, the image it replaces keeps a tag of its own,
`<name>:gallery-previous-<tag>-<image id>`, so an admin can roll back to it. Previous
images beyond `GALLERY_KEEP_PREVIOUS` (newest first) are removed, except while a container
uses one: the builder's periodic sweep removes it once the container is gone. Pure
functions on names and image summaries; Docker is asked in `docker_images`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from docker.errors import APIError

from gallery_builder.docker_errors import describe_docker_error
from gallery_builder.docker_images import BUILD_TAG_PREFIX, split_image_name
from gallery_common.image_labels import BUILD_TIME_LABEL, COMMIT_LABEL

PREVIOUS_TAG_PREFIX = "gallery-previous-"
_MAX_TAG_LENGTH = 128
_ID_LENGTH = 12
# The id part of a previous tag; no "-", so "main-x"'s previous tags never match "main"'s.
_SHORT_ID = re.compile(r"[0-9a-z]{1,12}")


def short_id(image_id: str) -> str:
    """The first 12 hex digits of an image id ("sha256:..." or bare)."""
    return image_id.removeprefix("sha256:")[:_ID_LENGTH]


def previous_prefix(image: str) -> str:
    """The start of every previous tag of `image` ("name:tag"), up to the image id."""
    repository, tag = split_image_name(image)
    room = _MAX_TAG_LENGTH - len(PREVIOUS_TAG_PREFIX) - _ID_LENGTH - 1
    if len(tag) > room:
        digest = hashlib.sha256(tag.encode()).hexdigest()[:8]
        tag = f"{tag[: room - 9]}-{digest}"
    return f"{repository}:{PREVIOUS_TAG_PREFIX}{tag}-"


def previous_tag(image: str, image_id: str) -> str:
    """The name the image `image_id` keeps once a newer build has replaced it as `image`."""
    return previous_prefix(image) + short_id(image_id)


def is_previous_of(tag: str, image: str) -> bool:
    """True for a previous tag of `image` (made by `previous_tag`)."""
    prefix = previous_prefix(image)
    return tag.startswith(prefix) and bool(_SHORT_ID.fullmatch(tag[len(prefix) :]))


def is_previous_tag(tag: str) -> bool:
    """True for any previous tag."""
    return split_image_name(tag)[1].startswith(PREVIOUS_TAG_PREFIX)


def is_gallery_tag(tag: str) -> bool:
    """A tag the builder made for its own bookkeeping (a build in progress, a previous image)."""
    name_tag = split_image_name(tag)[1]
    return name_tag.startswith((BUILD_TAG_PREFIX, PREVIOUS_TAG_PREFIX))


@dataclass(frozen=True)
class PreviousImage:
    """A previous image of an environment, as the API shows it."""

    image: str
    id: str
    commit: str
    build_time: str
    size: int | None
    used_by: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.image,
            "id": self.id,
            "commit": self.commit,
            "build_time": self.build_time,
            "size": self.size,
            "used_by": list(self.used_by),
        }


def split_kept(
    previous: Iterable[PreviousImage], keep: int
) -> tuple[list[PreviousImage], list[PreviousImage]]:
    """(kept, to remove): the `keep` newest previous images, and the older ones.

    An older one that a container uses stays among the kept until the container is gone.
    """
    ordered = sorted(previous, key=lambda p: (p.build_time, p.image), reverse=True)
    kept = ordered[: max(keep, 0)]
    older = ordered[max(keep, 0) :]
    kept += [p for p in older if p.used_by]
    return kept, [p for p in older if not p.used_by]


class RetentionImages(Protocol):
    """What retention needs from DockerImages (tests pass fakes)."""

    def gallery_images(self) -> list[dict[str, Any]]: ...

    def container_images(self) -> dict[str, list[str]]: ...

    def remove(self, image: str, *, prune: bool = False) -> bool: ...


def previous_images(
    image: str, summaries: Iterable[dict[str, Any]], containers: dict[str, list[str]]
) -> list[PreviousImage]:
    """The previous images of `image` among image summaries, with who uses each."""
    found = []
    for summary in summaries:
        labels = summary.get("Labels") or {}
        for tag in summary.get("RepoTags") or []:
            if is_previous_of(tag, image):
                found.append(
                    PreviousImage(
                        image=tag,
                        id=str(summary.get("Id", "")),
                        commit=str(labels.get(COMMIT_LABEL, "")),
                        build_time=str(labels.get(BUILD_TIME_LABEL, "")),
                        size=summary.get("Size") if isinstance(summary.get("Size"), int) else None,
                        used_by=tuple(sorted(containers.get(str(summary.get("Id", "")), []))),
                    )
                )
    return sorted(found, key=lambda p: (p.build_time, p.image), reverse=True)


class Retention:
    """Keeps `keep` previous images per environment and removes the older ones it can."""

    def __init__(self, images: RetentionImages, keep: int = 1) -> None:
        self.images = images
        self.keep = keep

    def previous(self, image: str) -> list[PreviousImage]:
        """The previous images of `image`, newest first (synchronous Docker calls)."""
        return previous_images(image, self.images.gallery_images(), self.images.container_images())

    def sweep(self, images: Iterable[str]) -> list[str]:
        """Remove previous images beyond the kept ones, of each of `images`; log notes."""
        summaries = self.images.gallery_images()
        containers = self.images.container_images()
        notes = []
        for image in images:
            _kept, older = split_kept(previous_images(image, summaries, containers), self.keep)
            for old in older:
                try:
                    self.images.remove(old.image, prune=True)
                except APIError as e:
                    notes.append(f"Kept {old.image} for now ({describe_docker_error(e)})")
                    continue
                notes.append(f"Removed the older image {old.image}")
        return notes
