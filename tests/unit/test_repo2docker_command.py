"""The repo2docker command line and config file of a build (pure functions)."""

from __future__ import annotations

import ast
import stat
from pathlib import Path
from typing import Any

import pytest

from gallery_builder.repo2docker_command import (
    EngineOptions,
    repo2docker_command,
    repo2docker_config_text,
    write_repo2docker_config,
)


def test_repo2docker_command() -> None:
    assert repo2docker_command(
        repository="https://example.org/demo.git",
        commit="a" * 40,
        image="demo:main",
        config_path="/tmp/x/config.py",
    ) == [
        "repo2docker",
        "--config",
        "/tmp/x/config.py",
        "--engine",
        "gallery-docker-api",
        "--no-run",
        "--user-id",
        "1000",
        "--user-name",
        "jovyan",
        "--image-name",
        "demo:main",
        "--ref",
        "a" * 40,
        "https://example.org/demo.git",
    ]


def test_repo2docker_command_engine_and_executable() -> None:
    argv = repo2docker_command(
        repository="r",
        commit="c",
        image="i:t",
        config_path="p",
        engine="docker",
        executable="/venv/bin/repo2docker",
    )
    assert argv[0] == "/venv/bin/repo2docker"
    assert argv[argv.index("--engine") + 1] == "docker"
    assert argv[-1] == "r"  # the repository is the only positional argument, last


class FakeConfig:
    """Just enough of traitlets' Config for `c.X.y = ...` assignments."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return self.sections.setdefault(name, _Section())


class _Section(dict):  # type: ignore[type-arg]
    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def exec_config(text: str) -> FakeConfig:
    config = FakeConfig()
    namespace = {"get_config": lambda: config}
    exec(compile(text, "repo2docker_config.py", "exec"), namespace)  # noqa: S102 - our own file
    return config


def test_config_sets_labels_and_content_providers() -> None:
    pytest.importorskip("repo2docker")
    from repo2docker.contentproviders import Git, Local

    labels = {"org.neurolang-gallery.ref": "main", "b": "two"}
    config = exec_config(repo2docker_config_text(labels))
    assert config.sections["DockerAPIEngine"]["extra_labels"] == labels
    assert config.sections["Repo2Docker"]["content_providers"] == [Local, Git]


def test_config_values_cannot_inject_code() -> None:
    pytest.importorskip("repo2docker")
    evil = "'}\nimport os; os.system('touch /tmp/pwned')  # \"\"\" \\"
    text = repo2docker_config_text({"key": evil, evil: "value"})
    config = exec_config(text)
    assert config.sections["DockerAPIEngine"]["extra_labels"] == {"key": evil, evil: "value"}
    # The whole labels dict is one literal on one line.
    line = next(li for li in text.splitlines() if li.startswith("c.DockerAPIEngine"))
    assert ast.literal_eval(line.partition(" = ")[2]) == {"key": evil, evil: "value"}


def test_config_refuses_non_string_values() -> None:
    with pytest.raises(TypeError):
        repo2docker_config_text({"a": 1})  # type: ignore[dict-item]


def test_write_config_is_private(tmp_path: Path) -> None:
    path = write_repo2docker_config(tmp_path / "config.py", {"a": "b"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "extra_labels" in path.read_text()


def test_config_sets_the_cache_sources() -> None:
    pytest.importorskip("repo2docker")
    config = exec_config(repo2docker_config_text({"a": "b"}, ["sha256:abc"]))
    assert config.sections["Repo2Docker"]["cache_from"] == ["sha256:abc"]
    assert exec_config(repo2docker_config_text({}))
    with pytest.raises(TypeError):
        repo2docker_config_text({}, [1])  # type: ignore[list-item]


def test_config_gives_the_engines_the_negotiated_api_version() -> None:
    pytest.importorskip("repo2docker")
    config = exec_config(repo2docker_config_text({}, engine=EngineOptions(api_version="1.41")))
    assert config.sections["DockerAPIEngine"]["extra_init_args"] == {"version": "1.41"}
    # Unknown: the engine negotiates it itself.
    assert "extra_init_args" not in exec_config(repo2docker_config_text({})).sections.get(
        "DockerAPIEngine", {}
    )
