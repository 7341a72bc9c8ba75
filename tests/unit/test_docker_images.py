"""DockerImages against a fake docker-py client: no Docker daemon needed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from docker.errors import APIError, NotFound

from gallery_builder import docker_images
from gallery_builder.docker_images import (
    BUILD_TAG_PREFIX,
    DockerImages,
    build_tag,
    is_build_tag,
    split_image_name,
)
from gallery_common.image_labels import make_labels

COMMIT = "c" * 40
LABELS = make_labels(
    repository="https://example.org/demo.git",
    ref="main",
    commit=COMMIT,
    display_name="demo",
    memory_limit_gb=2,
    cpu_limit=0.5,
    builder_version="1.0",
)


def inspect_data(image_id: str, labels: dict[str, str] | None, size: int = 1234) -> dict[str, Any]:
    return {
        "Id": image_id,
        "Size": size,
        "Config": {"Labels": labels},
        # What the last build step's container saw: must never be read.
        "ContainerConfig": {"Labels": {"org.neurolang-gallery.environment": "true"}},
    }


class FakeAPI:
    """The slice of docker.APIClient DockerImages uses, with scripted answers."""

    def __init__(self) -> None:
        self.inspected: dict[str, dict[str, Any]] = {}
        self.summaries: list[dict[str, Any]] = []
        self.container_list: list[dict[str, Any]] = []
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.remove_raises: BaseException | None = None

    def inspect_image(self, image: str) -> dict[str, Any]:
        self.calls.append(("inspect_image", (image,), {}))
        if image not in self.inspected:
            raise NotFound(f"No such image: {image}")
        return self.inspected[image]

    def images(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append(("images", (), kwargs))
        return self.summaries

    def containers(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append(("containers", (), kwargs))
        return self.container_list

    def remove_image(self, image: str, **kwargs: Any) -> None:
        self.calls.append(("remove_image", (image,), kwargs))
        if self.remove_raises is not None:
            raise self.remove_raises

    def tag(self, image: str, repository: str, tag: str) -> bool:
        self.calls.append(("tag", (image, repository, tag), {}))
        return True

    def info(self) -> dict[str, Any]:
        self.calls.append(("info", (), {}))
        return {"DockerRootDir": "/nowhere/docker"}


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeAPI()
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def images(client: FakeClient) -> DockerImages:
    return DockerImages(client)  # type: ignore[arg-type]


def test_connects_lazily_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeClient] = []

    def from_env() -> FakeClient:
        made.append(FakeClient())
        return made[-1]

    monkeypatch.setattr(docker_images.docker, "from_env", from_env)
    images = DockerImages()
    assert made == []
    assert images.exists("demo:main") is False
    assert images.exists("demo:main") is False
    assert len(made) == 1
    images.close()
    assert made[0].closed


def test_exists(images: DockerImages, client: FakeClient) -> None:
    client.api.inspected["demo:main"] = inspect_data("sha256:1", LABELS)
    assert images.exists("demo:main")
    assert not images.exists("other:main")


def test_labels_come_from_config_labels(images: DockerImages, client: FakeClient) -> None:
    client.api.inspected["demo:main"] = inspect_data("sha256:1", LABELS)
    labels = images.labels("demo:main")
    assert labels is not None
    assert labels.commit == COMMIT
    assert labels.memory_limit_gb == 2
    assert labels.cpu_limit == 0.5
    assert labels.display_name == "demo"


def test_labels_ignore_container_config(images: DockerImages, client: FakeClient) -> None:
    client.api.inspected["plain:latest"] = inspect_data("sha256:2", None)
    assert images.labels("plain:latest") is None


def test_labels_of_a_missing_or_foreign_image_are_none(
    images: DockerImages, client: FakeClient
) -> None:
    client.api.inspected["python:3"] = inspect_data("sha256:3", {"maintainer": "someone"})
    assert images.labels("python:3") is None
    assert images.labels("missing:latest") is None


def test_size(images: DockerImages, client: FakeClient) -> None:
    client.api.inspected["demo:main"] = inspect_data("sha256:1", LABELS, size=98765)
    assert images.size("demo:main") == 98765
    assert images.size("missing:latest") is None


def test_remove_never_forces_and_keeps_parents(images: DockerImages, client: FakeClient) -> None:
    assert images.remove("demo:main") is True
    assert client.api.calls[-1] == (
        "remove_image",
        ("demo:main",),
        {"force": False, "noprune": True},
    )


def test_remove_can_prune(images: DockerImages, client: FakeClient) -> None:
    images.remove("demo:gallery-build-1", prune=True)
    assert client.api.calls[-1][2] == {"force": False, "noprune": False}


def test_remove_of_a_missing_image_is_false(images: DockerImages, client: FakeClient) -> None:
    client.api.remove_raises = NotFound("No such image")
    assert images.remove("demo:main") is False


def test_remove_passes_conflicts_on(images: DockerImages, client: FakeClient) -> None:
    client.api.remove_raises = APIError("conflict: image is being used by running container")
    with pytest.raises(APIError):
        images.remove("demo:main")


def test_running_containers_using_matches_the_image_id(
    images: DockerImages, client: FakeClient
) -> None:
    client.api.inspected["demo:main"] = inspect_data("sha256:aaa", LABELS)
    client.api.container_list = [
        {"Id": "1" * 64, "Names": ["/jupyter-bob"], "Image": "demo:main", "ImageID": "sha256:aaa"},
        # The same name, but it now points at another image: the container runs the old one.
        {"Id": "2" * 64, "Names": ["/jupyter-eve"], "Image": "demo:main", "ImageID": "sha256:old"},
        {"Id": "3" * 64, "Names": ["/jupyter-al"], "Image": "sha256:aaa", "ImageID": "sha256:aaa"},
        {"Id": "4" * 64, "Names": [], "ImageID": "sha256:aaa"},
    ]
    assert images.running_containers_using("demo:main") == [
        "444444444444",
        "jupyter-al",
        "jupyter-bob",
    ]
    assert ("containers", (), {"filters": {"status": "running"}}) in client.api.calls


def test_running_containers_of_a_missing_image(images: DockerImages, client: FakeClient) -> None:
    assert images.running_containers_using("missing:latest") == []
    assert not any(call[0] == "containers" for call in client.api.calls)


def test_remove_build_leftovers(images: DockerImages, client: FakeClient) -> None:
    client.api.summaries = [
        {"Id": "sha256:1", "RepoTags": ["demo:main"], "Labels": LABELS},
        {"Id": "sha256:2", "RepoTags": [f"demo:{BUILD_TAG_PREFIX}abc"], "Labels": LABELS},
    ]
    assert images.remove_build_leftovers() == [f"demo:{BUILD_TAG_PREFIX}abc"]
    removed = [call for call in client.api.calls if call[0] == "remove_image"]
    assert removed == [
        ("remove_image", (f"demo:{BUILD_TAG_PREFIX}abc",), {"force": False, "noprune": False})
    ]


def test_tag_splits_the_name(images: DockerImages, client: FakeClient) -> None:
    images.tag("demo:gallery-build-1", "demo:main")
    assert client.api.calls[-1] == ("tag", ("demo:gallery-build-1", "demo", "main"), {})


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("demo:main", ("demo", "main")),
        ("demo", ("demo", "latest")),
        ("registry:5000/demo", ("registry:5000/demo", "latest")),
        ("registry:5000/demo:v1", ("registry:5000/demo", "v1")),
    ],
)
def test_split_image_name(image: str, expected: tuple[str, str]) -> None:
    assert split_image_name(image) == expected


def test_build_tags() -> None:
    tag = build_tag("demo:main", "0123abcd")
    assert tag == f"demo:{BUILD_TAG_PREFIX}0123abcd"
    assert is_build_tag(tag)
    assert not is_build_tag("demo:main")
    # Anything odd in an id is dropped rather than breaking the image name.
    assert build_tag("demo:main", "../x y") == f"demo:{BUILD_TAG_PREFIX}..xy"


def test_the_data_root_is_asked_once_and_its_free_space_each_time(
    images: DockerImages, client: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = iter([5, 3])
    monkeypatch.setattr(
        "gallery_builder.docker_images.shutil.disk_usage",
        lambda path: SimpleNamespace(total=10, used=10 - (f := next(free)), free=f),
    )
    assert images.data_root_usage().free == 5
    assert images.data_root_usage().free == 3  # read again
    assert [call[0] for call in client.api.calls] == ["info"]  # `docker info` once
    images.close()  # a new connection asks again (the daemon may have restarted)
    monkeypatch.setattr(
        "gallery_builder.docker_images.shutil.disk_usage",
        lambda path: SimpleNamespace(total=10, used=9, free=1),
    )
    images._client = client  # type: ignore[assignment]
    images.data_root_usage()
    assert [call[0] for call in client.api.calls] == ["info", "info"]
