"""The loop of the gallery's in-hub components (warm pool, verification)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("gallery_hub")


async def run_steps(
    step: Callable[[], Awaitable[bool]], wake: asyncio.Event, interval_s: float, what: str
) -> None:
    """Run `step` for ever: again at once when it says there is more, else after
    `interval_s` or when `wake` is set. A failing step is logged, never the end of it."""
    while True:
        try:
            more = await step()
        except Exception:
            log.exception("%s: a step failed", what)
            more = False
        if not more:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval_s)
        wake.clear()
