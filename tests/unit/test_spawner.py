"""GallerySpawner: the gate every start passes, and what a user container gets.

Docker is a fake here (the end-to-end tests run the real one); DockerSpawner's own start
is replaced by a stub that records what it would have started.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import yaml
from dockerspawner import DockerSpawner
from tornado import web

from gallery_common.image_compatibility import COMPATIBILITY_LABEL, ImageFacts
from gallery_common.image_labels import MARKER_LABEL, MEMORY_LIMIT_LABEL
from gallery_hub import gallery_limits
from gallery_hub.gallery_limits import GalleryLimits
from gallery_hub.spawner import GallerySpawner as RealSpawner
from gallery_hub.spawner import LaunchRefused
from gallery_hub.visitors import VISITOR_GROUP

WAIT_UNTIL_ANSWERING = RealSpawner.wait_until_answering  # before the fixture replaces it

GALLERY = {
    "examples": {
        "demo": {
            "title": "Demo",
            "description": "d",
            "path": "app.ipynb",
            "repo_url": "https://git.example.org/demo",
            "image_name": "gallery-demo:main",
            "image_url": "d.svg",
        }
    }
}


class FakeDocker:
    """Answers the Docker calls the spawner makes, and records them."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.images = {
            "gallery-demo:main": {MARKER_LABEL: "true", MEMORY_LIMIT_LABEL: "512"},
            "other:v1": {MARKER_LABEL: "true"},
        }
        self.seal_status = 0

    def __call__(self, method, *args, **kwargs):
        self.calls.append((method, args, kwargs))
        answer = getattr(self, "do_" + method)(*args, **kwargs)
        future = asyncio.get_running_loop().create_future()
        future.set_result(answer)
        return future

    def do_images(self, filters):
        return [{"RepoTags": [tag], "Labels": labels} for tag, labels in self.images.items()]

    def do_inspect_image(self, image):
        return {"Config": {"Labels": self.images[image]}}

    def do_info(self):
        return {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}

    def do_inspect_network(self, name):
        return {"IPAM": {"Config": [{"Subnet": "172.27.0.0/16", "Gateway": "172.27.0.1"}]}}

    def do_create_container(self, **kwargs):
        return {"Id": "helper-id"}

    def do_start(self, container_id):
        return None

    def do_wait(self, container_id, timeout):
        return {"StatusCode": self.seal_status}

    def do_logs(self, container_id):
        return b"iptables-restore: line 3 failed"

    def do_remove_container(self, container_id, **kwargs):
        return None

    def do_stop(self, container_id, **kwargs):
        return None

    def do_put_archive(self, container_id, path, data):
        return True

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


class GallerySpawner(RealSpawner):
    """The real spawner, named without JupyterHub's database (`name` comes from it)."""

    started_with: dict | None = None
    server_name = ""

    @property
    def name(self):
        return self.server_name


@pytest.fixture(autouse=True)
def fresh_limits(monkeypatch):
    GalleryLimits.clear_instance()
    monkeypatch.setattr(gallery_limits, "free_disk_bytes", lambda: 100 * 2**30)

    async def started(self):
        self.started_with = {"image": self.image, "mem": self.mem_limit, "cpu": self.cpu_limit}
        return ("172.27.0.9", 8888)

    async def answering(self, url):
        self.answered = url

    monkeypatch.setattr(DockerSpawner, "start", started)
    monkeypatch.setattr(RealSpawner, "wait_until_answering", answering)
    yield
    GalleryLimits.clear_instance()


@pytest.fixture
def gallery_file(tmp_path):
    path = tmp_path / "gallery.yaml"
    path.write_text(yaml.safe_dump(GALLERY))
    return str(path)


def make_user(name: str, visitor: bool, users: dict) -> SimpleNamespace:
    groups = [SimpleNamespace(name=VISITOR_GROUP)] if visitor else []
    user = SimpleNamespace(
        name=name,
        escaped_name=name,
        groups=groups,
        admin=False,
        spawners={},
        settings={"users": users},
        url=f"/user/{name}/",
        base_url=f"/user/{name}/",
    )
    users[name] = user
    return user


