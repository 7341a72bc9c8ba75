"""Everything the hub reads from its environment, validated once at start."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gallery_common.settings import (
    SettingError,
    env_bool,
    env_bytes,
    env_float,
    env_int,
    env_str,
    parse_bytes,
)
from gallery_hub.admin_password import MIN_PASSWORD_LENGTH

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
DOCKER_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class HubSettings:
    state_dir: Path
    project: str
    admin_user: str
    admin_password: str
    user_network: str
    data_volume: str
    data_mount_path: str
    data_read_only: bool
    default_mem_limit: int
    default_cpu_limit: float
    gallery_file: Path
    thumbnails_dir: Path
    idle_timeout_s: int
    max_age_s: int
    max_servers: int
    max_servers_per_visitor: int
    launches_per_minute: int
    stack_network: str
    user_egress: str
    user_tmp_size: str
    user_log_max_size: str
    user_disk_quota: str
    min_free_disk_gb: float
    max_memory_gb: float
    max_cpu: float
    https: bool
    domain: str
    egress_image: str
    warm_max: int
    start_concurrency: int
    verify: bool
    verify_every_h: float
    verify_timeout_s: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HubSettings:
        admin_user = env_str(env, "GALLERY_ADMIN_USER", "admin")
        if not USERNAME_PATTERN.match(admin_user):
            raise SettingError(
                "GALLERY_ADMIN_USER",
                "use lower-case letters, digits, '.', '_' or '-' (at most 63 characters)",
            )
        admin_password = env.get("GALLERY_ADMIN_PASSWORD", "")
        if admin_password and len(admin_password) < MIN_PASSWORD_LENGTH:
            raise SettingError(
                "GALLERY_ADMIN_PASSWORD",
                f"must be at least {MIN_PASSWORD_LENGTH} characters; leave it empty to "
                "have one generated",
            )
        data_mount_path = env_str(env, "GALLERY_DATA_MOUNT_PATH", "/home/jovyan/gallery/data")
        if not data_mount_path.startswith("/"):
            raise SettingError("GALLERY_DATA_MOUNT_PATH", "must be an absolute path")
        return cls(
            state_dir=Path(env_str(env, "GALLERY_HUB_STATE_DIR", "/srv/jupyterhub/state")),
            project=_docker_name(env, "GALLERY_PROJECT", "neurolang-gallery"),
            admin_user=admin_user,
            admin_password=admin_password,
            user_network=_docker_name(env, "GALLERY_USER_NETWORK", "neurolang-gallery-users"),
            data_volume=_docker_name(env, "GALLERY_DATA_VOLUME", "neurolang-gallery-data"),
            data_mount_path=data_mount_path,
            data_read_only=env_bool(env, "GALLERY_DATA_READ_ONLY", True),
            default_mem_limit=env_bytes(env, "GALLERY_DEFAULT_MEM_LIMIT", "2G"),
            default_cpu_limit=env_float(
                env, "GALLERY_DEFAULT_CPU_LIMIT", 1.0, minimum=0.01, maximum=1024
            ),
            gallery_file=Path(env_str(env, "GALLERY_FILE_PATH", "/srv/gallery/gallery.yaml")),
            thumbnails_dir=Path(env_str(env, "GALLERY_THUMBNAILS_PATH", "/srv/gallery/thumbnails")),
            idle_timeout_s=env_int(env, "GALLERY_IDLE_TIMEOUT", 600, minimum=10),
            max_age_s=env_int(env, "GALLERY_MAX_AGE", 14400, minimum=60),
            max_servers=env_int(env, "GALLERY_MAX_SERVERS", 20, minimum=1),
            max_servers_per_visitor=env_int(
                env, "GALLERY_MAX_SERVERS_PER_VISITOR", 3, minimum=1, maximum=20
            ),
            launches_per_minute=env_int(env, "GALLERY_LAUNCHES_PER_MINUTE", 10, minimum=1),
            stack_network=_docker_name(env, "GALLERY_STACK_NETWORK", "neurolang-gallery_gallery"),
            user_egress=_choice(env, "GALLERY_USER_EGRESS", "proxy", ("proxy", "none")),
            user_tmp_size=_size(env, "GALLERY_USER_TMP_SIZE", "256m"),
            user_log_max_size=_size(env, "GALLERY_USER_LOG_MAX_SIZE", "10m"),
            user_disk_quota=_size(env, "GALLERY_USER_DISK_QUOTA", "10G", allow_off=True),
            min_free_disk_gb=env_float(env, "GALLERY_MIN_FREE_DISK_GB", 5.0, minimum=0),
            max_memory_gb=env_float(env, "GALLERY_MAX_MEMORY_GB", 16.0, minimum=0.01),
            max_cpu=env_float(env, "GALLERY_MAX_CPU", 8.0, minimum=0.01),
            https=bool(env_str(env, "GALLERY_DOMAIN") or env_str(env, "GALLERY_TLS_CERT_FILE")),
            domain=env_str(env, "GALLERY_DOMAIN"),
            egress_image=env_str(env, "GALLERY_EGRESS_IMAGE", "neurolang-gallery/egress:latest"),
            warm_max=env_int(env, "GALLERY_WARM_MAX", 5, minimum=0, maximum=200),
            start_concurrency=env_int(env, "GALLERY_START_CONCURRENCY", 2, minimum=1, maximum=64),
            verify=env_bool(env, "GALLERY_VERIFY", True),
            verify_every_h=env_float(env, "GALLERY_VERIFY_EVERY_H", 24.0, minimum=0),
            verify_timeout_s=env_int(env, "GALLERY_VERIFY_TIMEOUT", 300, minimum=10, maximum=3600),
        )


def _docker_name(env: Mapping[str, str], name: str, default: str) -> str:
    value = env_str(env, name, default)
    if not DOCKER_NAME_PATTERN.match(value):
        raise SettingError(name, f"not a valid Docker object name: {value!r}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(env, name, default).lower()
    if value not in choices:
        raise SettingError(name, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _size(env: Mapping[str, str], name: str, default: str, *, allow_off: bool = False) -> str:
    """A size in Docker's notation (`512m`, `10G`), checked; `off` (or `0`) where allowed."""
    value = env_str(env, name, default)
    if allow_off and value.lower() in ("0", "off"):
        return ""
    parse_bytes(name, value)
    return value
