"""gallery.yaml: the images to build and the examples the gallery shows.

    images:                      # what `build-image --file` builds
      <name>: {repo, ref, cpu, memory, data: {path, volume}}
    examples:                    # the cards of the public gallery
      <id>: {title, description, path, repo_url, image_name, image_url, view, warm}

Every error names the entry and the key, e.g. `examples.destrieux.path: ...`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

# Environment (image) names, here and in the builder's API; use with fullmatch.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# Example ids name the visitor's JupyterHub server, so they follow its "safe slug" rule.
EXAMPLE_ID_PATTERN = re.compile(r"^(?=.{1,30}$)[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
IMAGE_NAME_PATTERN = re.compile(NAME_PATTERN.pattern + r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
VIEWS = ("voila", "notebook")
_IMAGE_KEYS = {"repo", "ref", "cpu", "memory", "data"}
_DATA_KEYS = {"path", "volume"}
HOME = PurePosixPath("/home/jovyan")  # repo2docker's home folder: relative data paths start here
VOLUME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
_EXAMPLE_KEYS = {
    "title",
    "description",
    "path",
    "repo_url",
    "image_name",
    "image_url",
    "view",
    "warm",
}
MAX_WARM = 20


class GalleryFileError(ValueError):
    """gallery.yaml is not usable; `where` is the dotted location of the problem."""

    def __init__(self, where: str, problem: str):
        self.where = where
        super().__init__(f"{where}: {problem}" if where else problem)


@dataclass(frozen=True)
class DataSpec:
    """Where an image's examples keep their data, shared by every server of the image."""

    path: str  # absolute, inside the container
    volume: str | None = None  # a Docker volume of its own; None: the gallery data volume

    def path_mount(self, read_only: bool = True) -> dict[str, str]:
        """DockerSpawner's `volumes` entry for it."""
        return {"bind": self.path, "mode": "ro" if read_only else "rw"}


@dataclass(frozen=True)
class ImageSpec:
    name: str
    repo: str
    ref: str | None
    cpu: float | None
    memory: float | None  # GB
    data: DataSpec | None = None


@dataclass(frozen=True)
class Example:
    id: str
    title: str
    description: str
    path: str
    repo_url: str
    image_name: str
    image_url: str  # "": the verification's screenshot is the thumbnail
    view: str = "voila"
    warm: int = 0  # servers kept started and rendered, ready for the next click


@dataclass(frozen=True)
class Gallery:
    images: dict[str, ImageSpec]
    examples: dict[str, Example]

    def data_for(self, image_name: str) -> DataSpec | None:
        """The data of the image an example runs (`images.<name>` of `<name>:<tag>`)."""
        spec = self.images.get(image_name.split(":", 1)[0])
        return spec.data if spec is not None else None


# libyaml's safe loader where PyYAML has it (the same documents, ~5x faster: the builder
# reads the file twice a build, the hub for its pages), else the pure-Python one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_gallery(path: Path) -> Gallery:
    """Read and validate a gallery file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise GalleryFileError("", f"cannot read {path}: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        raise GalleryFileError("", f"not valid YAML: {e}") from None
    return parse_gallery(data)


def parse_gallery(data: Any) -> Gallery:
    """Validate the parsed YAML of a gallery file."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise GalleryFileError("", "the file must be a mapping with `images` and `examples`")
    unknown = set(data) - {"images", "examples"}
    if unknown:
        raise GalleryFileError(sorted(map(str, unknown))[0], "unknown key")
    images = {
        name: _image(name, spec) for name, spec in _mapping(data.get("images"), "images").items()
    }
    examples = {
        key: _example(key, spec) for key, spec in _mapping(data.get("examples"), "examples").items()
    }
    return Gallery(images, examples)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GalleryFileError(where, "must be a mapping of names to entries")
    return value


def _entry(value: Any, where: str, allowed: set[str]) -> dict:
    if not isinstance(value, dict):
        raise GalleryFileError(where, "must be a mapping")
    unknown = set(value) - allowed
    if unknown:
        raise GalleryFileError(f"{where}.{sorted(map(str, unknown))[0]}", "unknown key")
    return value