def make_spawner(gallery_file, user, server="demo", options=None, address=None, **traits):
    spawner = GallerySpawner(user=user, gallery_file=gallery_file, **traits)
    spawner.server_name = server
    spawner.docker = FakeDocker()
    spawner.user_options = options or {}
    spawner.mem_limit, spawner.cpu_limit = 2 * 1024**3, 1.0
    if address:
        spawner.handler = SimpleNamespace(request=SimpleNamespace(remote_ip=address))
    user.spawners[server] = spawner
    return spawner


def running(spawner, ready=True):
    """Mark a spawner as started (JupyterHub's flags, without a server)."""
    spawner._spawn_pending = not ready
    spawner._server = SimpleNamespace(ip="x") if ready else None


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_visitor_runs_its_example_with_the_examples_image_whatever_it_asked(gallery_file):
    users = {}
    spawner = make_spawner(
        gallery_file, make_user("v1", True, users), options={"image": "neurolang-gallery/hub"}
    )
    assert run(spawner.start()) == ("172.27.0.9", 8888)
    assert spawner.answered == ("172.27.0.9", 8888) and spawner.phase == "connecting"
    assert spawner.started_with["image"] == "gallery-demo:main"
    assert spawner.user_options == {"image": "gallery-demo:main"}


@pytest.mark.parametrize("server", ["", "mine", "unknown-example"])
def test_a_visitor_may_not_start_a_default_or_free_form_server(gallery_file, server):
    spawner = make_spawner(gallery_file, make_user("v1", True, {}), server=server)
    with pytest.raises(web.HTTPError) as refused:
        run(spawner.start())
    assert refused.value.status_code == 403
    assert "only the gallery's examples" in refused.value.log_message


def test_the_gallery_cap_holds_for_starts_from_any_path(gallery_file):
    GalleryLimits.instance(max_servers=1)
    users = {}
    first = make_spawner(gallery_file, make_user("v1", True, users))
    run(first.start())
    running(first)
    second = make_spawner(gallery_file, make_user("v2", True, users))
    with pytest.raises(LaunchRefused) as refused:
        run(second.start())
    assert refused.value.status_code == 429
    assert refused.value.headers["Retry-After"] == "15"
    assert second.started_with is None
    # Once the first one stops, there is room again.
    running(first, ready=False)
    first._spawn_pending = False
    run(first.stop())
    run(second.start())
    assert second.started_with["image"] == "gallery-demo:main"


def test_the_per_address_limit_counts_starts_through_the_api_too(gallery_file):
    GalleryLimits.instance(launches_per_minute=1)
    users = {}
    run(make_spawner(gallery_file, make_user("v1", True, users), address="10.0.0.7").start())
    again = make_spawner(gallery_file, make_user("v2", True, users), address="10.0.0.7")
    with pytest.raises(LaunchRefused) as refused:
        run(again.start())
    assert "address" in refused.value.log_message


def test_low_disk_refuses_everyone(gallery_file, monkeypatch):
    monkeypatch.setattr(gallery_limits, "free_disk_bytes", lambda: 2**30)
    admin = make_spawner(gallery_file, make_user("admin", False, {}), server="", options={})
    admin.user_options = {"image": "other:v1"}
    with pytest.raises(LaunchRefused) as refused:
        run(admin.start())
    assert "disk space" in refused.value.log_message


def test_other_users_pick_any_built_environment_but_nothing_else(gallery_file):
    user = make_user("alice", False, {})
    spawner = make_spawner(gallery_file, user, server="", options={"image": "other:v1"})
    run(spawner.start())
    assert spawner.started_with["image"] == "other:v1"
    bad = make_spawner(gallery_file, user, server="x", options={"image": "python:3.12"})
    with pytest.raises(web.HTTPError) as refused:
        run(bad.start())
    assert refused.value.status_code == 400
    assert "not a built environment (built: gallery-demo:main, other:v1)" in (
        refused.value.log_message
    )


