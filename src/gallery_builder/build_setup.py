"""The builder's parts made from its settings, the same for the service and build-image:
the fetch guard, the build boxes, the request rules and the runner."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

from gallery_builder.build_box import BoxSettings, BuildBoxes
from gallery_builder.build_runner import BuildRunner
from gallery_builder.builder_settings import STACK_HOSTS, BuilderSettings
from gallery_builder.docker_images import CachedGateways, DockerImages
from gallery_builder.fetch_guard import FetchGuard
from gallery_builder.repository_policy import Resolver
from gallery_builder.spare_box import SpareBoxes


def fetch_guard(
    settings: BuilderSettings, images: DockerImages, resolve: Resolver | None = None
) -> FetchGuard:
    """The repository policy at fetch time, with the host's gateways asked of Docker."""
    return FetchGuard(
        allow_private=settings.allow_private_repositories,
        blocked_hosts=STACK_HOSTS,
        host_addresses=CachedGateways(images),
        resolve=resolve or socket.getaddrinfo,
    )


def build_boxes(
    settings: BuilderSettings, images: DockerImages, *, spare: bool = False
) -> BuildBoxes:
    """Limits for every build, and a sealed sandbox when a builds network is configured;
    with `spare`, one sandbox made ahead of the next build (the service's)."""
    return (SpareBoxes if spare else BuildBoxes)(
        lambda: images.api,
        BoxSettings(
            memory_gb=settings.build_memory_gb,
            cpu=settings.build_cpu,
            network=settings.build_network if settings.seal_image else "",
            project=settings.project,
            seal_image=settings.seal_image,
        ),
    )


def build_runner(
    settings: BuilderSettings,
    images: DockerImages,
    *,
    guard: FetchGuard | None = None,
    reuse_existing: bool = True,
    on_line: Callable[[str], None] | None = None,
    base_env: Mapping[str, str] | None = None,
    spare_box: bool = False,
    **kwargs: Any,
) -> BuildRunner:
    """The runner the settings describe (engine, box, retention, disk floor, trim); with
    `spare_box` it keeps a build box made ahead of the next build."""
    return BuildRunner(
        images=images,
        engine=settings.engine,
        guard=guard or fetch_guard(settings, images),
        boxes=build_boxes(settings, images, spare=spare_box),
        keep_previous=settings.keep_previous,
        min_free_disk_gb=settings.min_free_disk_gb,
        trim_slow_imports=settings.trim_slow_imports,
        stack=settings.stack,
        reuse_existing=reuse_existing,
        on_line=on_line,
        base_env=base_env,
        warm_start=kwargs.pop("warm_start", True),
        **kwargs,
    )
