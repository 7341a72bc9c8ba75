"""A kernel started before the click: the kernel manager of warm servers.

Runs inside a user container, not in the hub: the spawner copies this file into warm
servers (`/opt/neurolang-gallery/python/`) and starts them with
`--ServerApp.kernel_manager_class=gallery_spare_kernel.SpareKernelManager`. It needs only
jupyter_server and jupyter_client, which every image the hub starts has.

A warm server renders its example once and then stops that kernel. At that moment this
manager starts one spare kernel for the same notebook (same kernel, same folder) and
waits until it answers. The next render, the claimed visitor's, gets the spare instead of
a kernel that would spend ~0.5 s importing itself. The render's own environment (Voila
puts the request, e.g. a share link's QUERY_STRING, in the kernel's environment) is set
in the spare before it is handed over, so the notebook sees what a new kernel would have.
One spare per server life: later renders (reloads) start kernels as usual. Only Python
kernels get a spare (the hand-over runs Python); anything that goes wrong with the spare
falls back to an ordinary start.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from traitlets import Integer

HAND_OVER_TIMEOUT_S = 10


class SpareKernelManager(AsyncMappingKernelManager):
    """Keeps one kernel started ahead for the next render of the notebook last rendered."""

    spares = Integer(1, config=True, help="How many spare kernels this server starts in its life.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last_start: tuple[str | None, dict[str, Any]] | None = None
        self._spare: asyncio.Task | None = None
        self._spare_for: tuple[str | None, str | None, dict[str, str]] | None = None

    async def start_kernel(self, *, kernel_id=None, path=None, **kwargs: Any) -> str:
        if kernel_id is None and self._spare is not None:
            spare = await self._take_spare(path, kwargs)
            if spare is not None:
                return spare
        started = await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)
        self._last_start = (path, dict(kwargs))
        return started

    async def shutdown_kernel(self, kernel_id, now=False, restart=False):
        result = await super().shutdown_kernel(kernel_id, now=now, restart=restart)
        if not restart and self._spare_wanted():
            # The first render is over: what it started, a spare starts now, ahead of time.
            self.spares -= 1
            path, kwargs = self._last_start
            self._spare = asyncio.ensure_future(self._start_spare(path, kwargs))
        return result

    def _spare_wanted(self) -> bool:
        """A kernel was started and none runs now, no spare waits, and one is still due."""
        return (
            self.spares > 0
            and self._spare is None
            and self._last_start is not None
            and not self.list_kernels()
        )

    async def _start_spare(self, path: str | None, kwargs: dict[str, Any]) -> str | None:
        name = kwargs.get("kernel_name") or self.default_kernel_name
        spec = await asyncio.to_thread(self.kernel_spec_manager.get_kernel_spec, name)
        if spec.language != "python":
            return None
        kernel_id = await super().start_kernel(path=path, **kwargs)
        self._spare_for = (name, path, dict(kwargs.get("env") or {}))
        client = self.get_kernel(kernel_id).client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
        finally:
            client.stop_channels()
        self.log.info("Spare kernel %s is ready for the next render (in %r)", kernel_id, path)
        return kernel_id

    async def _take_spare(self, path: str | None, kwargs: dict[str, Any]) -> str | None:
        """The spare's id, told this render's environment; None when it does not fit."""
        spare, self._spare = self._spare, None
        name = kwargs.get("kernel_name") or self.default_kernel_name
        try:
            kernel_id = await spare
            if kernel_id is None or kernel_id not in self:
                return None
            spare_name, spare_path, spare_env = self._spare_for or (None, None, {})
            if (spare_name, spare_path) != (name, path):
                await super().shutdown_kernel(kernel_id)
                return None
            await self._set_environment(kernel_id, spare_env, dict(kwargs.get("env") or {}))
        except Exception:
            self.log.exception("The spare kernel could not be used; starting a new one")
            return None
        self.log.info("A render got the spare kernel %s (in %r)", kernel_id, path)
        return kernel_id

    async def _set_environment(self, kernel_id: str, had: dict, wanted: dict) -> None:
        changed = {k: v for k, v in wanted.items() if had.get(k) != v}
        gone = [k for k in had if k not in wanted]
        if not changed and not gone:
            return
        # The values travel as one JSON text in a Python string literal: none becomes code.
        # (json.dumps writes str subclasses, like Voila's variable names, as plain text.)
        data = json.dumps({"set": changed, "unset": gone})
        code = (
            f"(lambda d, os=__import__('os'): (os.environ.update(d['set']), "
            f"[os.environ.pop(k, None) for k in d['unset']]))(__import__('json').loads({data!r}))"
        )
        client = self.get_kernel(kernel_id).client()
        client.start_channels()
        try:
            reply = await client.execute(
                code,
                silent=True,
                store_history=False,
                allow_stdin=False,
                reply=True,
                timeout=HAND_OVER_TIMEOUT_S,
            )
        finally:
            client.stop_channels()
        if reply["content"].get("status") != "ok":
            raise RuntimeError(f"setting the render's environment failed: {reply['content']}")
