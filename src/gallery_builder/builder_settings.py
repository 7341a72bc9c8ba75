"""Everything the builder reads from its environment, validated once at start.

Only what an operator may change: the port, URL prefix, hub address and token file are
fixed by the hub-builder contract (gallery_common.hub_contract), not settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gallery_common.settings import SettingError, env_bool, env_float, env_int, env_str

# The stack's own services: a repository URL naming one of them is refused.
STACK_HOSTS = frozenset({"hub", "builder", "traefik", "localhost"})
ENGINES = ("gallery-docker-api", "docker")


@dataclass(frozen=True)
class BuilderSettings:
    state_dir: Path
    concurrency: int
    timeout_s: float
    max_memory_gb: float
    max_cpu: float
    allow_private_repositories: bool
    engine: str
    build_memory_gb: float = 4.0
    build_cpu: float = 2.0
    keep_previous: int = 1
    min_free_disk_gb: float = 5.0
    trim_slow_imports: bool = True
    # Set by compose, not by an operator: the stack's name, the internal network builds run
    # on (empty: Docker's default bridge, no sandbox) and the image that seals it.
    project: str = ""
    build_network: str = ""
    seal_image: str = ""

    @property
    def stack(self) -> str:
        """The stack label of the images built here: the compose project, else "local"."""
        return self.project or "local"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BuilderSettings:
        engine = env_str(env, "GALLERY_REPO2DOCKER_ENGINE", ENGINES[0])
        if engine not in ENGINES:
            raise SettingError(
                "GALLERY_REPO2DOCKER_ENGINE", "use gallery-docker-api (default) or docker"
            )
        return cls(
            state_dir=Path(env_str(env, "GALLERY_BUILDER_STATE_DIR", "/srv/builder/state")),
            concurrency=env_int(env, "GALLERY_BUILD_CONCURRENCY", 1, minimum=1, maximum=16),
            timeout_s=env_float(env, "GALLERY_BUILD_TIMEOUT", 3600, minimum=10),
            max_memory_gb=env_float(env, "GALLERY_MAX_MEMORY_GB", 16, minimum=0.1),
            max_cpu=env_float(env, "GALLERY_MAX_CPU", 8, minimum=0.01),
            allow_private_repositories=env_bool(env, "GALLERY_ALLOW_PRIVATE_REPOSITORIES", True),
            engine=engine,
            build_memory_gb=env_float(env, "GALLERY_BUILD_MEMORY_GB", 4, minimum=0.1),
            build_cpu=env_float(env, "GALLERY_BUILD_CPU", 2, minimum=0.01),
            keep_previous=env_int(env, "GALLERY_KEEP_PREVIOUS", 1, minimum=0, maximum=100),
            min_free_disk_gb=env_float(env, "GALLERY_MIN_FREE_DISK_GB", 5, minimum=0),
            trim_slow_imports=env_bool(env, "GALLERY_TRIM_SLOW_IMPORTS", True),
            project=env_str(env, "GALLERY_PROJECT"),
            build_network=env_str(env, "GALLERY_BUILD_NETWORK"),
            seal_image=env_str(env, "GALLERY_EGRESS_IMAGE"),
        )
