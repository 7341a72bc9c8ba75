"""What happens after a build succeeds: the image check, then the data fill.

`AfterBuild` wraps the BuildRunner as the queue's runner, so both steps run inside the
build (its log, its timeout, Cancel) for the Environments page and `build-image` alike:

- the **check** (image_check) runs after every successful build, a reused one too (the
  paths gallery.yaml names may have changed), and labels the image when something changed;
- the **fill** (data_fill) runs after a build that made a new image (GALLERY_FILL_AFTER_BUILD),
  after every build with `build-image --fill-data`, and as a job of its own from the
  Environments page's **Fill data** (`queue_fill`): a build record whose run skips the build
  and fills the existing image. A fill that fails leaves a built image built, with the
  reason on the record; a fill asked for explicitly (the button, --fill-data) fails its record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gallery_builder.build_queue import Runner
from gallery_builder.build_request import BuildRequest
from gallery_builder.build_runner import BuildRunner, InBuildCheck, RunOutcome
from gallery_builder.build_store import ACTIVE_STATES, BuildRecord, BuildState
from gallery_builder.data_fill import DataFiller, FillSettings
from gallery_builder.docker_errors import describe_docker_error
from gallery_builder.docker_images import DockerImages
from gallery_builder.environments import Conflict, Environments
from gallery_builder.image_check import CheckError, ImageChecker, describe, gallery_paths
from gallery_common.gallery_file import Gallery, GalleryFileError, load_gallery
from gallery_common.image_compatibility import (
    COMPATIBILITY_LABEL,
    ImageFacts,
    facts_from_labels,
    image_problems,
    local_jupyterhub_major,
    path_problems,
)

log = logging.getLogger(__name__)


class AfterBuild:
    """A Runner: `inner` builds; then the image is checked and, when asked, its data filled."""

    def __init__(
        self,
        inner: Runner,
        *,
        images: DockerImages,
        gallery_file: Path | None,
        fill: FillSettings | None,
        fill_every_build: bool = False,
        on_line: Callable[[str], None] | None = None,
        hub_major: int | None = None,
    ) -> None:
        """`gallery_file`: where the examples' paths and data are (None: no gallery);
        `fill`: where fills run (None: never fill); `fill_every_build`: also after a reuse,
        and a failed fill fails the build (build-image --fill-data); `on_line` also gets
        every line of these steps (the terminal echo)."""
        self.inner = inner
        self.images = images
        self.gallery_file = gallery_file
        self.fill_settings = fill
        self.fill_every_build = fill_every_build
        self.on_line = on_line
        self.hub_major = hub_major if hub_major is not None else local_jupyterhub_major()
        project = fill.project if fill else "gallery"
        self.checker = ImageChecker(images, name_prefix=project)
        if isinstance(inner, BuildRunner):
            # The engine checks a new image before its last step, which adds the facts with
            # the other labels: no container of the published image, no relabelling.
            inner.in_build_check = InBuildCheck(self._paths_of, name_prefix=project)
        self.filler = DataFiller(images, fill) if fill else None
        self._fill_only: dict[str, str] = {}  # build id -> image: fill it, build nothing

    # --- the Runner protocol --------------------------------------------------------------

    async def run(
        self, build_id: str, request: BuildRequest, emit: Callable[[str], None]
    ) -> RunOutcome:
        started = time.monotonic()

        def say(line: str) -> None:
            line = f"[{time.monotonic() - started:7.2f} s] {line.rstrip()}\n"
            emit(line)
            if self.on_line is not None:
                self.on_line(line)

        fill_only = self._fill_only.pop(build_id, None)
        if fill_only is not None:
            say(f"Filling the data of {fill_only} (no build)")
            outcome = await asyncio.to_thread(self._existing, fill_only)
            fill, strict = True, True
        else:
            outcome = await self.inner.run(build_id, request, emit)
            fill = self.fill_every_build or (
                not outcome.reused and bool(self.fill_settings and self.fill_settings.after_build)
            )
            strict = self.fill_every_build
        if outcome.state != BuildState.BUILT or not outcome.image:
            return outcome
        gallery = self.gallery(say)
        if outcome.facts is not None or outcome.check_error is not None:
            facts = self._checked_in_build(outcome, say)
        else:
            facts = await self._check(outcome.image, gallery, say)
        if not fill or gallery is None:
            return outcome
        if self.filler is None:
            say("Data fill: not configured here (no users network); skipped")
            return outcome
        cancelled = threading.Event()
        try:
            result = await asyncio.to_thread(
                self.filler.fill, outcome.image, gallery, facts, self.hub_major, say, cancelled
            )
        except asyncio.CancelledError:
            cancelled.set()  # the running example finishes or times out; no next one starts
            raise
        except Exception as e:  # Docker went away, or a bug: the image itself is still fine
            log.exception("data fill of %s crashed", outcome.image)
            message = describe_docker_error(e)
            say(f"Data fill failed: {message}")
            result = None
            reason = f"data fill failed: {message}"
        else:
            reason = None if result.ok else result.summary()
        if reason is None:
            return outcome
        if strict:
            return dataclasses.replace(outcome, state=BuildState.FAILED, reason=reason)
        return dataclasses.replace(outcome, reason=f"built; {reason}")

    # --- the steps ------------------------------------------------------------------------

    def _existing(self, image: str) -> RunOutcome:
        """The outcome of a build that only names an image that is there (a fill job)."""
        labels = self.images.labels(image)
        if labels is None:
            return RunOutcome(BuildState.FAILED, image=image, reason=f"{image} does not exist")
        return RunOutcome(
            BuildState.BUILT,
            image=image,
            resolved_commit=labels.commit or None,
            image_size=self.images.size(image),
            reused=True,
        )

    def gallery(self, say: Callable[[str], None]) -> Gallery | None:
        """The gallery file as it is now; None when there is none or it is not valid."""
        if self.gallery_file is None or not self.gallery_file.is_file():
            return None
        try:
            return load_gallery(self.gallery_file)
        except GalleryFileError as e:
            say(f"Image check: gallery.yaml is not usable ({e}); its paths are not checked")
            return None

    def _paths_of(self, image: str) -> list[str]:
        """The paths gallery.yaml names for `image` now (for the check inside a build)."""
        return gallery_paths(self.gallery(lambda _line: None), image)

    def _checked_in_build(
        self, outcome: RunOutcome, say: Callable[[str], None]
    ) -> ImageFacts | None:
        """Log what the build's own check found (already on the image's labels)."""
        if outcome.facts is None:
            say(f"Image check failed: {outcome.check_error}")
            return None
        for line in describe(outcome.facts, self.hub_major):
            say(line)
        say(f"Image check: recorded on {outcome.image} (label {COMPATIBILITY_LABEL})")
        return outcome.facts

    async def _check(
        self, image: str, gallery: Gallery | None, say: Callable[[str], None]
    ) -> ImageFacts | None:
        """Check the image and label it; the facts (None when the check could not run)."""
        try:
            facts = await asyncio.to_thread(
                self.checker.check, image, gallery_paths(gallery, image)
            )
            for line in describe(facts, self.hub_major):
                say(line)
            if await asyncio.to_thread(self.checker.label, image, facts):
                say(f"Image check: recorded on {image} (label {COMPATIBILITY_LABEL})")
            return facts
        except CheckError as e:
            say(f"Image check failed: {e}")
        except Exception as e:  # the check must never turn a good build into a crash
            log.exception("image check of %s crashed", image)
            say(f"Image check failed: {describe_docker_error(e)}")
        return None

    # --- the Environments page's "Fill data" ----------------------------------------------

    def fill_only(self, build_id: str, image: str) -> None:
        """Make the queued build `build_id` a fill of `image` (call before its run starts)."""
        self._fill_only[build_id] = image


async def queue_fill(environments: Environments, after: AfterBuild, build_id: str) -> BuildRecord:
    """Queue a fill of the image of build `build_id`: a new record, built from nothing.

    NotFound for an unknown build; Conflict when the image is missing, a build of it is
    queued or running, gallery.yaml gives it no data, or fills are not configured here.
    """
    record = await environments.get(build_id)
    if after.filler is None:
        raise Conflict("data fills are not configured on this builder (no users network)")
    if not await asyncio.to_thread(environments.images.exists, record.image):
        raise Conflict(f"{record.image} is not built: build it first")
    siblings = await asyncio.to_thread(environments.store.builds_of_image, record.image)
    if any(r.state in ACTIVE_STATES for r in siblings):
        raise Conflict(f"a build of {record.image} is queued or running: wait for it")
    gallery = after.gallery(lambda _line: None)
    if gallery is None or gallery.data_for(record.image) is None:
        name = record.image.split(":", 1)[0]
        raise Conflict(f"gallery.yaml gives images.{name} no `data:` folder to fill")
    request = BuildRequest(
        repository=record.repository,
        ref=record.ref,
        name=record.name,
        memory_gb=record.memory_gb,
        cpu=record.cpu,
    )
    new = environments.queue.enqueue(request)
    # Before the worker can pick it up (enqueue does not yield to the event loop).
    after.fill_only(new.id, record.image)
    if new.image != record.image:
        await asyncio.to_thread(environments.store.set_image, new.id, record.image)
    return await environments.get(new.id)


def compatibility_view(
    facts: ImageFacts | None, gallery: Gallery | None, image: str, hub_major: int | None
) -> dict:
    """What the Environments page shows about an image: checked, problems, versions."""
    if facts is None:
        return {"checked": False, "problems": []}
    problems = image_problems(facts, hub_major)
    for path in gallery_paths(gallery, image) or sorted(facts.paths):
        problems += path_problems(facts, path)
    return {
        "checked": True,
        "problems": problems,
        "jupyterhub": facts.jupyterhub,
        "voila": facts.voila,
        "jupytext": facts.jupytext,
        "checked_at": facts.checked_at,
    }


async def annotate(listed: list[dict], after: AfterBuild | None) -> list[dict]:
    """The environments list (each entry's JSON, with its `image`), each with what the image
    check found (`check`)."""
    if after is None:
        return listed
    gallery = await asyncio.to_thread(after.gallery, lambda _line: None)

    def facts_of(image: str) -> ImageFacts | None:
        attrs = after.images.inspect(image)
        return facts_from_labels((attrs.get("Config") or {}).get("Labels")) if attrs else None

    out = []
    for entry in listed:
        facts = await asyncio.to_thread(facts_of, entry["image"])
        check = compatibility_view(facts, gallery, entry["image"], after.hub_major)
        out.append({**entry, "check": check})
    return out
