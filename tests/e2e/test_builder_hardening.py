"""What a repository can do to the builder, and what old images do to the disk.

A repository can't make git go where validation would not (redirects, submodules), its
build steps can't reach the host and get limits, it can't set the gallery's labels, and
every build, whatever its outcome, leaves no untagged layers behind; the previous image
stays for a roll back until newer ones replace it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from .environments_client import EnvironmentsClient
from .harness import OUTSIDE_HOST, edit_file, run, start_outside
from .test_containment import OUTSIDE_MARKER, Listener, host_addresses
from .test_environments_faults import wait_for_log

PREVIOUS = ":gallery-previous-"


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout


def inspect(image: str) -> dict:
    return json.loads(docker("image", "inspect", image))[0]


@pytest.fixture(scope="module")
def client(stack, admin_token, gitserver) -> EnvironmentsClient:
    return EnvironmentsClient(stack.base_url, admin_token)


@pytest.fixture(scope="module")
def outside(stack) -> str:
    """The tests' "internet": a web server only the egress proxy reaches."""
    name = start_outside(stack, "outside-builds", "index.html", OUTSIDE_MARKER)
    yield f"http://{OUTSIDE_HOST}/"
    run(["docker", "rm", "-f", name], check=False)


def build(client: EnvironmentsClient, **fields) -> tuple[dict, str]:
    response = client.create(**fields)
    assert response.status_code == 202, response.text
    build_id = response.json()["id"]
    log = client.log_text(build_id)
    return client.get(build_id), log


def delete_environment(client: EnvironmentsClient, image: str) -> None:
    current = {env["image"]: env for env in client.list()}
    if image in current:
        answer = client.request("DELETE", f"/{current[image]['id']}")
        assert answer.status_code == 204, answer.text


def image_exists(image: str) -> bool:
    done = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    return done.returncode == 0


def dangling() -> set[str]:
    return set(docker("images", "-q", "--no-trunc", "-f", "dangling=true").split())


def hub_saw(stack, text: str) -> bool:
    return text in stack.logs("hub")


# --- fetching ----------------------------------------------------------------------------


def test_a_redirect_to_a_forbidden_address_fails_naming_it(stack, client, gitserver):
    final, log = build(client, repository=f"{gitserver}/redirect/demo.git", name="redirected")
    assert final["state"] == "failed", log[-2000:]
    assert (
        "redirects (HTTP 302) to http://hub:8081/hub/api/redirected-by-gitserver/"
        in (final["reason"])
    )
    assert "follows no redirect" in final["reason"]
    time.sleep(1)
    assert not hub_saw(stack, "redirected-by-gitserver"), "the hub got the redirected request"
    delete_environment(client, "redirected:latest")


def test_a_submodule_pointing_at_the_hub_fails_the_same_way(stack, client, gitserver):
    final, log = build(client, repository=f"{gitserver}/public/badsubmodule.git")
    assert final["state"] == "failed", log[-2000:]
    assert (
        "submodule 'lib' (http://hub:8081/hub/api/submodule-from-gitserver.git)"
        in (final["reason"])
    )
    assert "one of this server's own services" in final["reason"]
    assert not hub_saw(stack, "submodule-from-gitserver")
    delete_environment(client, "badsubmodule:main")


def test_credentials_in_the_url_are_refused_naming_the_field(client, gitserver):
    host = gitserver.removeprefix("http://")
    for url in (f"http://user@{host}/public/demo.git", f"http://u:p@{host}/public/demo.git"):
        answer = client.create(repository=url)
        assert answer.status_code == 400, answer.text
        assert answer.json() == {
            "error": "repository: put credentials in the credentials fields, not in the URL",
            "field": "repository",
            "message": "put credentials in the credentials fields, not in the URL",
        }


# --- the build box -----------------------------------------------------------------------


def test_a_build_step_reaches_the_outside_through_the_proxy_and_never_the_host(
    stack, client, gitserver, outside
):
    listener = Listener()
    try:
        targets = [[a, p] for a in sorted(host_addresses()) for p in (listener.port, 80)]
        targets += [["169.254.169.254", 80], ["hub", 8081], ["traefik", 80]]
        edit_file(stack, "sealed", "targets.json", json.dumps(targets).encode())
        final, log = build(client, repository=f"{gitserver}/public/sealed.git")
        time.sleep(1)
    finally:
        listener.close()
    assert final["state"] == "failed", log[-3000:]
    probes = [line for line in log.splitlines() if line.startswith("probe direct")]
    assert len(probes) >= len(targets), log[-3000:]
    assert not [line for line in probes if line.endswith(" open")], probes
    assert listener.connections == []
    # The only way out: the egress proxy, which Docker handed the step as HTTP_PROXY.
    assert f"probe proxy 200 {OUTSIDE_MARKER}" in log, log[-3000:]
    box = re.search(r"Build steps run in a sealed network \(box ([\w.-]+)\)", log)
    assert box, log[-3000:]
    # It was the spare made ahead (after the module's earlier builds), sealed like any box.
    assert box[1].startswith(f"{stack.project}-buildbox-spare-"), box[1]
    # The build's box is gone; what is left of the stack's boxes is the one spare, made
    # ahead of the next build (by label: a spare's name is a box's like any other).
    assert not docker("ps", "-aq", "--filter", f"name=^/{box[1]}$")
    boxes = docker(
        "ps",
        "-a",
        "--format",
        '{{.Label "org.neurolang-gallery.build-box"}}',
        "--filter",
        f"label=org.neurolang-gallery.build-box-stack={stack.project}",
    ).split()
    assert boxes in ([], ["spare"]), boxes
    delete_environment(client, "sealed:main")