def test_an_image_label_never_raises_limits_above_the_maxima(gallery_file):
    user = make_user("alice", False, {})
    spawner = make_spawner(
        gallery_file, user, server="", options={"image": "gallery-demo:main"}, max_memory_gb=4
    )
    run(spawner.start())
    assert spawner.started_with["mem"] == 4 * 1024**3  # the label asked for 512 GB


def test_the_options_form_lists_environments_but_not_to_visitors(gallery_file):
    alice = make_spawner(gallery_file, make_user("alice", False, {}), server="")
    assert "gallery-demo:main" in run(alice.render_options_form())
    visitor = make_spawner(gallery_file, make_user("v1", True, {}))
    assert run(visitor.render_options_form()) == ""


def test_user_containers_are_bounded_and_labelled_for_compose(gallery_file):
    spawner = make_spawner(
        gallery_file, make_user("v1", True, {}), compose_project="proj", disk_quota="10G"
    )
    config = run(spawner.host_config())
    assert config["tmpfs"]["/tmp"].startswith("rw,exec,nosuid,nodev,size=256m")
    assert config["log_config"]["config"] == {"max-size": "10m", "max-file": "2"}
    assert config["cap_drop"] == ["ALL"] and config["pids_limit"] == 512
    assert "storage_opt" not in config  # ext4 here: no quota
    labels = spawner.extra_create_kwargs["labels"]
    assert labels["com.docker.compose.project"] == "proj"
    assert labels["com.docker.compose.service"] == "user-servers"


def test_a_quota_where_the_storage_driver_supports_it(gallery_file, monkeypatch):
    monkeypatch.setattr(GallerySpawner, "_quota_supported", None)
    spawner = make_spawner(gallery_file, make_user("v1", True, {}), disk_quota="10G")
    spawner.docker.do_info = lambda: {
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "xfs"]],
    }
    assert run(spawner.host_config())["storage_opt"] == {"size": "10G"}


def test_the_egress_proxy_is_in_the_environment_and_the_hub_is_not_proxied(
    gallery_file, monkeypatch
):
    monkeypatch.setattr(DockerSpawner, "get_env", lambda self: {"JUPYTERHUB_API_TOKEN": "t"})
    spawner = make_spawner(
        gallery_file, make_user("v1", True, {}), egress_proxy="http://egress:3128"
    )
    spawner.hub_connect_url = "http://hub:8081"
    env = spawner.get_env()
    assert env["HTTPS_PROXY"] == env["http_proxy"] == "http://egress:3128"
    assert env["NO_PROXY"].split(",")[0] == "hub"
    plain = make_spawner(gallery_file, make_user("v2", True, {}))
    assert "HTTP_PROXY" not in plain.get_env()


def test_the_network_is_sealed_by_a_helper_in_the_containers_namespace(gallery_file):
    spawner = make_spawner(gallery_file, make_user("v1", True, {}), network_seal_image="seal:1")
    spawner.object_id = "user-container"
    run(spawner.seal_network())
    create = next(c for c in spawner.docker.calls if c[0] == "create_container")[2]
    assert create["image"] == "seal:1" and create["user"] == "root"
    assert create["host_config"]["NetworkMode"] == "container:user-container"
    assert create["host_config"]["CapAdd"] == ["NET_ADMIN", "NET_RAW"]
    assert "-A OUTPUT -d 172.27.0.1/32 -j REJECT" in create["environment"]["RULES4"]
    assert spawner.docker.names()[-1] == "remove_container"


def test_a_failed_seal_fails_the_start(gallery_file):
    spawner = make_spawner(gallery_file, make_user("v1", True, {}), network_seal_image="seal:1")
    spawner.object_id = "user-container"
    spawner.docker.seal_status = 1
    with pytest.raises(RuntimeError, match="could not seal the network: iptables-restore"):
        run(spawner.seal_network())
    assert spawner.docker.names()[-1] == "remove_container"


