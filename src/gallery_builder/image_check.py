"""Look inside a built image: can the hub run it, and are the gallery's notebooks there?

A short container of the image itself (no network, no capabilities, the user servers' uid)
runs `CHECK_SCRIPT` (image_probe) with the image's own Python: the versions of jupyterhub,
voila and jupytext as the interpreter of `jupyterhub-singleuser` sees them, and which of the
paths gallery.yaml names exist, relative to the image's working directory (where the server's
root, and so Voila's paths, start). The facts go on the image as one label
(gallery_common.image_compatibility), so the hub reads them with the other labels.

A new image is checked by the engine before the build's last step, which adds the label with
the others (`docker_api_engine`); `ImageChecker` checks an image that is already there (a
reused build) and labels it with a second, metadata-only build step `FROM <image>`, the tag
moving there.

Synchronous docker-py calls: the async caller runs them in a thread.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterable
from typing import Any

from docker.errors import DockerException

from gallery_builder.docker_images import DockerImages
from gallery_builder.image_probe import (
    CHECK_COMMAND,
    CHECK_MARKER,
    CHECK_SCRIPT,
    CheckError,
    check_data,
    parse_check_output,
    run_check,
)
from gallery_common.gallery_file import Gallery
from gallery_common.image_compatibility import (
    COMPATIBILITY_LABEL,
    ImageFacts,
    facts_from_json,
    facts_from_labels,
    image_problems,
    path_problems,
)

__all__ = [
    "CHECK_COMMAND",
    "CHECK_MARKER",
    "CHECK_SCRIPT",
    "CheckError",
    "ImageChecker",
    "check_data",
    "describe",
    "gallery_paths",
    "parse_check_output",
    "run_check",
]


def gallery_paths(gallery: Gallery | None, image: str) -> list[str]:
    """The notebook paths of the gallery's examples that run `image`, sorted."""
    if gallery is None:
        return []
    return sorted({e.path for e in gallery.examples.values() if e.image_name == image})


def describe(facts: ImageFacts, hub_major: int | None) -> list[str]:
    """Log lines: what was found, then every problem (the same words the pages show)."""
    found = (
        f"jupyterhub {facts.jupyterhub or 'missing'}, "
        f"jupyterhub-singleuser {'present' if facts.singleuser else 'missing'}, "
        f"voila {facts.voila or 'missing'}, jupytext {facts.jupytext or 'missing'}, "
        f"Python {facts.python or '?'}"
    )
    lines = [f"Image check: {found}"]
    for path, present in sorted(facts.paths.items()):
        lines.append(f"Image check: {path} {'found' if present else 'MISSING'}")
    problems = image_problems(facts, hub_major)
    for path in sorted(facts.paths):
        problems += path_problems(facts, path)
    if any(p.endswith(".py") for p in facts.paths) and facts.jupytext is None:
        lines.append(
            "Image check: note: without jupytext in the image Voila shows a .py example as "
            "one cell with its default template"
        )
    lines += [f"Image check: INCOMPATIBLE: {problem}" for problem in problems]
    if not problems:
        lines.append("Image check: the hub can run this image")
    return lines


class ImageChecker:
    """Runs the check in an image and labels the image with what it found."""

    def __init__(
        self,
        images: DockerImages,
        *,
        uid: str = "1000",
        timeout_s: float = 120,
        name_prefix: str = "gallery",
    ) -> None:
        self.images = images
        self.uid = uid
        self.timeout_s = timeout_s
        self.name_prefix = name_prefix

    def check(self, image: str, paths: Iterable[str]) -> ImageFacts:
        """Run the check in a throw-away container of `image`; CheckError if it cannot."""
        name = f"{self.name_prefix}-check-{secrets.token_hex(4)}"
        data = run_check(
            self.images.api, image, paths, name=name, uid=self.uid, timeout_s=self.timeout_s
        )
        facts = facts_from_json(data)
        assert facts is not None  # run_check made sure
        return facts

    def label(self, image: str, facts: ImageFacts) -> bool:
        """Put `facts` on `image` (a metadata-only step; the tag moves). False: already there."""
        attrs = self.images.inspect(image)
        if attrs is None:
            raise CheckError(f"{image} does not exist")
        current = facts_from_labels((attrs.get("Config") or {}).get("Labels"))
        if facts.same_as(current):
            return False
        new_id = self._build_label_step(attrs["Id"], {COMPATIBILITY_LABEL: facts.to_label()})
        self.images.tag(new_id, image)
        return True

    def _build_label_step(self, base_id: str, labels: dict[str, str]) -> str:
        dockerfile = io.BytesIO(f"FROM {base_id}\n".encode())
        image_id = None
        stream: Any = self.images.api.build(
            fileobj=dockerfile, labels=labels, rm=True, forcerm=True, pull=False, decode=True
        )
        for chunk in stream:
            if "error" in chunk:
                raise CheckError(f"could not label the image: {chunk['error'].strip()}")
            aux = chunk.get("aux") or {}
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
            text = chunk.get("stream") or ""
            if text.startswith("Successfully built "):
                image_id = image_id or text.split()[-1]
        if not image_id:
            raise DockerException("Docker built the label step but named no image")
        return image_id
