"""The repo2docker command line and config file of one build: pure functions, no I/O but the
one private file write.

Labels go into the config file rather than onto the command line, so they never show in
`ps`; the content providers are limited to git and local paths, because the data-repository
providers go online for every URL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gallery_builder.docker_api_engine import ENTRY_POINT_NAME
from gallery_builder.git_access import write_private

DEFAULT_ENGINE = ENTRY_POINT_NAME
# repo2docker refuses to build as root unless told which user the image should run as.
REPO2DOCKER_USER_ID = "1000"
REPO2DOCKER_USER_NAME = "jovyan"


@dataclass(frozen=True)
class EngineOptions:
    """The engine's build options for one build (see DockerAPIEngine's traits)."""

    network_mode: str = ""
    limits: Mapping[str, int] = field(default_factory=dict)
    build_args: Mapping[str, str] = field(default_factory=dict)
    layers_file: str = ""
    trim_slow_imports: bool = False
    check: ImageCheckOptions | None = None
    # The daemon's API version as the builder negotiated it: repo2docker's engines then
    # skip asking the daemon again (each of its two engine instances would, ~15 ms each).
    api_version: str = ""

    def config_lines(self) -> list[str]:
        """traitlets config lines (values written with repr(): nothing can inject code)."""
        lines = [
            f"c.DockerAPIEngine.build_network_mode = {self.network_mode!r}",
            f"c.DockerAPIEngine.build_limits = {dict(self.limits)!r}",
            f"c.DockerAPIEngine.build_args_extra = {dict(self.build_args)!r}",
            f"c.DockerAPIEngine.layers_file = {self.layers_file!r}",
            f"c.DockerAPIEngine.trim_slow_imports = {bool(self.trim_slow_imports)!r}",
        ]
        if self.api_version:
            lines.append(f"c.DockerAPIEngine.extra_init_args = {{'version': {self.api_version!r}}}")
        if self.check is not None:
            lines += [
                "c.DockerAPIEngine.check_image = True",
                f"c.DockerAPIEngine.check_paths = {[str(p) for p in self.check.paths]!r}",
                f"c.DockerAPIEngine.check_uid = {str(self.check.uid)!r}",
                f"c.DockerAPIEngine.check_container_name = {str(self.check.container_name)!r}",
                f"c.DockerAPIEngine.facts_file = {str(self.check.facts_file)!r}",
            ]
        return lines


@dataclass(frozen=True)
class ImageCheckOptions:
    """The image check the engine runs before the last step (see DockerAPIEngine)."""

    paths: Sequence[str]
    container_name: str
    facts_file: str
    uid: str = "1000"


def repo2docker_command(
    *,
    repository: str,
    commit: str,
    image: str,
    config_path: str,
    engine: str = DEFAULT_ENGINE,
    executable: str = "repo2docker",
) -> list[str]:
    """The repo2docker argv that builds `repository` at `commit` into `image` (without running).

    `executable` replaces the program name (e.g. the repo2docker next to this interpreter).
    """
    return [
        executable,
        "--config",
        config_path,
        "--engine",
        engine,
        "--no-run",
        "--user-id",
        REPO2DOCKER_USER_ID,
        "--user-name",
        REPO2DOCKER_USER_NAME,
        "--image-name",
        image,
        "--ref",
        commit,
        repository,
    ]


def repo2docker_config_text(
    labels: Mapping[str, str],
    cache_from: Sequence[str] = (),
    engine: EngineOptions | None = None,
) -> str:
    """The text of a traitlets config file giving repo2docker the labels, the images to use
    as Docker's layer cache, and the content providers.

    Values are written with repr(), so no label can inject code into the file.
    """
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("labels must map strings to strings")
    literal = repr(dict(sorted(labels.items())))
    if not all(isinstance(image, str) for image in cache_from):
        raise TypeError("cache_from must be image names or ids")
    engine_lines = "".join(line + "\n" for line in (engine or EngineOptions()).config_lines())
    return (
        "# Written by the gallery builder for one build, and removed after it.\n"
        "from repo2docker.contentproviders import Git, Local\n\n"
        "c = get_config()  # noqa: F821\n"
        f"c.DockerAPIEngine.extra_labels = {literal}\n"
        f"c.Repo2Docker.cache_from = {list(cache_from)!r}\n"
        "# Only git (and local paths): the data-repository providers go online for every URL.\n"
        "c.Repo2Docker.content_providers = [Local, Git]\n"
        f"{engine_lines}"
    )


def write_repo2docker_config(
    path: Path | str,
    labels: Mapping[str, str],
    *,
    cache_from: Sequence[str] = (),
    engine: EngineOptions | None = None,
) -> Path:
    """Write the repo2docker config file (see `repo2docker_config_text`), readable by us only."""
    path = Path(path)
    write_private(path, repo2docker_config_text(labels, cache_from, engine), mode=0o600)
    return path
