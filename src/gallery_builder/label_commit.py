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
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from docker.errors import NotFound


def commit_fits(config: Mapping[str, Any]) -> bool:
    """True when a commit keeps the image's configuration (it has a command or entrypoint)."""
    return bool(config.get("Cmd") or config.get("Entrypoint"))


def commit_labels(
    api: Any, image_id: str, config: Mapping[str, Any], labels: Mapping[str, str], tag: str
) -> str:
    """The id of `image_id` with `labels` added (on a clash they win), tagged `tag` if given.

    `config` is the image's own (`Config` of its inspect data). Docker errors propagate.
    """
    container = api.create_container(
        image=image_id,
        command=["/bin/sh", "-c", f"#(nop) LABEL {' '.join(sorted(labels))}"],
        network_disabled=True,
        host_config=api.create_host_config(network_mode="none"),
    )
    try:
        repository, _, name = tag.rpartition(":") if ":" in tag else (tag, "", "")
        committed = api.commit(
            container["Id"],
            repository=repository or None,
            tag=(name or "latest") if repository else None,
            conf={
                **config,
                "Image": image_id,
                "Labels": {**(config.get("Labels") or {}), **labels},
            },
        )
    finally:
        with contextlib.suppress(NotFound):
            # v: an image's VOLUME gets an anonymous volume at create; it goes too.
            api.remove_container(container["Id"], v=True, force=True)
    return str(committed["Id"])
