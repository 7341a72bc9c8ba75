"""A build box made ahead of the next build, so that no build waits for its sandbox.

Making a box (`build_box`: a sandbox container on the builds network that loads its
firewall) takes 0.4-0.7 s, longer than git's fetch of a small repository: it was on every
build's critical path. `SpareBoxes` keeps one box ready between builds. A build takes it,
after checking that it still fits (its sandbox runs, and the egress proxy is still at the
address its firewall lets out); otherwise the build makes its own box, as without a spare.
The replacement is made after the build (`make_spare`, from the runner's housekeeping),
not during it: a build's steps have the machine's cores to themselves. A build that comes
while the spare is still being made waits for it (it is ready sooner than a new box).

A spare is a box like any other: the same limits, firewall, capabilities and labels (its
build-box label says "spare" instead of a build's id), so the builder's leftover sweep at
start removes one that a killed builder left behind. One box serves one build only and is
removed after it, as before. The builder removes its spare when it stops.

Synchronous Docker calls: run them in a thread.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from docker.errors import DockerException, NotFound
from requests.exceptions import RequestException

from gallery_builder.build_box import Box, BoxError, BoxSettings, BuildBoxes

log = logging.getLogger(__name__)

SPARE = "spare"


class SpareBoxes(BuildBoxes):
    """BuildBoxes that keep one sealed box made ahead, for the next build to take."""

    def __init__(
        self, api: Callable[[], Any], settings: BoxSettings, *, seal_timeout_s: float = 60
    ) -> None:
        super().__init__(api, settings, seal_timeout_s=seal_timeout_s)
        self._lock = threading.Condition()
        self._spare: Box | None = None
        self._making = False
        self._stopped = False

    def open(self, build_id: str) -> Box:
        """The spare, when there is one that still fits; else a box made for `build_id`.

        A spare being made is waited for: it is ready sooner than a new box would be.
        """
        with self._lock:
            self._lock.wait_for(lambda: not self._making, timeout=self.seal_timeout_s)
            spare, self._spare = self._spare, None
        if spare is not None:
            if self._fits(spare):
                log.info("build %s runs in the spare build box %s", build_id[:12], spare.name)
                return spare
            log.warning("the spare build box %s no longer fits; making another", spare.name)
            self.close(spare)
        return super().open(build_id)

    def make_spare(self) -> None:
        """Make the spare, unless there is one (or one is being made, or the builder stops).

        A box that cannot be made is logged, not raised: the next build makes its own.
        """
        if not self.sealed:
            return
        with self._lock:
            if self._spare is not None or self._making or self._stopped:
                return
            self._making = True
        box = None
        try:
            box = self._make(f"{SPARE}-{secrets.token_hex(4)}", SPARE)
        except BoxError as e:
            log.warning("could not make a spare build box: %s", e)
        finally:
            with self._lock:
                self._making = False
                if box is not None and not self._stopped:
                    self._spare, box = box, None
                self._lock.notify_all()
        if box is not None:  # the builder stopped meanwhile
            self.close(box)

    def remove_spare(self) -> None:
        """Remove the spare; no other is made after this (the builder stops)."""
        with self._lock:
            self._stopped = True
            spare, self._spare = self._spare, None
        if spare is not None:
            self.close(spare)

    def _fits(self, box: Box) -> bool:
        """True when the box's sandbox runs and its firewall lets out the proxy's address."""
        try:
            api = self._api()
            state = api.inspect_container(box.container_id).get("State") or {}
            return bool(state.get("Running")) and self.proxy_address(api) == box.proxy
        except (BoxError, NotFound):
            return False
        except (DockerException, RequestException) as e:
            log.warning("could not check the spare build box: %s", e)
            return False
