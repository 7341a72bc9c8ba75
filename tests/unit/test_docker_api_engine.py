"""DockerAPIEngine against a fake docker-py APIClient: no Docker daemon needed."""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from docker.errors import APIError, DockerException, ImageNotFound
from traitlets.config import Config

# The builder's requirements have repo2docker; an environment without it cannot load the engine.
pytest.importorskip("repo2docker", reason="jupyter-repo2docker is not installed")

from repo2docker.app import Repo2Docker
from repo2docker.docker import DockerEngine
from repo2docker.engine import BuildError, ContainerEngineException, Image

from gallery_builder import docker_api_engine
from gallery_builder.docker_api_engine import (
    ENTRY_POINT_NAME,
    DockerAPIEngine,
    image_from_inspect,
)
from gallery_builder.docker_errors import describe_docker_error
from gallery_common.image_compatibility import (
    COMPATIBILITY_LABEL,
    facts_from_json,
    facts_from_labels,
)

PROGRESS = [
    {"stream": "Step 1/2 : FROM neurolang-gallery/python-standin:bookworm\n"},
    {"stream": " ---> 2be1f3282c7e\n"},
    {"stream": "Step 2/2 : RUN echo hi\n"},
    {"aux": {"ID": "sha256:feedface"}},
    {"stream": "Successfully built feedface\n"},
]


def api_error(status: int, explanation: str | None, url: str = "") -> APIError:
    response = requests.Response()
    response.status_code = status
    response.reason = "Server Error"
    response.url = url
    return APIError(f"{status} Server Error for {url}", response, explanation=explanation)


class FakeAPIClient:
    """Records what the engine asks docker-py for and replays scripted answers."""

    def __init__(
        self,
        chunks: Iterable[Any] = (),
        *,
        build_raises: BaseException | None = None,
        stream_raises: BaseException | None = None,
        images: dict[str, dict[str, Any]] | None = None,
        inspect_raises: BaseException | None = None,
    ) -> None:
        self.chunks = list(chunks)
        self.build_raises = build_raises
        self.stream_raises = stream_raises
        self.images = images or {}
        self.inspect_raises = inspect_raises
        self.build_calls: list[dict[str, Any]] = []
        self.tag_calls: list[tuple[str, str, str]] = []
        self.closed = False

    def build(self, **kwargs: Any) -> Iterator[Any]:
        self.build_calls.append(kwargs)
        if self.build_raises is not None:
            raise self.build_raises
        return self._stream()

    def _stream(self) -> Iterator[Any]:
        yield from self.chunks
        if self.stream_raises is not None:
            raise self.stream_raises

    def inspect_image(self, image: str) -> dict[str, Any]:
        if self.inspect_raises is not None:
            raise self.inspect_raises
        if image not in self.images:
            raise ImageNotFound(f"No such image: {image}")
        return self.images[image]

    def tag(self, image: str, repository: str, tag: str) -> bool:
        self.tag_calls.append((image, repository, tag))
        return True

    def close(self) -> None:
        self.closed = True


_LABEL_PAIR = re.compile(r'"((?:[^"\\\\]|\\\\.)*)"="((?:[^"\\\\]|\\\\.)*)"')


def _unescape(text: str) -> str:
    return re.sub(r"\\\\(.)", r"\1", text)