def test_a_build_past_the_memory_limit_fails_out_of_memory(stack, client, gitserver):
    with stack.settings(("builder",), GALLERY_BUILD_MEMORY_GB="0.25"):
        final, log = build(client, repository=f"{gitserver}/public/hungry.git")
    assert final["state"] == "failed", log[-2000:]
    assert "ran out of memory" in final["reason"], final["reason"]
    assert "0.25 GB (GALLERY_BUILD_MEMORY_GB)" in final["reason"]
    delete_environment(client, "hungry:main")


# --- labels and the slow import ----------------------------------------------------------


def test_only_the_builder_sets_gallery_labels_and_the_slow_import_is_gone(client, gitserver):
    repository = f"{gitserver}/public/labelled.git"
    final, log = build(client, repository=repository, memory=1)
    try:
        assert final["state"] == "built", log[-3000:]
        image = inspect("labelled:main")
        labels = image["Config"]["Labels"]
        prefix = "org.neurolang-gallery."
        # The configured limit, not the Dockerfile's 512; the CPU label it set is blanked.
        assert labels[prefix + "memory-limit-gb"] == "1"
        assert labels[prefix + "cpu-limit"] == ""
        assert labels[prefix + "display-name"] == "labelled"
        assert labels[prefix + "made-up"] == ""
        assert labels[prefix + "environment"] == "true"
        assert labels[prefix + "repository"] == repository
        # rfc3987_syntax is gone, and the image runs as the user its Dockerfile chose.
        assert image["Config"]["User"] == "1000"
        gone = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--entrypoint",
                "python3",
                "labelled:main",
                "-c",
                "import importlib.util as u, os; print(u.find_spec('rfc3987_syntax'), os.getuid())",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert gone.stdout.split() == ["None", "1000"], gone
        assert "rfc3987_syntax" in log  # the removal is in the log
    finally:
        delete_environment(client, "labelled:main")


# --- disk hygiene and roll back ----------------------------------------------------------


def test_builds_of_any_outcome_leave_no_dangling_layers_and_keep_the_previous_image(
    stack, client, gitserver
):
    before = dangling()
    failed, log = build(client, repository=f"{gitserver}/public/failing-build.git")
    assert failed["state"] == "failed" and "about to fail" in log

    cancelled = client.create(repository=f"{gitserver}/public/slow.git", name="slow-hygiene")
    wait_for_log(client, cancelled.json()["id"], "slow step 3")
    assert client.request("POST", f"/{cancelled.json()['id']}/cancel").status_code == 200
    assert client.wait(cancelled.json()["id"], timeout=60)["state"] == "cancelled"

    editions = f"{gitserver}/public/editions.git"
    first, _ = build(client, repository=editions, name="hygiene")
    assert first["state"] == "built"
    first_id = inspect("hygiene:main")["Id"]
    edit_file(stack, "editions", "edition.txt", b"second edition\n")
    second, log = build(client, repository=editions, name="hygiene")
    try:
        assert second["state"] == "built", log[-2000:]
        assert inspect("hygiene:main")["Id"] != first_id
        # The image it replaced is still there, under a previous tag, for a roll back.
        previous = f"hygiene{PREVIOUS}main-{first_id.removeprefix('sha256:')[:12]}"
        assert inspect(previous)["Id"] == first_id
        listed = {env["image"]: env for env in client.list()}["hygiene:main"]
        assert [p["image"] for p in listed["previous"]] == [previous]
        assert listed["previous"][0]["commit"] == first["resolved_commit"]
        time.sleep(8)  # the daemon winds the cancelled build down; the cleanup's second pass
        assert dangling() - before == set(), docker("images", "-a")
    finally:
        delete_environment(client, "hygiene:main")
        delete_environment(client, "broken:main")
        delete_environment(client, "slow-hygiene:main")
    assert not image_exists(previous), "deleting an environment removes its previous images"


