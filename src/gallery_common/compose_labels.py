"""Labels that make a container the stack starts by itself part of its compose project.

User servers (the hub) and the data fill's containers (the builder) are labelled as the
never-started compose service `user-servers`, so `docker compose --profile user-servers ps`
lists them and `docker compose --profile user-servers down` removes them even when the
service that started them cannot.
"""

from __future__ import annotations

USER_SERVERS_SERVICE = "user-servers"


def user_server_labels(project: str) -> dict[str, str]:
    """The compose labels of one such container of `project` (none without a project)."""
    if not project:
        return {}
    return {
        "com.docker.compose.project": project,
        "com.docker.compose.service": USER_SERVERS_SERVICE,
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.container-number": "1",
        # compose lists only containers that carry these two.
        "com.docker.compose.version": "2",
        "com.docker.compose.config-hash": "user-server",
    }
