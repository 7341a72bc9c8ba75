"""The data fill's decisions and its containers, against a fake Docker API."""

from types import SimpleNamespace

import pytest

from gallery_builder.data_fill import (
    FILL_LABEL,
    DataFiller,
    FillOutcome,
    FillSettings,
    example_folder,
    proxy_environment,
)
from gallery_common.gallery_file import parse_gallery
from gallery_common.image_compatibility import ImageFacts
from gallery_common.image_labels import MARKER_LABEL, MEMORY_LIMIT_LABEL

EXAMPLE = {"title": "t", "repo_url": "https://x.org", "image_url": "a.svg"}
GALLERY = parse_gallery(
    {
        "images": {"n": {"repo": "https://x.org/n.git", "data": {"path": "gallery/data"}}},
        "examples": {
            "a": {**EXAMPLE, "path": "gallery/A.py", "image_name": "n:main"},
            "b": {**EXAMPLE, "path": "gallery/B.py", "image_name": "n:main"},
            "c": {**EXAMPLE, "path": "C.py", "image_name": "other:main"},
        },
    }
)
FACTS = ImageFacts(
    jupyterhub="6.1.1",
    singleuser=True,
    workdir="/home/jovyan",
    paths={"gallery/A.py": True, "gallery/B.py": False},
)


def settings(**changes) -> FillSettings:
    env = {"GALLERY_PROJECT": "p", **changes}
    return FillSettings.from_env(env)


def test_settings_follow_the_stack_and_the_egress_policy():
    s = settings()
    assert (s.network, s.data_volume, s.egress_proxy) == (
        "p-users",
        "p-gallery-data",
        "http://egress:3128",
    )
    assert s.after_build is True and s.timeout_s == 1800
    none = settings(GALLERY_USER_EGRESS="none", GALLERY_FILL_AFTER_BUILD="false")
    assert none.egress_proxy == "" and none.after_build is False
    assert proxy_environment("") == {}
    assert proxy_environment("http://egress:3128")["HTTPS_PROXY"] == "http://egress:3128"


def test_an_example_runs_from_its_own_folder():
    assert example_folder(FACTS, "gallery/A.py") == "/home/jovyan/gallery"
    assert example_folder(None, "app.ipynb") == "/home/jovyan"


class FakeApi:
    """The docker-py calls the fill makes; every container ends with status 0."""

    def __init__(self):
        self.created = []
        self.removed = []

    def inspect_volume(self, name):
        return {"Mountpoint": f"/var/lib/docker/volumes/{name}/_data"}

    def inspect_network(self, name):
        return {"IPAM": {"Config": [{"Subnet": "172.30.0.0/16", "Gateway": "172.30.0.1"}]}}

    def create_host_config(self, **kwargs):
        return kwargs

    def create_container(self, **kwargs):
        self.created.append(kwargs)
        return {"Id": f"c{len(self.created)}"}

    def start(self, container):
        pass

    def wait(self, container, timeout):
        return {"StatusCode": 0}

    def logs(self, container, stream=False, follow=False, **_):
        return iter([b"cell 1/1 ran\n"]) if stream else b""

    def remove_container(self, container, force):
        self.removed.append(container)

    def containers(self, all, filters):
        return [{"Id": f"c{n + 1}"} for n, c in enumerate(self.created) if filters["label"]
                == f"{FILL_LABEL}={c['labels'][FILL_LABEL]}"]  # fmt: skip


def filler():
    api = FakeApi()
    images = SimpleNamespace(
        api=api,
        inspect=lambda image: {
            "Config": {"Labels": {MARKER_LABEL: "true", MEMORY_LIMIT_LABEL: "4"}}
        },
    )
    return DataFiller(images, settings()), api


def test_a_fill_seeds_seals_and_runs_each_example_whose_file_is_there():
    fill, api = filler()
    lines = []
    outcome = fill.fill("n:main", GALLERY, FACTS, 6, lines.append)
    assert outcome == FillOutcome(1, (), ("b: gallery/B.py is not in the image (in /home/jovyan)",))
    seed, holder, seal, example = api.created
    assert seed["user"] == "root" and seed["network_disabled"] is True
    assert seed["host_config"]["binds"] == {
        "/var/lib/docker/volumes/p-gallery-data/_data/images/n": {
            "bind": "/gallery-seed",
            "mode": "rw",
        }
    }
    assert holder["host_config"]["network_mode"] == "p-users"
    assert seal["host_config"]["network_mode"] == "container:c2"
    assert "-A OUTPUT -d 172.30.0.1/32 -j REJECT" in seal["environment"]["RULES4"]
    assert example["host_config"]["network_mode"] == "container:c2"
    assert example["host_config"]["binds"] == {
        "/var/lib/docker/volumes/p-gallery-data/_data/images/n": {
            "bind": "/home/jovyan/gallery/data",
            "mode": "rw",
        }
    }
    assert example["user"] == "1000" and example["working_dir"] == "/home/jovyan/gallery"
    assert example["host_config"]["mem_limit"] == "4g"
    assert example["environment"]["HTTP_PROXY"] == "http://egress:3128"
    assert example["command"][-1] == "A.py"
    assert "  cell 1/1 ran" in lines and lines[-1].startswith("Data filled")
    # Every container is the stack's (README's remove command) and the fill's (leftovers).
    for container in api.created:
        assert container["labels"]["com.docker.compose.project"] == "p"
        assert container["labels"]["com.docker.compose.service"] == "user-servers"
        assert container["labels"][FILL_LABEL] == "p"
    assert sorted(api.removed) == ["c1", "c2", "c3", "c4"]


def test_a_failure_after_the_network_holder_started_removes_it():
    fill, api = filler()

    def say(line):
        if "sealed" in line:
            raise RuntimeError("the log is gone")

    with pytest.raises(RuntimeError):
        fill.fill("n:main", GALLERY, FACTS, 6, say)
    assert "c2" in api.removed  # the holder


def test_a_restarted_builder_removes_the_containers_of_an_interrupted_fill():
    fill, api = filler()
    api.created = [{"labels": {FILL_LABEL: "p"}}, {"labels": {FILL_LABEL: "other"}}]
    assert fill.remove_leftovers() == 1
    assert api.removed == ["c1"]


def test_nothing_runs_without_data_or_for_an_image_the_hub_cannot_run():
    fill, api = filler()
    lines = []
    assert fill.fill("other:main", GALLERY, FACTS, 6, lines.append) == FillOutcome(0)
    assert "no `data:`" in lines[0]
    old = ImageFacts(jupyterhub="1.4.0", singleuser=True)
    skipped = fill.fill("n:main", GALLERY, old, 6, lines.append)
    assert skipped.ran == 0 and "jupyterhub 1.4.0" in skipped.skipped[0]
    assert api.created == []
