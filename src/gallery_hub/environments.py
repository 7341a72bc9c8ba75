"""Built environments as the hub sees them: images with the gallery's labels.

Pure functions (no tornado), fed what docker-py returns; the few that ask Docker take a
docker-py client and are called in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import docker

from gallery_common.hub_contract import SERVICE_PREFIX
from gallery_common.image_compatibility import (
    ImageFacts,
    facts_from_labels,
    image_problems,
    local_jupyterhub_major,
)
from gallery_common.image_labels import MARKER_FILTER, EnvironmentLabels, parse_labels

ENVIRONMENTS_PAGE = SERVICE_PREFIX


@dataclass(frozen=True)
class Environment:
    image: str
    labels: EnvironmentLabels
    # What the builder's image check found (None: never checked, e.g. an older image).
    facts: ImageFacts | None = None

    @property
    def title(self) -> str:
        return self.labels.display_name or self.image


def environments_from_images(images: list[dict]) -> list[Environment]:
    """Every tagged image that carries the gallery marker, sorted by title then image.

    `images` is docker-py's `APIClient.images()` output (each with RepoTags and Labels).
    """
    found: dict[str, Environment] = {}
    for image in images:
        labels = parse_labels(image.get("Labels"))
        if labels is None:
            continue
        for tag in image.get("RepoTags") or []:
            if tag and tag != "<none>:<none>" and ":gallery-build-" not in tag:
                found[tag] = Environment(tag, labels, facts_from_labels(image.get("Labels")))
    return sorted(found.values(), key=lambda e: (e.title.lower(), e.image))


def built_environments(client) -> dict[str, Environment]:
    """The built environments by image name, asked of Docker through a docker-py client."""
    images = client.api.images(filters={"label": MARKER_FILTER})
    return {env.image: env for env in environments_from_images(images)}


def image_ids(client, names: set[str]) -> dict[str, str | None]:
    """The image id each name points to now (None: no such image)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = client.api.inspect_image(name)["Id"]
        except docker.errors.ImageNotFound:
            found[name] = None
    return found


def image_details(client, names: set[str]) -> dict[str, tuple[str, str | None] | None]:
    """Each image's id and the commit its labels name (None: no such image)."""
    found: dict[str, tuple[str, str | None] | None] = {}
    for name in names:
        try:
            inspect = client.api.inspect_image(name)
        except docker.errors.ImageNotFound:
            found[name] = None
            continue
        labels = parse_labels((inspect.get("Config") or {}).get("Labels"))
        found[name] = (inspect["Id"], labels.commit if labels else None)
    return found


def container_images(client, containers: dict[str, str]) -> dict[str, str | None]:
    """The image id each container runs (keys are the caller's; None: no such container)."""
    found: dict[str, str | None] = {}
    for key, container in containers.items():
        try:
            found[key] = client.api.inspect_container(container)["Image"]
        except docker.errors.NotFound:
            found[key] = None
    return found


@dataclass(frozen=True)
class Limits:
    mem_bytes: int
    cpu: float


def limits_for(
    labels: EnvironmentLabels | None, default: Limits, maximum: Limits | None = None
) -> Limits:
    """The environment's own limits where its labels set them, else the defaults.

    Labels never raise a limit above `maximum` (the configured largest limits): an image
    may carry any label its Dockerfile wrote.
    """
    if labels is None:
        return default
    mem = labels.memory_limit_gb
    limits = Limits(
        mem_bytes=int(mem * 1024**3) if mem else default.mem_bytes,
        cpu=labels.cpu_limit or default.cpu,
    )
    if maximum is None:
        return limits
    return Limits(
        mem_bytes=min(limits.mem_bytes, maximum.mem_bytes)
        if maximum.mem_bytes
        else limits.mem_bytes,
        cpu=min(limits.cpu, maximum.cpu) if maximum.cpu else limits.cpu,
    )


def _limit_text(value: float | None, unit: str) -> str:
    return f"{value:g} {unit}" if value else "default"


def render_options_form(
    environments: list[Environment],
    *,
    is_admin: bool,
    default: Limits,
    hub_major: int | None = None,
) -> str:
    """The spawn page's choice of environment (radio cards named `image`).

    An environment the hub cannot run (image check: jupyterhub's major version, no
    jupyterhub-singleuser) is shown marked, with the reason, and cannot be chosen.
    """
    hub_major = hub_major if hub_major is not None else local_jupyterhub_major()
    if not environments:
        hint = (
            f' <a href="{ENVIRONMENTS_PAGE}">Add one on the Environments page.</a>'
            if is_admin
            else " Ask an administrator to add one."
        )
        return (
            '<div class="alert alert-info" id="no-environments">'
            f"No environment has been built yet.{hint}</div>"
        )
    runnable = [env for env in environments if not image_problems(env.facts, hub_major)]
    cards = []
    for index, env in enumerate(environments):
        labels = env.labels
        problems = image_problems(env.facts, hub_major)
        checked = " checked" if len(runnable) == 1 and env in runnable else ""
        disabled = " disabled" if problems else ""
        warning = (
            '<br><span class="badge text-bg-danger incompatible">incompatible</span> '
            f'<small class="text-danger incompatible-reason">{escape("; ".join(problems))}</small>'
            if problems
            else ""
        )
        commit = labels.commit[:7] if labels.commit else "?"
        repository = escape(labels.repository)
        mem = _limit_text(labels.memory_limit_gb, "GB")
        cpu = _limit_text(labels.cpu_limit, "CPU")
        cards.append(
            f'<label class="list-group-item d-flex gap-3 environment-choice" '
            f'data-image="{escape(env.image)}">'
            f'<input class="form-check-input flex-shrink-0" type="radio" name="image" '
            f'id="environment-{index}" value="{escape(env.image)}" required{checked}{disabled}>'
            f"<span><strong>{escape(env.title)}</strong> "
            f'<code class="ms-1">{escape(env.image)}</code><br>'
            f'<small class="text-muted"><a href="{repository}" target="_blank" '
            f'rel="noopener noreferrer">{repository}</a> · '
            f"{escape(labels.ref or 'default branch')} @ <code>{escape(commit)}</code> · "
            f"memory {escape(mem)} · {escape(cpu)}</small>{warning}</span></label>"
        )
    defaults = (
        f"Environments without their own limits get {default.mem_bytes / 1024**3:g} GB "
        f"and {default.cpu:g} CPU."
    )
    return (
        '<p class="mb-2">Select an environment:</p>'
        f'<div class="list-group mb-2" id="environment-choices">{"".join(cards)}</div>'
        f'<p class="small text-muted">{escape(defaults)}</p>'
    )