def label_build(call: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(FROM image, labels) of the one-step label build the engine asked for."""
    call["fileobj"].seek(0)
    with tarfile.open(fileobj=call["fileobj"]) as tar:
        member = tar.extractfile("Dockerfile")
        assert member is not None
        dockerfile = member.read().decode()
    first, _, label = dockerfile.partition("\n")
    assert label.startswith("LABEL ") and label.count("LABEL") == 1
    labels = {_unescape(k): _unescape(v) for k, v in _LABEL_PAIR.findall(label)}
    return first.removeprefix("FROM "), labels


def engine_with(client: FakeAPIClient, **traits: Any) -> DockerAPIEngine:
    engine = DockerAPIEngine(api_client=client)
    for name, value in traits.items():
        setattr(engine, name, value)
    return engine


def run_like_repo2docker(chunks: Iterable[dict[str, Any]]) -> list[str]:
    """What Repo2Docker.build does with non-string output: log streams, raise on errors."""
    logged = []
    for chunk in chunks:
        if "stream" in chunk:
            logged.append(chunk["stream"])
        elif "error" in chunk:
            raise BuildError(chunk["error"])
    return logged


def test_is_a_repo2docker_docker_engine_with_dict_output() -> None:
    assert issubclass(DockerAPIEngine, DockerEngine)
    assert DockerAPIEngine.string_output is False
    assert ENTRY_POINT_NAME == "gallery-docker-api"


def test_build_streams_progress_and_passes_arguments_through() -> None:
    client = FakeAPIClient(PROGRESS)
    engine = engine_with(client, extra_labels={"org.neurolang-gallery.environment": "true"})

    chunks = list(
        engine.build(
            buildargs={"NB_USER": "jovyan", "NB_UID": "1000"},
            cache_from=["cache:latest"],
            container_limits={"memory": 2**30, "memswap": 2**30},
            tag="gallery-env:abc",
            dockerfile="binder/Dockerfile",
            path="/srv/checkout",
            labels={"repo2docker.ref": "main"},
            platform="linux/amd64",
        )
    )

    assert chunks[: len(PROGRESS)] == PROGRESS
    assert {"stream": "Adding 2 labels in one step\n"} in chunks
    build, labelling = client.build_calls
    # The repository's own build: untagged, without labels, like a plain `docker build`.
    assert build == {
        "path": "/srv/checkout",
        "dockerfile": "binder/Dockerfile",
        "buildargs": {"NB_USER": "jovyan", "NB_UID": "1000"},
        "cache_from": ["cache:latest"],
        "container_limits": {"memory": 2**30, "memswap": 2**30},
        "platform": "linux/amd64",
        "rm": True,
        "forcerm": True,
        "decode": True,
    }
    # Then one LABEL step on top of the image it built, under the requested tag.
    assert {k: v for k, v in labelling.items() if k != "fileobj"} == {
        "custom_context": True,
        "tag": "gallery-env:abc",
        "container_limits": {"memory": 2**30, "memswap": 2**30},
        "network_mode": "none",  # the label step needs no network
        "rm": True,
        "forcerm": True,
        "decode": True,
    }
    assert label_build(labelling) == (
        "sha256:feedface",
        {"repo2docker.ref": "main", "org.neurolang-gallery.environment": "true"},
    )


def test_build_from_a_context_tarball() -> None:
    client = FakeAPIClient(PROGRESS)
    context = io.BytesIO(b"tar bytes")

    list(engine_with(client).build(fileobj=context, custom_context=True, tag="t:1"))

    call = client.build_calls[0]
    assert call["fileobj"] is context
    assert call["custom_context"] is True
    assert "path" not in call
    # Empty strings would be sent as empty parameters; docker-py wants None for "unset".
    assert (call["dockerfile"], call["platform"]) == (None, None)
    # No labels at all: the image is only tagged, no label step.
    assert len(client.build_calls) == 1
    assert client.tag_calls == [("sha256:feedface", "t", "1")]


def test_engine_labels_win_and_values_become_strings() -> None:
    client = FakeAPIClient(PROGRESS)
    engine = engine_with(
        client, extra_labels={"org.neurolang-gallery.environment": "true", "shared": "engine"}
    )

    list(engine.build(path="/ctx", tag="t:1", labels={"shared": "repo", "number": 3}))

    assert label_build(client.build_calls[1])[1] == {
        "shared": "engine",
        "number": "3",
        "org.neurolang-gallery.environment": "true",
    }


def test_credentials_in_url_label_values_are_stripped() -> None:
    client = FakeAPIClient(PROGRESS)
    labels = {
        "repo2docker.repo": "https://user:secret@git.example.org/org/repo.git",
        "homepage": "https://example.org/docs?page=1",
    }

    list(engine_with(client).build(path="/ctx", tag="t:1", labels=labels))

    assert label_build(client.build_calls[1])[1] == {
        "repo2docker.repo": "https://git.example.org/org/repo.git",
        "homepage": "https://example.org/docs?page=1",
    }


def test_extra_labels_are_configurable_through_the_repo2docker_config() -> None:
    config = Config({"DockerAPIEngine": {"extra_labels": {"org.neurolang-gallery.ref": "main"}}})
    r2d = Repo2Docker(config=config)

    engine = DockerAPIEngine(parent=r2d, api_client=FakeAPIClient())

    assert engine.extra_labels == {"org.neurolang-gallery.ref": "main"}


def test_known_extra_build_kwargs_pass_through_and_others_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeAPIClient(PROGRESS)

    with caplog.at_level(logging.WARNING):
        list(
            engine_with(client).build(
                path="/ctx", tag="t:1", load=True, nocache=True, target="final", cpu_quota=5
            )
        )

    call = client.build_calls[0]
    assert (call["nocache"], call["target"]) == (True, "final")
    assert "cpu_quota" not in call and "load" not in call
    assert "cpu_quota" in caplog.text


def test_stream_error_is_yielded_for_repo2docker_and_stops_the_build() -> None:
    error = {"errorDetail": {"code": 1, "message": "RUN failed"}, "error": "RUN failed"}
    client = FakeAPIClient([*PROGRESS[:3], error, {"stream": "never reached\n"}])
    engine = engine_with(client)

    with pytest.raises(BuildError, match="RUN failed"):
        run_like_repo2docker(engine.build(path="/ctx", tag="t:1"))

    chunks: list[dict[str, Any]] = []
    with pytest.raises(BuildError, match="RUN failed"):
        # A consumer that keeps iterating past the error chunk gets BuildError from the engine.
        chunks.extend(engine.build(path="/ctx", tag="t:1"))
    assert chunks[-1] == error


def test_error_detail_without_error_is_normalised() -> None:
    client = FakeAPIClient([{"errorDetail": {"message": "disk full"}}])

    gen = engine_with(client).build(path="/ctx", tag="t:1")

    assert next(gen)["error"] == "disk full"
    with pytest.raises(BuildError, match="disk full"):
        next(gen)


def test_api_error_when_starting_the_build_becomes_an_error_chunk() -> None:
    url = "http+docker://localhost/v1.41/build?buildargs=%7B%22TOKEN%22%3A+%22hunter2%22%7D"
    client = FakeAPIClient(build_raises=api_error(500, "no space left on device", url))

    gen = engine_with(client).build(path="/ctx", tag="t:1", buildargs={"TOKEN": "hunter2"})
    chunk = next(gen)

    assert chunk["error"] == "Docker API error 500: no space left on device"
    assert chunk["errorDetail"] == {"message": chunk["error"]}
    assert "hunter2" not in chunk["error"]
    with pytest.raises(BuildError, match="no space left"):
        next(gen)


def test_connection_lost_mid_stream_surfaces_as_build_error() -> None:
    client = FakeAPIClient(
        PROGRESS[:2], stream_raises=requests.ConnectionError(ConnectionResetError(104, "reset"))
    )

    with pytest.raises(BuildError, match=r"cannot talk to the Docker engine \(ConnectionError"):
        run_like_repo2docker(engine_with(client).build(path="/ctx", tag="t:1"))


def test_unreachable_daemon_surfaces_as_build_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**kwargs: Any) -> None:
        raise DockerException("Error while fetching server API version: Connection refused")

    monkeypatch.setattr(docker_api_engine.docker, "APIClient", refuse)

    with pytest.raises(BuildError, match="Connection refused"):
        run_like_repo2docker(DockerAPIEngine().build(path="/ctx", tag="t:1"))


def test_non_dict_chunks_are_wrapped() -> None:
    client = FakeAPIClient(["plain text", *PROGRESS])

    assert next(engine_with(client).build(path="/ctx", tag="t:1")) == {"stream": "plain text"}


def test_a_build_that_names_no_image_fails() -> None:
    client = FakeAPIClient(PROGRESS[:3])

    with pytest.raises(BuildError, match="did not say which image"):
        list(engine_with(client).build(path="/ctx", tag="t:1"))


def test_the_log_says_which_steps_came_from_the_cache() -> None:
    chunks = [
        {"stream": "Step 1/3 : FROM base\n"},
        {"stream": " ---> 1234\n"},
        {"stream": "Step 2/3 : RUN pip install -r requirements.txt\n"},
        {"stream": " ---> Using cache\n"},
        {"stream": "Step 3/3 : COPY . /home/jovyan\n"},
        {"aux": {"ID": "sha256:feedface"}},
    ]
    client = FakeAPIClient(chunks)
    lines = [
        c["stream"] for c in engine_with(client).build(path="/ctx", tag="t:1") if "stream" in c
    ]
    summary = lines[lines.index(next(line for line in lines if line.startswith("Build steps"))) :]
    assert summary[0].startswith("Build steps: 1 of 2 from the layer cache, ")
    assert summary[1].startswith("   1. cached ") and "RUN pip install" in summary[1]
    assert summary[2].startswith("   2. ran ") and "COPY . /home/jovyan" in summary[2]


def test_steps_are_found_in_chunks_of_many_lines() -> None:
    output = "".join(f"line {n} of a chatty step\n" for n in range(1000))
    steps = docker_api_engine.StepLog(clock=iter(range(100)).__next__)
    steps.see({"stream": f"Step 1/3 : RUN make  \n ---> Using cache\r\n{output}"})
    steps.see({"stream": f"Step 2/3 : RUN noisy\n{output}echo of Step 9/9 : mid-line\n"})
    steps.see({"stream": "  Step 3/3 : LABEL a=b\n ---> Using cache but not only\n"})
    steps.end()
    assert [(step.text, step.cached) for step in steps.steps] == [
        ("RUN make", True),
        ("RUN noisy", False),
        ("LABEL a=b", False),
    ]


def test_label_values_cannot_escape_the_label_instruction() -> None:
    labels = {"a": 'quote " dollar $HOME backslash \\ end', "b": "line"}
    dockerfile = docker_api_engine.label_dockerfile("sha256:1", labels)
    assert dockerfile.count("\nLABEL ") == 1 and dockerfile.startswith("FROM sha256:1\n")
    assert '"a"="quote \\" dollar \\$HOME backslash \\\\ end"' in dockerfile


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "/ctx", "push": True}, "push"),
        ({"path": "/ctx", "container_limits": {"cpu_quota": 5}}, "container_limits"),
        ({}, "fileobj"),
    ],
)
def test_unsupported_requests_are_refused(kwargs: dict[str, Any], message: str) -> None:
    client = FakeAPIClient(PROGRESS)

    with pytest.raises(ValueError, match=message):
        list(engine_with(client).build(tag="t:1", **kwargs))
    assert client.build_calls == []


def test_engine_is_created_without_contacting_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[dict[str, Any]] = []
    fake = FakeAPIClient(images={})

    def factory(**kwargs: Any) -> FakeAPIClient:
        created.append(kwargs)
        return fake

    monkeypatch.setattr(docker_api_engine.docker, "APIClient", factory)
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/gallery-test/docker.sock")

    engine = DockerAPIEngine()
    engine.extra_init_args = {"timeout": 120}
    assert created == []

    assert engine.inspect_image("missing:1") is None
    assert engine.inspect_image("missing:2") is None
    assert created == [
        {"version": "auto", "base_url": "unix:///run/gallery-test/docker.sock", "timeout": 120}
    ]
    engine.close()
    assert fake.closed


def test_inspect_image_maps_tags_and_config_not_container_config() -> None:
    attrs = {
        "Id": "sha256:feedface",
        "RepoTags": ["gallery-env:abc"],
        "Config": {
            "WorkingDir": "/home/jovyan",
            "Labels": {"org.neurolang-gallery.environment": "true"},
        },
        "ContainerConfig": {"WorkingDir": "/wrong", "Labels": {"from": "last build step"}},
    }
    engine = engine_with(FakeAPIClient(images={"gallery-env:abc": attrs}))

    image = engine.inspect_image("gallery-env:abc")

    assert isinstance(image, Image)
    assert image.tags == ["gallery-env:abc"]
    assert image.config == attrs["Config"]


def test_inspect_image_fills_gaps_repo2docker_relies_on() -> None:
    image = image_from_inspect({"RepoTags": None, "Config": {"Labels": None}})

    assert image.tags == []
    assert image.config == {"Labels": None, "WorkingDir": ""}
    assert image_from_inspect({}).config == {"WorkingDir": ""}


def test_inspect_image_of_a_missing_image_is_none() -> None:
    assert engine_with(FakeAPIClient()).inspect_image("nope:1") is None


def test_inspect_image_failure_raises_engine_exception() -> None:
    client = FakeAPIClient(inspect_raises=api_error(500, "daemon is shutting down"))

    with pytest.raises(ContainerEngineException, match="daemon is shutting down"):
        engine_with(client).inspect_image("gallery-env:abc")


def test_describe_docker_error_keeps_urls_out() -> None:
    refused = requests.ConnectionError(
        "Max retries exceeded with url: /v1.41/build?labels=secret",
    )
    refused.__context__ = ConnectionRefusedError(111, "Connection refused")

    described = describe_docker_error(refused)

    assert described == "cannot talk to the Docker engine (ConnectionError: Connection refused)"
    assert describe_docker_error(api_error(404, None)) == "Docker API error 404: Server Error"


def test_repo2docker_builds_a_dockerfile_repository_with_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repo2Docker.build picks the engine by entry-point name and consumes its output."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    client = FakeAPIClient(PROGRESS)
    monkeypatch.setattr(docker_api_engine.docker, "APIClient", lambda **kwargs: client)

    class EntryPoint:
        def load(self) -> type[DockerAPIEngine]:
            return DockerAPIEngine

    monkeypatch.setattr(
        "repo2docker.app.entrypoints.get_group_named",
        lambda group: {ENTRY_POINT_NAME: EntryPoint()} if group == "repo2docker.engines" else {},
    )
    config = Config({"DockerAPIEngine": {"extra_labels": {"org.neurolang-gallery.ref": "main"}}})
    r2d = Repo2Docker(
        config=config,
        engine=ENTRY_POINT_NAME,
        repo=str(tmp_path),
        output_image_spec="gallery-plugin-unit:test",
        user_id=1000,
        user_name="jovyan",
        run=False,
        platform="linux/amd64",
    )

    r2d.build()

    call, labelling = client.build_calls
    assert call["path"] == str(tmp_path)
    assert labelling["tag"] == "gallery-plugin-unit:test"
    assert call["buildargs"] == {"NB_USER": "jovyan", "NB_UID": "1000"}
    labels = label_build(labelling)[1]
    assert labels["org.neurolang-gallery.ref"] == "main"
    assert labels["repo2docker.repo"] == "local"

    client.chunks = [{"error": "RUN failed", "errorDetail": {"message": "RUN failed"}}]
    with pytest.raises(BuildError, match="RUN failed"):
        r2d.build()


# --- only the builder's labels, the slow import, the box, the layers -------------------------


def _dockerfile(call: dict[str, Any]) -> str:
    call["fileobj"].seek(0)
    with tarfile.open(fileobj=call["fileobj"]) as tar:
        member = tar.extractfile("Dockerfile")
        assert member is not None
        return member.read().decode()


def test_the_repositorys_own_gallery_labels_are_overwritten_or_blanked() -> None:
    own = {
        "org.neurolang-gallery.memory-limit-gb": "512",
        "org.neurolang-gallery.environment": "false",
        "org.neurolang-gallery.made-up": "yes",
        "maintainer": "someone",
    }
    client = FakeAPIClient(PROGRESS, images={"sha256:feedface": {"Config": {"Labels": own}}})
    engine = engine_with(client, extra_labels={"org.neurolang-gallery.environment": "true"})
    list(engine.build(path="/ctx", tag="t:1"))
    _, labels = label_build(client.build_calls[1])
    assert labels == {
        "org.neurolang-gallery.environment": "true",
        "org.neurolang-gallery.memory-limit-gb": "",
        "org.neurolang-gallery.made-up": "",
    }
    # Even with no labels to add, a repository's own gallery labels are blanked.
    client = FakeAPIClient(PROGRESS, images={"sha256:feedface": {"Config": {"Labels": own}}})
    list(engine_with(client).build(path="/ctx", tag="t:1"))
    assert len(client.build_calls) == 2
    assert "org.neurolang-gallery.memory-limit-gb" in label_build(client.build_calls[1])[1]


def test_the_slow_import_is_removed_as_root_and_the_user_restored() -> None:
    config = {"User": "jovyan", "Labels": {}}
    client = FakeAPIClient(PROGRESS, images={"sha256:feedface": {"Config": config}})
    engine = engine_with(client, extra_labels={"a": "b"}, trim_slow_imports=True)
    logged = run_like_repo2docker(engine.build(path="/ctx", tag="t:1"))
    dockerfile = _dockerfile(client.build_calls[1])
    lines = dockerfile.splitlines()
    assert lines[0] == "FROM sha256:feedface"
    assert lines[1:3] == ["USER root", f"RUN {docker_api_engine.TRIM_COMMAND}"]
    assert lines[3] == "USER jovyan" and lines[4].startswith("LABEL ")
    assert "rfc3987_syntax" in docker_api_engine.TRIM_COMMAND
    assert client.build_calls[1]["network_mode"] == "none"
    assert any("removing rfc3987_syntax" in line for line in logged)
    # Root images need no USER switch (and get none: USER "" cannot be restored).
    assert docker_api_engine.label_dockerfile("x", {}, trim_user="").splitlines() == [
        "FROM x",
        f"RUN {docker_api_engine.TRIM_COMMAND}",
    ]


def test_a_failed_trim_falls_back_to_the_labels_alone() -> None:
    class TrimFails(FakeAPIClient):
        def build(self, **kwargs: Any) -> Iterator[Any]:
            if len(self.build_calls) == 1:  # the trim step
                self.build_calls.append(kwargs)
                return iter([{"error": "/bin/sh: not found"}])
            return super().build(**kwargs)

    client = TrimFails(PROGRESS)
    engine = engine_with(client, extra_labels={"a": "b"}, trim_slow_imports=True)
    logged = [c.get("stream", "") for c in engine.build(path="/ctx", tag="t:1") if "stream" in c]
    assert "RUN " not in _dockerfile(client.build_calls[2])
    assert any("Could not remove rfc3987_syntax" in line for line in logged)


def test_builds_run_in_the_box_and_report_their_layers(tmp_path: Path) -> None:
    layers = tmp_path / "layers"
    client = FakeAPIClient(PROGRESS)
    engine = engine_with(
        client,
        build_network_mode="container:abc",
        build_limits={"memory": 2**28, "memswap": 2**28, "cpuperiod": 100000, "cpuquota": 50000},
        build_args_extra={"HTTP_PROXY": "http://192.0.2.5:3128"},
        layers_file=str(layers),
        extra_labels={"a": "b"},
    )
    list(engine.build(path="/ctx", tag="t:1", container_limits={"memory": 2**40}))
    first = client.build_calls[0]
    assert first["network_mode"] == "container:abc"
    assert first["container_limits"]["memory"] == 2**28  # the box's limit wins
    assert first["container_limits"]["cpuquota"] == 50000
    assert first["buildargs"]["HTTP_PROXY"] == "http://192.0.2.5:3128"
    # Each build's (the repository's, the label step's) image ids, as the daemon said them.
    reported = layers.read_text().split()
    assert reported[:2] == ["2be1f3282c7e", "sha256:feedface"] and len(reported) == 4


# --- the image check before the last step ------------------------------------------------

SITE = "/opt/venv/lib/python3.11/site-packages"


class CheckingClient(FakeAPIClient):
    """A FakeAPIClient that also runs containers: the image check prints `check_output`."""

    def __init__(self, check_output: str, **kwargs: Any) -> None:
        super().__init__(PROGRESS, **kwargs)
        self.check_output = check_output
        self.containers: list[dict[str, Any]] = []
        self.removed: list[str] = []
        self.order: list[str] = []

    def build(self, **kwargs: Any) -> Iterator[Any]:
        self.order.append("build")
        return super().build(**kwargs)

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.order.append("check")
        self.containers.append(kwargs)
        return {"Id": f"c{len(self.containers)}"}

    def start(self, container: str) -> None:
        pass

    def wait(self, container: str, timeout: float) -> dict[str, int]:
        return {"StatusCode": 0}

    def logs(self, container: str, **kwargs: Any) -> bytes:
        return self.check_output.encode()

    def remove_container(self, container: str, force: bool = False) -> None:
        self.removed.append(container)


def check_output(slow_paths: list[str], *, removable: bool = True, user_uid: int = 1000) -> str:
    data = {
        "python": "3.11.2",
        "workdir": "/home/jovyan",
        "singleuser": True,
        "jupyterhub": "6.1.1",
        "paths": {"app.ipynb": True},
        "slow_import": {
            "paths": slow_paths,
            "removable": removable,
            "uid": 1000,
            "user_uid": user_uid,
        },
    }
    return "noise\nGALLERY-IMAGE-CHECK " + json.dumps(data) + "\n"


def checking_engine(client: CheckingClient, tmp_path: Path) -> DockerAPIEngine:
    return engine_with(
        client,
        extra_labels={"org.neurolang-gallery.environment": "true"},
        trim_slow_imports=True,
        check_image=True,
        check_paths=["app.ipynb"],
        check_container_name="p-check-b1",
        facts_file=str(tmp_path / "facts.json"),
    )


def test_the_check_runs_before_the_last_step_which_adds_its_facts(tmp_path: Path) -> None:
    config = {"User": "1000", "Labels": {COMPATIBILITY_LABEL: "forged by the Dockerfile"}}
    client = CheckingClient(check_output([]), images={"sha256:feedface": {"Config": config}})
    logged = run_like_repo2docker(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    assert client.order == ["build", "check", "build"]
    # The check: the repository's build, sealed like the one after a build, as uid 1000.
    (check,) = client.containers
    assert check["image"] == "sha256:feedface" and check["name"] == "p-check-b1"
    assert check["user"] == "1000" and check["network_disabled"] is True
    assert check["host_config"]["cap_drop"] == ["ALL"]
    assert json.loads(check["environment"]["GALLERY_CHECK_PATHS"]) == ["app.ipynb"]
    assert check["environment"]["GALLERY_CHECK_USER"] == "1000"
    assert client.removed == ["c1"]
    # The facts: one label among the others, in the one LABEL step (the forged one replaced).
    dockerfile = _dockerfile(client.build_calls[1])
    assert dockerfile.splitlines()[0] == "FROM sha256:feedface"
    assert "RUN " not in dockerfile and "USER " not in dockerfile  # nothing to trim
    labels = label_build_any(client.build_calls[1])
    facts = facts_from_labels(labels)
    assert facts is not None and facts.jupyterhub == "6.1.1" and facts.paths == {"app.ipynb": True}
    assert labels["org.neurolang-gallery.environment"] == "true"
    assert any("rfc3987_syntax is not in the image" in line for line in logged)
    # The builder reads the same facts from the file.
    written = json.loads((tmp_path / "facts.json").read_text())
    assert written["data"]["jupyterhub"] == "6.1.1" and written["data"]["checked_at"]


def test_the_slow_import_the_check_found_is_removed_as_the_user_when_it_can(
    tmp_path: Path,
) -> None:
    found = [f"{SITE}/rfc3987_syntax", f"{SITE}/rfc3987_syntax-1.1.0.dist-info"]
    config = {"User": "jovyan", "Labels": {}}
    client = CheckingClient(check_output(found), images={"sha256:feedface": {"Config": config}})
    list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    lines = _dockerfile(client.build_calls[1]).splitlines()
    assert lines[1] == f"RUN rm -rf -- '{found[0]}' '{found[1]}'"
    assert lines[2].startswith("LABEL ") and not any(line.startswith("USER") for line in lines)

    # Not removable by the image's user (root-owned site-packages): as root, USER restored.
    client = CheckingClient(
        check_output(found, removable=False), images={"sha256:feedface": {"Config": config}}
    )
    list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    lines = _dockerfile(client.build_calls[1]).splitlines()
    assert lines[1:4] == ["USER root", f"RUN rm -rf -- '{found[0]}' '{found[1]}'", "USER jovyan"]


def test_a_failed_removal_as_the_user_is_tried_again_as_root(tmp_path: Path) -> None:
    class UserRemovalFails(CheckingClient):
        def build(self, **kwargs: Any) -> Iterator[Any]:
            if len(self.build_calls) == 1:  # the removal as the image's user
                self.build_calls.append(kwargs)
                return iter([{"error": "rm: Permission denied"}])
            return super().build(**kwargs)

    found = [f"{SITE}/rfc3987_syntax"]
    config = {"User": "1000", "Labels": {}}
    client = UserRemovalFails(check_output(found), images={"sha256:feedface": {"Config": config}})
    list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    assert len(client.build_calls) == 3
    assert _dockerfile(client.build_calls[2]).splitlines()[1] == "USER root"


def test_an_untrusted_answer_or_a_failed_check_falls_back_to_searching_everything(
    tmp_path: Path,
) -> None:
    config = {"User": "1000", "Labels": {}}
    # A path that would add a Dockerfile instruction is not believed.
    forged = check_output([f"{SITE}/rfc3987_syntax\nLABEL org.neurolang-gallery.x=1"])
    client = CheckingClient(forged, images={"sha256:feedface": {"Config": config}})
    list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    dockerfile = _dockerfile(client.build_calls[1])
    assert f"RUN {docker_api_engine.TRIM_COMMAND}" in dockerfile
    assert "org.neurolang-gallery.x" not in dockerfile
    # A check that cannot run: the reason for the builder, the old trim, no facts label.
    client = CheckingClient("no marker here", images={"sha256:feedface": {"Config": config}})
    list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    written = json.loads((tmp_path / "facts.json").read_text())
    assert "no marker here" in written["error"] and "data" not in written
    dockerfile = _dockerfile(client.build_calls[1])
    assert f"RUN {docker_api_engine.TRIM_COMMAND}" in dockerfile
    assert COMPATIBILITY_LABEL not in label_build_any(client.build_calls[1])


def label_build_any(call: dict[str, Any]) -> dict[str, str]:
    """The labels of a last step, whatever comes before its LABEL line (values unescaped as
    Docker reads a double-quoted word)."""
    dockerfile = _dockerfile(call)
    label = dockerfile[dockerfile.index("LABEL ") :]
    pair = re.compile(r'"((?:[^"\\]|\\.)*)"="((?:[^"\\]|\\.)*)"')
    return {re.sub(r"\\(.)", r"\1", k): re.sub(r"\\(.)", r"\1", v) for k, v in pair.findall(label)}


# --- the labels as a commit ----------------------------------------------------------------


class CommittingClient(CheckingClient):
    """A CheckingClient that also commits containers (the label step without a build)."""

    def __init__(self, *args: Any, commit_raises: BaseException | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.commits: list[dict[str, Any]] = []
        self.removed_volumes: list[bool] = []
        self.removed_images: list[tuple[str, bool]] = []
        self.commit_raises = commit_raises

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        if kwargs.get("command", [""])[-1].startswith("#(nop) LABEL"):
            self.order.append("label container")
            self.containers.append(kwargs)
            return {"Id": f"c{len(self.containers)}"}
        return super().create_container(**kwargs)

    def commit(self, container: str, **kwargs: Any) -> dict[str, str]:
        self.order.append("commit")
        if self.commit_raises is not None:
            raise self.commit_raises
        self.commits.append({"container": container, **kwargs})
        return {"Id": f"sha256:c0ffee{len(self.commits) - 1:058d}"}

    def remove_image(self, image: str, noprune: bool = False) -> None:
        self.removed_images.append((image, noprune))

    def remove_container(self, container: str, force: bool = False, v: bool = False) -> None:
        self.removed_volumes.append(v)
        super().remove_container(container, force=force)


SERVER_CONFIG = {
    "User": "1000",
    "Env": ["PATH=/opt/venv/bin:/usr/bin", "HOME=/home/jovyan"],
    "Cmd": ["jupyterhub-singleuser", "--ip=0.0.0.0"],
    "WorkingDir": "/home/jovyan",
    "Labels": {"maintainer": "someone", COMPATIBILITY_LABEL: "forged by the Dockerfile"},
}


def test_the_labels_and_facts_are_one_commit_of_the_image_when_it_has_a_command(
    tmp_path: Path,
) -> None:
    layers = tmp_path / "layers"
    client = CommittingClient(
        check_output([]), images={"sha256:feedface": {"Config": SERVER_CONFIG}}
    )
    engine = checking_engine(client, tmp_path)
    engine.layers_file = str(layers)
    logged = run_like_repo2docker(engine.build(path="/ctx", tag="demo:gallery-build-b1"))
    # One build (the repository's), the check, then the commit: no second build request.
    # The commit's container is made while the check runs (it needs only the label keys).
    assert sorted(client.order[1:3]) == ["check", "label container"]
    assert client.order[0] == "build" and client.order[3:] == ["commit"]
    assert len(client.build_calls) == 1
    (commit,) = client.commits
    label_id, label_container = label_container_of(client)
    assert commit["container"] == label_id and label_container["image"] == "sha256:feedface"
    assert label_container["network_disabled"] is True  # and never started
    assert label_container["command"][-1] == "#(nop) LABEL " + " ".join(sorted(conf_labels(commit)))
    assert sorted(client.removed) == ["c1", "c2"]
    assert dict(zip(client.removed, client.removed_volumes, strict=True))[label_id] is True
    assert (commit["repository"], commit["tag"]) == ("demo", "gallery-build-b1")
    # The image's own configuration, with the labels (the builder's win; others stay).
    conf = commit["conf"]
    for key in ("User", "Env", "Cmd", "WorkingDir"):
        assert conf[key] == SERVER_CONFIG[key]
    assert conf["Image"] == "sha256:feedface"
    assert conf["Labels"]["maintainer"] == "someone"
    assert conf["Labels"]["org.neurolang-gallery.environment"] == "true"
    facts = facts_from_labels(conf["Labels"])
    assert facts is not None and facts.jupyterhub == "6.1.1"
    # The log: the step once in the summary; the layers file has the new image.
    summary = [line for line in logged if "LABEL" in line and " ran " in line]
    assert len(summary) == 1 and "(a commit)" in summary[0]
    assert layers.read_text().split()[-1] == "sha256:c0ffee" + "0" * 58


def test_without_a_command_or_when_the_commit_fails_the_labels_are_a_label_build(
    tmp_path: Path,
) -> None:
    # A commit would give an image with no command the label container's: a build instead.
    no_command = {**SERVER_CONFIG, "Cmd": None}
    client = CommittingClient(check_output([]), images={"sha256:feedface": {"Config": no_command}})
    list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    assert client.order == ["build", "check", "build"] and client.commits == []
    assert COMPATIBILITY_LABEL in label_build_any(client.build_calls[1])
    # An entrypoint alone is enough for the commit.
    entrypoint = {**no_command, "Entrypoint": ["tini", "--"]}
    client = CommittingClient(check_output([]), images={"sha256:feedface": {"Config": entrypoint}})
    list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    assert client.order[-1] == "commit" and len(client.build_calls) == 1
    # Docker refuses the commit: the label build, and the label container is gone.
    client = CommittingClient(
        check_output([]),
        images={"sha256:feedface": {"Config": SERVER_CONFIG}},
        commit_raises=api_error(500, "commit failed"),
    )
    logged = run_like_repo2docker(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    assert client.order[-2:] == ["commit", "build"]
    assert sorted(client.removed) == ["c1", "c2"]
    assert any("Could not commit the labels" in line for line in logged)
    assert COMPATIBILITY_LABEL in label_build_any(client.build_calls[1])
    # Something to trim: the one build step that removes it and adds the labels, as before.
    found = [f"{SITE}/rfc3987_syntax"]
    client = CommittingClient(
        check_output(found), images={"sha256:feedface": {"Config": SERVER_CONFIG}}
    )
    list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    assert client.commits == [] and "RUN rm -rf" in _dockerfile(client.build_calls[1])
    # The commit's container made while the check ran is not left behind.
    assert sorted(client.removed) == ["c1", "c2"]


def test_a_failed_check_gets_a_commit_container_for_the_labels_it_really_has(
    tmp_path: Path,
) -> None:
    # (Nothing to trim: a failed check would otherwise mean a search, in a build step.)
    client = CommittingClient(
        "no marker line", images={"sha256:feedface": {"Config": SERVER_CONFIG}}
    )
    list(no_trim_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    (commit,) = client.commits
    # The one made ahead expected the facts label, which the image keeps (a blank: the
    # check's facts are unknown); the same keys: it is used.
    label_id, _ = label_container_of(client)
    assert commit["container"] == label_id
    assert conf_labels(commit)[COMPATIBILITY_LABEL] == ""
    assert sorted(client.removed) == ["c1", "c2"]
    # An image without the facts label: the keys differ; a container for them instead.
    plain = {**SERVER_CONFIG, "Labels": {"maintainer": "someone"}}
    client = CommittingClient("no marker line", images={"sha256:feedface": {"Config": plain}})
    list(no_trim_engine(client, tmp_path).build(path="/ctx", tag="t:1"))
    (commit,) = client.commits
    assert COMPATIBILITY_LABEL not in conf_labels(commit)
    made = [c for c in client.containers if c["command"][-1].startswith("#(nop) LABEL")]
    assert len(made) == 2 and COMPATIBILITY_LABEL in made[0]["command"][-1]
    assert made[1]["command"][-1] == "#(nop) LABEL " + " ".join(sorted(conf_labels(commit)))
    assert sorted(client.removed) == ["c1", "c2", "c3"]


def no_trim_engine(client: CheckingClient, tmp_path: Path) -> DockerAPIEngine:
    engine = checking_engine(client, tmp_path)
    engine.trim_slow_imports = False
    return engine


def label_container_of(client: CommittingClient) -> tuple[str, dict[str, Any]]:
    """The id and arguments of the (one) commit container the engine made."""
    (found,) = [
        (f"c{number}", kwargs)
        for number, kwargs in enumerate(client.containers, start=1)
        if kwargs["command"][-1].startswith("#(nop) LABEL")
    ]
    return found


def conf_labels(commit: dict[str, Any]) -> dict[str, str]:
    """The labels a commit gave, without the image's own that the builder does not set."""
    return {k: v for k, v in commit["conf"]["Labels"].items() if k != "maintainer"}


# --- the commit made during the check, on the facts of the image it replaces --------------

PREVIOUS = "sha256:previous"


def previous_image(facts: dict[str, Any]) -> dict[str, Any]:
    """The image a rebuild replaces (its cache source), checked an hour ago with `facts`."""
    data = {**facts, "checked_at": "2026-01-01T00:00:00Z"}
    label = facts_from_json(data)
    assert label is not None
    return {"Config": {**SERVER_CONFIG, "Labels": {COMPATIBILITY_LABEL: label.to_label()}}}


def check_facts() -> dict[str, Any]:
    """What `check_output([])` says, as facts."""
    line = check_output([]).splitlines()[-1]
    return json.loads(line.removeprefix("GALLERY-IMAGE-CHECK "))


def test_a_rebuild_commits_its_labels_during_the_check_when_the_facts_stay(
    tmp_path: Path,
) -> None:
    layers = tmp_path / "layers"
    images = {"sha256:feedface": {"Config": SERVER_CONFIG}, PREVIOUS: previous_image(check_facts())}
    client = CommittingClient(check_output([]), images=images)
    engine = checking_engine(client, tmp_path)
    engine.layers_file = str(layers)
    logged = run_like_repo2docker(
        engine.build(path="/ctx", tag="demo:gallery-build-b1", cache_from=[PREVIOUS])
    )
    # One commit, made beside the check (untagged), then tagged: nothing removed.
    (commit,) = client.commits
    assert (commit["repository"], commit["tag"]) == (None, None)
    assert client.tag_calls == [("sha256:c0ffee" + "0" * 58, "demo", "gallery-build-b1")]
    assert client.removed_images == []
    # Its facts are this check's: the same as before, checked now.
    facts = facts_from_labels(commit["conf"]["Labels"])
    assert facts is not None and facts.jupyterhub == "6.1.1"
    assert facts.checked_at > "2026-01-01T00:00:00Z"
    recorded = json.loads((tmp_path / "facts.json").read_text())["data"]
    assert facts.checked_at == recorded["checked_at"]
    summary = [line for line in logged if "LABEL" in line and " ran " in line]
    assert len(summary) == 1 and "(a commit, made during the check)" in summary[0]
    assert layers.read_text().split().count("sha256:c0ffee" + "0" * 58) >= 1
    # The check's container and the commit's own are gone.
    assert len(client.removed) == 2


def test_when_the_facts_changed_the_guessed_commit_goes_and_the_real_one_is_made(
    tmp_path: Path,
) -> None:
    older = {**check_facts(), "jupyterhub": "5.2.1"}
    images = {"sha256:feedface": {"Config": SERVER_CONFIG}, PREVIOUS: previous_image(older)}
    client = CommittingClient(check_output([]), images=images)
    logged = run_like_repo2docker(
        checking_engine(client, tmp_path).build(path="/ctx", tag="t:1", cache_from=[PREVIOUS])
    )
    guessed, real = client.commits
    assert facts_from_labels(guessed["conf"]["Labels"]).jupyterhub == "5.2.1"  # type: ignore[union-attr]
    # The guess is removed, never its parent (the repository's untagged build).
    assert client.removed_images == [("sha256:c0ffee" + "0" * 58, True)]
    assert (real["repository"], real["tag"]) == ("t", "1")
    assert facts_from_labels(real["conf"]["Labels"]).jupyterhub == "6.1.1"  # type: ignore[union-attr]
    assert client.tag_calls == []
    summary = [line for line in logged if "LABEL" in line and " ran " in line]
    assert len(summary) == 1 and "(a commit)" in summary[0]


def test_no_guess_without_a_cache_source_or_with_facts_for_other_paths(tmp_path: Path) -> None:
    other_paths = {**check_facts(), "paths": {"other.ipynb": True}}
    for cache_from, previous in (([], check_facts()), ([PREVIOUS], other_paths)):
        images = {"sha256:feedface": {"Config": SERVER_CONFIG}, PREVIOUS: previous_image(previous)}
        client = CommittingClient(check_output([]), images=images)
        list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1", cache_from=cache_from))
        # The commit container made ahead, one commit under the tag, nothing to remove.
        (commit,) = client.commits
        assert (commit["repository"], commit["tag"]) == ("t", "1")
        assert commit["container"] == label_container_of(client)[0]
        assert client.removed_images == []


def test_a_guessed_commit_is_removed_when_the_last_step_is_a_build(tmp_path: Path) -> None:
    # The check finds the slow import after all: the last step is the build that removes it.
    images = {"sha256:feedface": {"Config": SERVER_CONFIG}, PREVIOUS: previous_image(check_facts())}
    client = CommittingClient(check_output([f"{SITE}/rfc3987_syntax"]), images=images)
    list(checking_engine(client, tmp_path).build(path="/ctx", tag="t:1", cache_from=[PREVIOUS]))
    assert len(client.commits) == 1 and "RUN rm -rf" in _dockerfile(client.build_calls[1])
    assert client.removed_images == [("sha256:c0ffee" + "0" * 58, True)]
