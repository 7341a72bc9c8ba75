"""The gallery's limits as JupyterHub configuration, shared by the pages and the spawner.

`jupyterhub_config.py` sets them from the environment (GALLERY_MAX_SERVERS, ...); a file in
`config.d/` may change them like any other setting, e.g. `c.GalleryLimits.max_servers = 50`.
"""

from __future__ import annotations

import shutil

from traitlets import Float, Integer
from traitlets.config import SingletonConfigurable

from gallery_hub.admission import Admission
from gallery_hub.launch_limits import LaunchRateLimiter
from gallery_hub.start_queue import StartQueue


def free_disk_bytes() -> int:
    """Free space of the Docker data root, as this container sees it.

    The hub's own root filesystem is an overlay on Docker's data root (the overlay2 and
    btrfs drivers), so its free space is the data root's.
    """
    return shutil.disk_usage("/").free


class GalleryLimits(SingletonConfigurable):
    """Caps on anonymous visitors' servers; one instance per hub process."""

    max_servers = Integer(
        20, config=True, help="Examples (visitors' servers) that may run at once, in total."
    )
    max_servers_per_visitor = Integer(3, config=True, help="Examples one visitor may run.")
    launches_per_minute = Integer(
        10, config=True, help="Launches one client address may make per minute."
    )
    min_free_disk_gb = Float(
        5,
        config=True,
        help="Refuse new servers while Docker's data root has less free space (GB); 0: off.",
    )

    start_concurrency = Integer(
        2,
        config=True,
        help="Servers that start at once; more launches wait in line (their place shown).",
    )

    _admission: Admission | None = None
    _start_queue: StartQueue | None = None

    def start_queue(self) -> StartQueue:
        """The one line of starts of this hub (visitors' and everyone else's)."""
        if self._start_queue is None:
            self._start_queue = StartQueue(self.start_concurrency)
        return self._start_queue

    def admission(self) -> Admission:
        """The one Admission of this hub (its reservations are shared by every caller)."""
        if self._admission is None:
            self._admission = Admission(
                max_servers=self.max_servers,
                max_per_visitor=self.max_servers_per_visitor,
                limiter=LaunchRateLimiter(self.launches_per_minute),
                min_free_bytes=int(self.min_free_disk_gb * 1024**3),
                free_bytes=free_disk_bytes,
            )
        return self._admission