def test_a_started_server_is_noticed_as_soon_as_it_answers(gallery_file, monkeypatch):
    """The real wait: against a local server that starts answering after a moment."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class Api(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Api)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(GallerySpawner, "wait_until_answering", WAIT_UNTIL_ANSWERING)
    spawner = make_spawner(gallery_file, make_user("v1", True, {}))
    spawner._server = SimpleNamespace(base_url="/user/v1/demo/")
    try:
        run(spawner.wait_until_answering(("127.0.0.1", port)))
    finally:
        server.shutdown()
    assert seen == ["/user/v1/demo/api"]


def test_a_slow_answer_on_a_busy_hub_is_asked_again_not_a_failed_start(gallery_file, monkeypatch):
    """Under a crowd the hub's loop is late; a timed-out check is not a failure."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.simple_httpclient import HTTPTimeoutError

    answers = [HTTPTimeoutError("Timeout while resolving 172.27.0.9"), OSError("refused")]

    async def fetch(self, url, **kwargs):
        if answers:
            raise answers.pop(0)
        return SimpleNamespace(code=200)

    monkeypatch.setattr(AsyncHTTPClient, "fetch", fetch)
    monkeypatch.setattr(GallerySpawner, "wait_until_answering", WAIT_UNTIL_ANSWERING)
    spawner = make_spawner(gallery_file, make_user("v1", True, {}))
    spawner._server = SimpleNamespace(base_url="/user/v1/demo/")
    run(spawner.wait_until_answering(("172.27.0.9", 8888)))
    assert answers == []


@pytest.fixture
def broken_demo(tmp_path):
    """The demo example's last verification failed."""
    from gallery_common.verifier_contract import RenderError
    from gallery_hub.gallery_verification import GalleryVerification
    from gallery_hub.verification_results import VerificationResult

    GalleryVerification.clear_instance()
    results = GalleryVerification.instance(results_dir=str(tmp_path / "v")).results()
    error = RenderError("error-output", "'sessions'", 3, 4, "KeyError")
    results.record(
        VerificationResult(
            "demo", False, "2026-12-01T10:00:00+00:00", "gallery-demo:main", "sha256:1", None,
            "f", 1.0, 5.0, error,
        ),
        None,
        None,
    )  # fmt: skip
    yield
    GalleryVerification.clear_instance()


def test_a_visitor_may_not_start_a_broken_example_but_the_system_visitor_may(
    gallery_file, broken_demo
):
    from gallery_hub.system_visitor import SYSTEM_GROUP

    visitor = make_spawner(gallery_file, make_user("v1", True, {}))
    with pytest.raises(LaunchRefused) as refused:
        run(visitor.start())
    assert refused.value.status_code == 503
    assert "being fixed" in refused.value.log_message
    assert "KeyError in cell 3 of 4" in refused.value.log_message
    assert visitor.started_with is None

    system = make_user("gallery-verifier", False, {})
    system.groups = [SimpleNamespace(name=SYSTEM_GROUP)]
    spawner = make_spawner(gallery_file, system, options={"image": "gallery-demo:main"})
    run(spawner.start())
    assert spawner.started_with["image"] == "gallery-demo:main"


def test_an_image_with_data_gets_its_own_folder_seeded_once_from_the_image(tmp_path):
    gallery = tmp_path / "gallery.yaml"
    gallery.write_text(
        yaml.safe_dump(
            {
                **GALLERY,
                "images": {
                    "gallery-demo": {"repo": "https://x.org/d", "data": {"path": "gallery/data"}}
                },
            }
        )
    )
    mount = tmp_path / "volume"
    mount.mkdir()
    user = make_user("alice", False, {})
    spawner = make_spawner(
        str(gallery),
        user,
        server="",
        options={"image": "gallery-demo:main"},
        data_volume="proj-gallery-data",
        data_volume_mount=str(mount),
    )
    spawner.docker.do_inspect_volume = lambda name: {"Mountpoint": "/var/lib/docker/v/_data"}
    run(spawner.start())
    assert spawner.volumes == {
        "/var/lib/docker/v/_data/images/gallery-demo": {
            "bind": "/home/jovyan/gallery/data",
            "mode": "ro",
        }
    }
    seed = next(c for c in spawner.docker.calls if c[0] == "create_container")[2]
    assert seed["image"] == "gallery-demo:main" and seed["network_disabled"] is True
    assert seed["environment"] == {"SOURCE": "/home/jovyan/gallery/data"}
    assert seed["host_config"]["Binds"] == [
        "/var/lib/docker/v/_data/images/gallery-demo:/gallery-seed:rw"
    ]
    assert (mount / "images" / "gallery-demo" / ".gallery-seeded").exists()
    again = make_spawner(str(gallery), user, server="x", options={"image": "gallery-demo:main"})
    again.data_volume, again.data_volume_mount = "proj-gallery-data", str(mount)
    again.docker.do_inspect_volume = spawner.docker.do_inspect_volume
    run(again.start())
    assert "create_container" not in again.docker.names()  # seeded once


