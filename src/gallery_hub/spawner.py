"""DockerSpawner with the gallery's safety defaults for every user container."""

from __future__ import annotations

from dockerspawner import DockerSpawner
from traitlets import Integer, default


class GallerySpawner(DockerSpawner):
    """A DockerSpawner whose containers are unprivileged, limited and never see the socket."""

    pids_limit = Integer(
        512,
        config=True,
        help="Most processes a user container may run (Docker --pids-limit).",
    )

    @default("remove")
    def _default_remove(self):
        return True

    @default("extra_host_config")
    def _default_extra_host_config(self):
        return {
            "security_opt": ["no-new-privileges"],
            "pids_limit": self.pids_limit,
            "cap_drop": ["ALL"],
        }
