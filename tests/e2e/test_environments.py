"""Environments: admins turn git repositories into images, through the API."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import requests

from .environments_client import EnvironmentsClient


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def image_labels(image: str) -> dict[str, str]:
    inspect = json.loads(docker("image", "inspect", image).stdout)[0]
    return inspect["Config"]["Labels"] or {}


def image_id(image: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()


@pytest.fixture(scope="module")
def client(stack, admin_token, gitserver) -> EnvironmentsClient:
    return EnvironmentsClient(stack.base_url, admin_token)


def test_add_follow_log_rebuild_and_delete(client, gitserver):
    response = client.create(
        repository=f"{gitserver}/public/demo.git", name="demo", memory=1, cpu=0.5
    )
    assert response.status_code == 202, response.text
    build = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", build["id"])
    assert build["state"] in {"queued", "building"}

    events = client.log_events(build["id"])
    kinds = [event for event, _, _ in events]
    assert kinds[-1] == "state" and kinds.count("log") >= 3
    ids = [event_id for event, event_id, _ in events if event == "log"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[-1][2]["state"] == "built", events[-1][2]

    built = client.get(build["id"])
    assert built["state"] == "built"
    assert built["image"] == "demo:main"
    assert re.fullmatch(r"[0-9a-f]{40}", built["resolved_commit"])
    assert built["image_size"] > 0
    assert built["reused"] is False

    labels = image_labels("demo:main")
    prefix = "org.neurolang-gallery."
    assert labels[prefix + "environment"] == "true"
    assert labels[prefix + "repository"] == f"{gitserver}/public/demo.git"
    assert labels[prefix + "commit"] == built["resolved_commit"]
    assert labels[prefix + "display-name"] == "demo"
    assert float(labels[prefix + "memory-limit-gb"]) == 1
    assert float(labels[prefix + "cpu-limit"]) == 0.5
    assert labels[prefix + "build-time"]
    assert labels[prefix + "builder-version"]

    # The log is kept after the build, and a stream can resume after any event.
    full = client.log_text(build["id"])
    assert "demo" in full
    resumed = client.log_events(build["id"], last_event_id=ids[1])
    assert [i for e, i, _ in resumed if e == "log"] == ids[2:]

    listed = {env["image"]: env for env in client.list()}
    assert listed["demo:main"]["id"] == build["id"]

    before = image_id("demo:main")
    rebuild = client.request("POST", f"/{build['id']}/rebuild")
    assert rebuild.status_code == 202, rebuild.text
    again = client.wait(rebuild.json()["id"])
    assert again["state"] == "built"
    assert again["reused"] is True
    assert again["resolved_commit"] == built["resolved_commit"]
    assert "already built" in client.log_text(again["id"])
    assert image_id("demo:main") == before

    deleted = client.request("DELETE", f"/{again['id']}")
    assert deleted.status_code == 204
    assert docker("image", "inspect", "demo:main", check=False).returncode != 0
    assert "demo:main" not in {env["image"] for env in client.list()}
    assert client.request("GET", f"/{build['id']}").status_code == 404


BAD_INPUT = [
    ({"repository": "/etc/passwd"}, "repository"),
    ({"repository": "file:///srv/repo.git"}, "repository"),
    ({"repository": "ext::sh -c touch% /tmp/pwned"}, "repository"),
    ({"repository": "--upload-pack=touch /tmp/pwned"}, "repository"),
    ({"repository": "http://127.0.0.1/repo.git"}, "repository"),
    ({"repository": "http://localhost/repo.git"}, "repository"),
    ({"repository": "http://169.254.169.254/latest/meta-data"}, "repository"),
    ({"repository": "http://hub:8081/hub/api"}, "repository"),
    ({"repository": "http://builder:8090/"}, "repository"),
    ({"repository": "https://user:secret@example.org/repo.git"}, "repository"),
    ({"ref": "main"}, "repository"),
    ({"repository": "http://gitserver/public/demo.git", "ref": "-bad"}, "ref"),
    ({"repository": "http://gitserver/public/demo.git", "ref": "a..b"}, "ref"),
    ({"repository": "http://gitserver/public/demo.git", "name": "Bad Name"}, "name"),
    ({"repository": "http://gitserver/public/demo.git", "name": "-x"}, "name"),
    ({"repository": "http://gitserver/public/demo.git", "memory": 0}, "memory"),
    ({"repository": "http://gitserver/public/demo.git", "memory": "lots"}, "memory"),
    ({"repository": "http://gitserver/public/demo.git", "memory": 100000}, "memory"),
    ({"repository": "http://gitserver/public/demo.git", "cpu": -1}, "cpu"),
    ({"repository": "http://gitserver/public/demo.git", "cpu": 1000}, "cpu"),
    ({"repository": "http://gitserver/public/demo.git", "colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("body", "field"), BAD_INPUT)
def test_bad_input_is_refused_naming_the_field(client, body, field):
    before = len(client.list())
    response = client.request("POST", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert len(client.list()) == before  # nothing was queued


def test_who_may_manage_environments(stack, client, admin_token):
    hub = f"{stack.base_url}/hub/api"
    admin = {"Authorization": f"token {admin_token}"}
    for name in ("e2e-viewer", "e2e-manager"):
        requests.post(f"{hub}/users/{name}", headers=admin, timeout=10)

    def token_for(user: str, **body) -> str:
        response = requests.post(f"{hub}/users/{user}/tokens", headers=admin, json=body, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["token"]

    anonymous = requests.get(client.api, timeout=10)
    assert anonymous.status_code == 401

    viewer = EnvironmentsClient(stack.base_url, token_for("e2e-viewer"))
    assert viewer.request("GET").status_code == 403
    assert viewer.create(repository="http://gitserver/public/demo.git").status_code == 403

    narrow_admin = EnvironmentsClient(stack.base_url, token_for("admin", scopes=["read:users"]))
    assert narrow_admin.request("GET").status_code == 403

    added = requests.post(
        f"{hub}/groups/environment-managers/users",
        headers=admin,
        json={"users": ["e2e-manager"]},
        timeout=10,
    )
    assert added.status_code == 200, added.text
    manager = EnvironmentsClient(stack.base_url, token_for("e2e-manager"))
    assert manager.request("GET").status_code == 200


def test_browser_posts_need_the_xsrf_token(stack, admin_password):
    from .hub_login import login

    session, _ = login(stack.base_url, "admin", admin_password)
    page = session.get(f"{stack.base_url}/services/environments/", timeout=30)
    assert page.status_code == 200
    assert "/services/environments/" in page.url
    api = f"{stack.base_url}/services/environments/api/environments"
    assert session.get(api, timeout=10).status_code == 200
    refused = session.post(api, json={"repository": "http://gitserver/public/demo.git"}, timeout=10)
    assert refused.status_code == 403
