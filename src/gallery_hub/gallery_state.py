"""What a gallery card says: not built, building, ready, verified, broken or incompatible.

An example whose image is built is *ready*; once verified (verification.py) it is
*verified* or *broken* by its last verification, until the next one replaces it; and
*incompatible* whatever it was when the builder's image check found the hub cannot run it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gallery_common.gallery_file import Example
from gallery_hub.verification_results import VerificationResult

log = logging.getLogger("gallery_hub")

READY, BUILDING, NOT_BUILT = "ready", "building", "not-built"
VERIFIED, BROKEN = "verified", "broken"
# Built: a visitor can launch it (but a broken one only once it is fixed).
BUILT_STATES = (READY, VERIFIED, BROKEN)
# Built, but the image check says the hub cannot run this example (the reason is shown).
INCOMPATIBLE = "incompatible"


def example_state(
    example: Example,
    built: Collection[str],
    building: Collection[str],
    verification: VerificationResult | None = None,
) -> str:
    if example.image_name in built:
        if verification is None:
            return READY
        return VERIFIED if verification.passed else BROKEN
    if example.image_name in building:
        return BUILDING
    return NOT_BUILT


def ago(when: datetime, now: datetime) -> str:
    """`3 h ago`, `5 min ago`, `just now`: what a card says."""
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


@dataclass
class CachedValue:
    """A value fetched at most every `max_age_s` seconds; the last one on errors.

    Read from threads (asyncio.to_thread): when it is stale, one of them fetches and the
    others that arrive meanwhile wait for that fetch (twenty gallery pages at once made
    twenty Docker calls).
    """

    fetch: Callable[[], Any]
    max_age_s: float = 5.0
    empty: Callable[[], Any] = set  # the value when the first fetch fails
    _value: Any = None
    _at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _fresh(self) -> bool:
        return self._value is not None and time.monotonic() - self._at <= self.max_age_s

    def get(self) -> Any:
        if self._fresh():
            return self._value
        with self._lock:
            if not self._fresh():
                self._refresh()
            return self._value

    def _refresh(self) -> None:
        try:
            self._value = self.fetch()
        except Exception as e:  # the page must render even if a source is down
            what = getattr(self.fetch, "func", self.fetch)  # a functools.partial too
            log.warning("gallery state: %s failed: %s", getattr(what, "__name__", what), e)
            self._value = self._value if self._value is not None else self.empty()
        self._at = time.monotonic()


def builder_environments(api_url: str, token: str) -> list[dict]:
    """The latest build of every image, from the builder's environments API."""
    # api_url is fixed in the hub's configuration (http://builder:8090/...), never user input.
    request = urllib.request.Request(  # noqa: S310
        f"{api_url}/environments", headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
        return json.load(response)["environments"]


def in_progress(environments: list[dict]) -> set[str]:
    """Images the builder is building or has queued."""
    return {e["image"] for e in environments if e["state"] in ("queued", "building")}


def built_at(environments: list[dict]) -> dict[str, datetime]:
    """When the latest successful build of each image ended."""
    found = {}
    for e in environments:
        if e["state"] == "built" and e.get("finished_at"):
            found[e["image"]] = datetime.fromisoformat(e["finished_at"])
    return found
