"""The hub process: JupyterHub with two rules of the gallery's stack.

- Forwarded client headers count only when they come from the hub's own proxy
  (see forwarded_headers.py).
- The gallery's own log messages (logger `gallery_hub`) go to the hub's log.
- User servers outlive a hub restart (`cleanup_servers = False`), but not the stack: when
  the hub stops after the rest of the stack (traefik and builder) has stopped, as in
  `docker compose down` or `stop`, it stops the user servers too, so the stack's network
  and volumes can be removed. `docker compose restart hub` and `up -d` after a settings
  change stop only the hub: the servers keep running.

Run as `python -m gallery_hub.hub_app -f jupyterhub_config.py` (the hub image's command).
"""

from __future__ import annotations

import asyncio
import logging

import docker
from jupyterhub.app import JupyterHub
from traitlets import List, Unicode

from gallery_hub.forwarded_headers import trust_forwarded_headers_only_from_loopback
from gallery_hub.sqlite_wal import use_write_ahead_log


def running_services(project: str) -> set[str]:
    """Compose services of `project` with a running (or restarting) container."""
    client = docker.from_env(timeout=10)
    try:
        containers = client.containers.list(
            filters={"label": f"com.docker.compose.project={project}"}
        )
        return {
            c.labels.get("com.docker.compose.service", "")
            for c in containers
            if c.status in ("running", "restarting")
        }
    finally:
        client.close()


class GalleryHub(JupyterHub):
    compose_project = Unicode(
        "",
        config=True,
        help="The stack's compose project; empty: user servers are never stopped with it.",
    )
    stack_services = List(
        Unicode(),
        ["traefik", "builder"],
        config=True,
        help="Services that stop before the hub only when the whole stack stops.",
    )

    def init_logging(self):
        super().init_logging()
        # The gallery's own messages, in the hub's log with the hub's format and level.
        gallery = logging.getLogger("gallery_hub")
        gallery.handlers = list(self.log.handlers)
        gallery.setLevel(self.log.level)
        gallery.propagate = False

    async def initialize(self, *args, **kwargs):
        trust_forwarded_headers_only_from_loopback()
        use_write_ahead_log()  # before JupyterHub opens its database
        await super().initialize(*args, **kwargs)

    async def cleanup(self):
        if not self.cleanup_servers and await self.stack_is_stopping():
            self.log.info("The rest of the stack has stopped: stopping the user servers too")
            self.cleanup_servers = True
        await super().cleanup()

    async def stack_is_stopping(self) -> bool:
        if not self.compose_project:
            return False
        try:
            running = await asyncio.to_thread(running_services, self.compose_project)
        except Exception as e:  # no answer from Docker: keep the servers
            self.log.warning("Could not ask Docker whether the stack is stopping: %s", e)
            return False
        return not running.intersection(self.stack_services)


main = GalleryHub.launch_instance

if __name__ == "__main__":
    main()
