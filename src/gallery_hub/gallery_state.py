"""Which gallery examples can run now: their image is built, being built, or not yet."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from gallery_common.gallery_file import Example

log = logging.getLogger("gallery_hub")

READY, BUILDING, NOT_BUILT = "ready", "building", "not-built"


def example_state(example: Example, built: set[str], building: set[str]) -> str:
    if example.image_name in built:
        return READY
    if example.image_name in building:
        return BUILDING
    return NOT_BUILT


@dataclass
class CachedValue:
    """A value fetched at most every `max_age_s` seconds; the last one on errors."""

    fetch: Callable[[], set[str]]
    max_age_s: float = 5.0
    _value: set[str] | None = None
    _at: float = 0.0

    def get(self) -> set[str]:
        now = time.monotonic()
        if self._value is None or now - self._at > self.max_age_s:
            try:
                self._value = self.fetch()
            except Exception as e:  # the page must render even if a source is down
                name = getattr(self.fetch, "func", self.fetch).__name__  # a partial's function
                log.warning("gallery state: %s failed: %s", name, e)
                self._value = self._value or set()
            self._at = now
        return self._value


def builds_in_progress(api_url: str, token: str) -> set[str]:
    """Images the builder is building or has queued (from its environments API)."""
    # api_url is fixed in the hub's configuration (http://builder:8090/...), never user input.
    request = urllib.request.Request(  # noqa: S310
        f"{api_url}/environments", headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
        environments = json.load(response)["environments"]
    return {e["image"] for e in environments if e["state"] in ("queued", "building")}