def test_an_image_the_check_found_unfit_is_refused_with_the_reason(gallery_file):
    old = ImageFacts(jupyterhub="1.4.0", singleuser=True).to_label()
    missing = ImageFacts(jupyterhub="6.1.1", singleuser=True, paths={"app.ipynb": False})
    visitor = make_spawner(gallery_file, make_user("v1", True, {}))
    visitor.docker.images["gallery-demo:main"][COMPATIBILITY_LABEL] = missing.to_label()
    with pytest.raises(web.HTTPError) as refused:
        run(visitor.start())
    assert refused.value.status_code == 409
    assert "app.ipynb is not in the image" in refused.value.log_message
    admin = make_spawner(gallery_file, make_user("a", False, {}), server="", options={})
    admin.user_options = {"image": "other:v1"}
    admin.docker.images["other:v1"][COMPATIBILITY_LABEL] = old
    with pytest.raises(web.HTTPError, match=r"jupyterhub 1\.4\.0"):
        run(admin.start())
    # A missing example file matters to that example's visitors, not to other users.
    fine = make_spawner(gallery_file, make_user("b", False, {}), server="", options={})
    fine.user_options = {"image": "gallery-demo:main"}
    fine.docker.images["gallery-demo:main"][COMPATIBILITY_LABEL] = missing.to_label()
    assert run(fine.start()) == ("172.27.0.9", 8888)


def test_an_unclaimed_warm_server_runs_at_a_low_cpu_priority(gallery_file):
    from gallery_hub.visitors import WARM_GROUP

    user = make_user("w1", True, {})
    user.groups = [SimpleNamespace(name=WARM_GROUP)]
    assert run(make_spawner(gallery_file, user).host_config())["cpu_shares"] == 128
    visitor = make_spawner(gallery_file, make_user("v1", True, {}))
    assert "cpu_shares" not in run(visitor.host_config())


def test_only_a_warm_server_gets_the_spare_kernel_manager_before_it_starts(
    gallery_file, monkeypatch
):
    from gallery_hub import spare_kernel
    from gallery_hub.visitors import WARM_GROUP

    async def created(self):
        return {"Id": "new-container"}

    monkeypatch.setattr(DockerSpawner, "create_object", created)
    monkeypatch.setattr(DockerSpawner, "get_env", lambda self: {})
    monkeypatch.setattr(DockerSpawner, "get_args", lambda self: ["--ip=0.0.0.0"])
    user = make_user("w1", True, {})
    user.groups = [SimpleNamespace(name=WARM_GROUP)]
    warm = make_spawner(gallery_file, user)
    warm.image_env = ("PATH=/opt/venv/bin", "PYTHONPATH=/srv/app")
    run(warm.create_object())
    upload = next(c for c in warm.docker.calls if c[0] == "put_archive")
    assert upload[1] == ("new-container", "/", spare_kernel.module_archive())
    assert spare_kernel.SERVER_ARG in warm.get_args()
    assert warm.get_env()["PYTHONPATH"] == f"{spare_kernel.INSTALL_DIR}:/srv/app"

    visitor = make_spawner(gallery_file, make_user("v1", True, {}))
    run(visitor.create_object())
    assert "put_archive" not in visitor.docker.names()
    assert spare_kernel.SERVER_ARG not in visitor.get_args()
    assert "PYTHONPATH" not in visitor.get_env()
