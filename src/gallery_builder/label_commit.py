"""The build's last step when it only adds labels: a commit, not a second build.

The classic builder's LABEL step creates a container of the image and commits it with the
labels added to the image's configuration; a build request of its own also costs the
daemon ~0.08 s before its first step. The engine does the same two things directly
(about half the time): it creates a container of the image that never starts (no
process, no network; its layer stays empty, so the commit adds none), commits it with the
image's own configuration plus the labels, and removes it. The image is the LABEL step's:
the same layers and configuration, its history entry `#(nop) LABEL <keys>` as the
builder writes it.

A commit takes the fields that the configuration it is given leaves empty from the
container's: user, environment, working directory and the others are the image's own (the
container is made from it unchanged), except the command, which is this module's. So an
image with neither a command nor an entrypoint (it would get that command) gets the LABEL
build step instead (`commit_fits`).

The container can be made ahead, while the image check runs (`CommitAhead`): it depends
only on the image and on the label keys (its command is the history entry), which are
known before the check unless the check fails (then it has one key fewer, and a container
for the keys the labels really have is made when they are known). When the facts the check
will find can be foreseen (those of the image the build replaces), the whole commit is made
while the check runs (`CommitGuess`), and kept only if the labels are exactly the ones the
check then gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from docker.errors import NotFound


def commit_fits(config: Mapping[str, Any]) -> bool:
    """True when a commit keeps the image's configuration (it has a command or entrypoint)."""
    return bool(config.get("Cmd") or config.get("Entrypoint"))


def commit_container(api: Any, image_id: str, keys: Iterable[str]) -> str:
    """A container of `image_id` that never starts, to commit with labels named `keys`."""
    container = api.create_container(
        image=image_id,
        command=["/bin/sh", "-c", f"#(nop) LABEL {' '.join(sorted(keys))}"],
        network_disabled=True,
        host_config=api.create_host_config(network_mode="none"),
    )
    return str(container["Id"])


def remove_commit_container(api: Any, container: str) -> None:
    """Remove a commit container (and an anonymous volume an image's VOLUME gave it)."""
    with contextlib.suppress(NotFound):
        api.remove_container(container, v=True, force=True)


@dataclass
class _MadeAhead:
    """Something being made in the background (in `future`) that the last step may take once."""

    future: Future[str]
    taken: bool = field(default=False, init=False)

    def _first_result(self) -> str | None:
        """What was made, on the first call only; None when making it failed (the last step
        then makes its own, and says why) or on a later call."""
        if self.taken:
            return None
        self.taken = True
        try:
            return self.future.result()
        except Exception:
            return None


@dataclass
class CommitAhead(_MadeAhead):
    """A commit container being made (in `future`) for the labels named `keys`."""

    keys: frozenset[str]

    @classmethod
    def start(
        cls, submit: Callable[..., Future[str]], api: Any, image_id: str, keys: Iterable[str]
    ) -> CommitAhead:
        """Make the container in the background (`submit`: an executor's)."""
        keys = frozenset(keys)
        return cls(submit(commit_container, api, image_id, keys), keys)

    def take(self, api: Any, keys: Iterable[str]) -> str | None:
        """The container when it was made for exactly `keys`; else None (it is removed).

        Only the first call can take it; later ones get None."""
        container = self._first_result()
        if container is None:
            return None
        if frozenset(keys) == self.keys:
            return container
        remove_commit_container(api, container)
        return None

    def discard(self, api: Any) -> None:
        """Remove the container unless it was taken."""
        self.take(api, ())


@dataclass
class CommitGuess(_MadeAhead):
    """The labels' commit being made (in `future`, untagged) with `labels`, the labels the
    image check will most likely give: taken if they are the ones, else removed."""

    labels: dict[str, str]

    @classmethod
    def start(
        cls,
        submit: Callable[..., Future[str]],
        api: Any,
        image_id: str,
        config: Mapping[str, Any],
        labels: Mapping[str, str],
        made: Callable[[str], object] = lambda image: None,
    ) -> CommitGuess:
        """Commit in the background (`submit`: an executor's); `made(id)` once it is there."""

        def commit() -> str:
            image = commit_labels(api, image_id, config, labels, "")
            made(image)
            return image

        return cls(submit(commit), dict(labels))

    def take(self, api: Any, labels: Mapping[str, str] | None) -> str | None:
        """The committed image when it has exactly `labels`; else None (it is removed).

        Only the first call can take it; later ones get None."""
        image = self._first_result()
        if image is None:
            return None
        if labels is not None and dict(labels) == self.labels:
            return image
        remove_guessed_image(api, image)
        return None

    def discard(self, api: Any) -> None:
        """Remove the image unless it was taken."""
        self.take(api, None)


def remove_guessed_image(api: Any, image: str) -> None:
    """Remove a commit that was not taken, never its parent (the repository's build, which
    is untagged: pruning would take it along)."""
    with contextlib.suppress(NotFound):
        api.remove_image(image, noprune=True)


def commit_labels(
    api: Any,
    image_id: str,
    config: Mapping[str, Any],
    labels: Mapping[str, str],
    tag: str,
    *,
    container: str | None = None,
) -> str:
    """The id of `image_id` with `labels` added (on a clash they win), tagged `tag` if given.

    `config` is the image's own (`Config` of its inspect data); `container` one made ahead
    for these labels' keys (`commit_container`), removed here as one made here is. Docker
    errors propagate.
    """
    if container is None:
        container = commit_container(api, image_id, labels)
    try:
        repository, _, name = tag.rpartition(":") if ":" in tag else (tag, "", "")
        committed = api.commit(
            container,
            repository=repository or None,
            tag=(name or "latest") if repository else None,
            conf={
                **config,
                "Image": image_id,
                "Labels": {**(config.get("Labels") or {}), **labels},
            },
        )
    finally:
        remove_commit_container(api, container)
    return str(committed["Id"])
