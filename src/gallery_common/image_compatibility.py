"""What the builder found inside an environment image, and whether the hub can run it.

After every build the builder runs a short check inside the image (`gallery_builder.image_check`)
and writes what it found into one image label, `org.neurolang-gallery.compatibility` (JSON).
Both sides read it back with `facts_from_labels` and judge it with the same functions here:
the Environments page (builder), and the spawn page, the gallery and every start (hub).
The facts are kept, not the verdict, so each side judges with its own JupyterHub version and
the gallery.yaml it reads now. Standard library only: both images import this.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from importlib import metadata

from gallery_common.image_labels import LABEL_PREFIX

COMPATIBILITY_LABEL = f"{LABEL_PREFIX}compatibility"
# Bumped when the facts change shape; an older label still reads (missing facts are None).
FACTS_VERSION = 1


@dataclass(frozen=True)
class ImageFacts:
    """What one look inside an image found. Versions are None when the package is missing."""

    jupyterhub: str | None
    singleuser: bool
    voila: str | None = None
    jupytext: str | None = None
    python: str | None = None
    workdir: str = ""
    # The notebook paths gallery.yaml named for the image when it was checked -> present.
    paths: dict[str, bool] = field(default_factory=dict)
    checked_at: str = ""

    def to_label(self) -> str:
        """The label's value: compact JSON with sorted keys (equal facts, equal label)."""
        data = {"version": FACTS_VERSION, **asdict(self)}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def same_as(self, other: ImageFacts | None) -> bool:
        """True when nothing but the time of the check differs."""
        if other is None:
            return False
        return {**asdict(self), "checked_at": ""} == {**asdict(other), "checked_at": ""}


def facts_from_json(data: object) -> ImageFacts | None:
    """ImageFacts from the check's JSON; None when it is not an object. Never raises."""
    if not isinstance(data, dict):
        return None

    def text(key: str) -> str | None:
        value = data.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    paths = data.get("paths")
    return ImageFacts(
        jupyterhub=text("jupyterhub"),
        singleuser=data.get("singleuser") is True,
        voila=text("voila"),
        jupytext=text("jupytext"),
        python=text("python"),
        workdir=text("workdir") or "",
        paths={str(k): v is True for k, v in paths.items()} if isinstance(paths, dict) else {},
        checked_at=text("checked_at") or "",
    )


def facts_from_labels(labels: dict[str, str] | None) -> ImageFacts | None:
    """The facts an image's labels (`Config.Labels`) carry; None when it was never checked."""
    if not labels or not isinstance(labels.get(COMPATIBILITY_LABEL), str):
        return None
    try:
        return facts_from_json(json.loads(labels[COMPATIBILITY_LABEL]))
    except ValueError:
        return None


def major_version(version: str | None) -> int | None:
    """1 of "1.4.0"; None when there is no leading number."""
    head = (version or "").split(".", 1)[0].strip()
    return int(head) if head.isdigit() else None


@functools.cache
def local_jupyterhub_major() -> int | None:
    """The major version of the JupyterHub installed here (the hub's; the builder pins the same).

    Read once per process: every gallery card asks, and reading a package's metadata
    parses its METADATA file (~5 ms; the hub's loop spent most of a crowd's first second
    on it)."""
    try:
        return major_version(metadata.version("jupyterhub"))
    except metadata.PackageNotFoundError:
        return None


def image_problems(facts: ImageFacts | None, hub_major: int | None) -> list[str]:
    """Why no server of this image can start with this hub; [] when none (or not checked)."""
    if facts is None:
        return []
    problems = []
    if facts.jupyterhub is None:
        problems.append("jupyterhub is not installed in the image")
    elif hub_major is not None and major_version(facts.jupyterhub) != hub_major:
        problems.append(
            f"the image has jupyterhub {facts.jupyterhub}, the hub runs JupyterHub {hub_major}: "
            f"their major versions must match (pin jupyterhub=={hub_major}.* in the image)"
        )
    if not facts.singleuser:
        problems.append("the image has no jupyterhub-singleuser command")
    return problems


def path_problems(facts: ImageFacts | None, path: str) -> list[str]:
    """Why an example's file cannot open: [] when present, or not among the checked paths."""
    if facts is None or facts.paths.get(path, True):
        return []
    where = f" (in {facts.workdir})" if facts.workdir else ""
    return [f"{path} is not in the image{where}"]


def example_problems(facts: ImageFacts | None, hub_major: int | None, path: str) -> list[str]:
    """Why a gallery example of this image cannot run: the image's problems, then its file's."""
    return image_problems(facts, hub_major) + path_problems(facts, path)