def _image(name: Any, value: Any) -> ImageSpec:
    where = f"images.{name}"
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise GalleryFileError(where, "names use a-z, 0-9, '.', '_' and '-' (max 63)")
    spec = _entry(value, where, _IMAGE_KEYS)
    ref = spec.get("ref")
    if ref is not None and (not isinstance(ref, str) or not ref.strip()):
        raise GalleryFileError(f"{where}.ref", "must be a branch, tag or commit")
    return ImageSpec(
        name=name,
        repo=_text(spec, "repo", where),
        ref=str(ref).strip() if ref is not None else None,
        cpu=_positive(spec, "cpu", where),
        memory=_positive(spec, "memory", where),
        data=_data(spec.get("data"), f"{where}.data"),
    )


def _data(value: Any, where: str) -> DataSpec | None:
    if value is None:
        return None
    spec = _entry(value, where, _DATA_KEYS)
    text = _text(spec, "path", where)
    path = PurePosixPath(text)
    if ".." in path.parts or "\\" in text or str(path) in (".", "/"):
        raise GalleryFileError(f"{where}.path", "must be a folder path without '..'")
    absolute = path if path.is_absolute() else HOME / path
    volume = spec.get("volume")
    if volume is not None and (not isinstance(volume, str) or not VOLUME_PATTERN.fullmatch(volume)):
        raise GalleryFileError(f"{where}.volume", "must be a Docker volume name")
    return DataSpec(path=str(absolute), volume=volume)


def _example(key: Any, value: Any) -> Example:
    where = f"examples.{key}"
    if not isinstance(key, str) or not EXAMPLE_ID_PATTERN.match(key):
        raise GalleryFileError(
            where, "ids start with a-z and use a-z, 0-9 and single '-' (max 30 characters)"
        )
    spec = _entry(value, where, _EXAMPLE_KEYS)
    image_name = _text(spec, "image_name", where)
    if not IMAGE_NAME_PATTERN.fullmatch(image_name):
        raise GalleryFileError(f"{where}.image_name", "expected <name>:<tag>, e.g. neuroweb:master")
    view = spec.get("view", "voila")
    if view not in VIEWS:
        raise GalleryFileError(f"{where}.view", f"must be one of {', '.join(VIEWS)}")
    return Example(
        id=key,
        title=_text(spec, "title", where),
        description=_text(spec, "description", where, required=False),
        path=_relative_path(spec, "path", where),
        repo_url=_url(spec, "repo_url", where),
        image_name=image_name,
        image_url=_image_url(spec, where),
        view=view,
        warm=_count(spec, "warm", where, MAX_WARM),
    )


def _text(spec: dict, key: str, where: str, *, required: bool = True) -> str:
    value = spec.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise GalleryFileError(f"{where}.{key}", "is required (text)")
    return value.strip()


def _positive(spec: dict, key: str, where: str) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GalleryFileError(f"{where}.{key}", "must be a number")
    if not math.isfinite(value) or value <= 0:
        raise GalleryFileError(f"{where}.{key}", "must be greater than zero")
    return float(value)


def _count(spec: dict, key: str, where: str, maximum: int) -> int:
    value = spec.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise GalleryFileError(f"{where}.{key}", f"must be a whole number from 0 to {maximum}")
    return value


def _relative_path(spec: dict, key: str, where: str) -> str:
    value = _text(spec, key, where)
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise GalleryFileError(f"{where}.{key}", "must be a relative path inside the image")
    return str(path)


def _url(spec: dict, key: str, where: str) -> str:
    value = _text(spec, key, where)
    if not re.match(r"^https?://[^\s/]+", value):
        raise GalleryFileError(f"{where}.{key}", "must be an http(s) URL")
    return value


def _image_url(spec: dict, where: str) -> str:
    """A thumbnail: an http(s) URL, a file under the gallery's thumbnails folder, or "".

    Without one the card shows the example's own render (the verification's screenshot).
    """
    if spec.get("image_url") in (None, ""):
        return ""
    value = _text(spec, "image_url", where)
    if value.startswith(("http://", "https://")):
        return _url(spec, "image_url", where)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+\.(png|jpe?g|svg|gif|webp)", value):
        raise GalleryFileError(
            f"{where}.image_url", "must be an http(s) URL or a file name in gallery/thumbnails/"
        )
    return value