def test_a_previous_image_a_container_used_is_removed_once_the_container_is_gone(
    stack, client, gitserver
):
    repository = f"{gitserver}/public/editions.git"
    assert build(client, repository=repository, name="holder")[0]["state"] == "built"
    first_id = inspect("holder:main")["Id"]
    holder = f"{stack.project}-holder"
    docker("run", "-d", "--name", holder, "--entrypoint", "sleep", first_id, "600")
    try:
        for edition in ("third", "fourth"):
            edit_file(stack, "editions", "edition.txt", f"{edition} edition\n".encode())
            final, log = build(client, repository=repository, name="holder")
            assert final["state"] == "built", log[-2000:]
        # GALLERY_KEEP_PREVIOUS=1: the second image is the kept previous one; the first is
        # older, but the container holds it.
        previous = {env["image"]: env for env in client.list()}["holder:main"]["previous"]
        assert [p["id"] for p in previous][-1] == first_id
        assert previous[-1]["used_by"] == [holder]
        delete = client.request("DELETE", f"/{final['id']}")
        assert delete.status_code == 409 and holder in delete.json()["error"]
        docker("rm", "-f", holder)
        deadline = time.monotonic() + 60
        while image_exists(first_id) and time.monotonic() < deadline:
            time.sleep(2)
        assert not image_exists(first_id), "the sweep never removed it"
        previous = {env["image"]: env for env in client.list()}["holder:main"]["previous"]
        assert len(previous) == 1
    finally:
        docker("rm", "-f", holder, check=False)
        delete_environment(client, "holder:main")


def test_prune_removes_what_no_environment_references_and_the_list_shows_the_disk(
    stack, client, gitserver
):
    kept, _ = build(client, repository=f"{gitserver}/public/demo.git", name="pruned-kept")
    assert kept["state"] == "built"
    # An image of this stack that no environment references (as a deleted record leaves).
    orphan = f"pruned-orphan:{stack.project}"
    docker("tag", "pruned-kept:main", orphan)
    try:
        answer = client.request("POST", "/prune")
        assert answer.status_code == 200, answer.text
        assert orphan in answer.json()["removed"]
        assert "pruned-kept:main" not in answer.json()["removed"]
        assert docker("images", "-q", "pruned-kept:main") and not docker("images", "-q", orphan)
        disk = client.request("GET").json()["disk"]
        assert 0 < disk["free_bytes"] < disk["total_bytes"]
        assert disk["used_bytes"] > 0 and disk["min_free_bytes"] == 5 * 1024**3
    finally:
        docker("rmi", orphan, check=False)
        delete_environment(client, "pruned-kept:main")


def test_builds_are_refused_below_the_free_disk_floor(stack, client, gitserver):
    with stack.settings(("builder",), GALLERY_MIN_FREE_DISK_GB="100000"):
        answer = client.create(repository=f"{gitserver}/public/demo.git", name="no-room")
    assert answer.status_code == 409, answer.text
    assert "below GALLERY_MIN_FREE_DISK_GB (100000 GB)" in answer.json()["error"]


# --- no request is a 500 -----------------------------------------------------------------

FUZZ_BODIES = [
    b"{",
    b"[" * 100_000,
    b'{"repository": 5}',
    b'{"repository": ["x"]}',
    b'{"repository": null}',
    b'"just a string"',
    b"[1, 2]",
    b'{"repository": "http://gitserver/public/demo.git", "ref": "\\ud800"}',
    b'{"repository": "http://gitserver/public/demo.git", "memory": 1e999}',
    b'{"repository": "http://gitserver/public/demo.git", "memory": ' + b"9" * 5000 + b"}",
    b'{"repository": "http://gitserver/public/demo.git", "credentials": "x"}',
    b'{"repository": "http://gitserver/public/demo.git", "credentials": {"username": 1}}',
    b'{"repository": "' + b"a" * 300_000 + b'"}',
    b'{"repository": "http://gitserver/public/demo.git", "name": "' + b"n" * 100_000 + b'"}',
    b"\xff\xfe\x00garbage",
]


def test_no_request_gets_a_500(client):
    answers = []
    for body in FUZZ_BODIES:
        answer = client.request("POST", data=body, headers={"Content-Type": "application/json"})
        answers.append((body[:40], answer.status_code))
    unknown = "0" * 32
    for method, path in [
        ("GET", f"/{unknown}"),
        ("DELETE", f"/{unknown}"),
        ("POST", f"/{unknown}/rebuild"),
        ("POST", f"/{unknown}/cancel"),
        ("POST", f"/{unknown}/rollback"),
        ("GET", f"/{unknown}/log"),
        ("GET", "/not-an-id"),
    ]:
        answers.append((path[:40], client.request(method, path).status_code))
    long_name = client.request("GET", "/default-name?repository=" + "x" * 10_000)
    answers.append(("long default-name", long_name.status_code))
    answers.append(
        (
            "huge Last-Event-ID",
            client.request(
                "GET", f"/{unknown}/log", headers={"Last-Event-ID": "9" * 30}
            ).status_code,
        )
    )
    assert all(status < 500 for _, status in answers), answers
    assert all(400 <= status < 500 for _, status in answers[:-2]), answers
