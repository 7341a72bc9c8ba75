"""Private repositories: credentials work for the clone and are found nowhere afterwards."""

from __future__ import annotations

import json
import subprocess
import tarfile

import pytest

from .environments_client import EnvironmentsClient
from .harness import GIT_PASSWORD, GIT_USER


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout


def image_contains(image: str, needle: bytes) -> bool:
    """Search every file of every layer of the image (docker save) for `needle`."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    found = False
    with tarfile.open(fileobj=save.stdout, mode="r|") as outer:
        for member in outer:
            data = outer.extractfile(member)
            if data is None:
                continue
            blob = data.read()
            if needle in blob:
                found = True
                break
    save.stdout.close()
    save.wait()
    return found


@pytest.fixture(scope="module")
def client(stack, admin_token, gitserver) -> EnvironmentsClient:
    return EnvironmentsClient(stack.base_url, admin_token)


def test_private_repository_needs_credentials_and_keeps_them_secret(stack, client, gitserver):
    url = f"{gitserver}/private/demo.git"
    without = client.create(repository=url, name="private-demo")
    assert without.status_code == 202, without.text
    failed = client.wait(without.json()["id"])
    assert failed["state"] == "failed"
    assert failed["reason"]

    with_credentials = client.create(
        repository=url,
        name="private-demo",
        credentials={"username": GIT_USER, "password": GIT_PASSWORD},
    )
    assert with_credentials.status_code == 202, with_credentials.text
    assert GIT_PASSWORD not in with_credentials.text
    build = client.wait(with_credentials.json()["id"])
    assert build["state"] == "built", client.log_text(build["id"])[-2000:]
    image = build["image"]

    secret = GIT_PASSWORD
    # The API and the logs, live and stored.
    assert secret not in json.dumps(client.list())
    assert secret not in client.log_text(build["id"])
    assert secret not in client.log_text(failed["id"])
    # The builder's database (and its write-ahead log).
    db = stack.compose(
        "exec", "-T", "builder", "sh", "-c", "cat /srv/builder/state/builds.sqlite*"
    ).stdout
    assert secret not in db
    # Image labels, history, every layer (including a copied .git/config).
    assert secret not in docker("image", "inspect", image)
    assert secret not in docker("history", "--no-trunc", image)
    assert not image_contains(image, secret.encode())
    # docker inspect of every container (but the git server's own), and the stack's logs.
    for container in docker("ps", "-a", "--format", "{{.Names}}").split():
        if container != f"{stack.project}-gitserver":
            assert secret not in docker("inspect", container), container
    assert secret not in stack.logs("builder")
    assert secret not in stack.logs("hub")

    assert client.request("DELETE", f"/{build['id']}").status_code == 204
