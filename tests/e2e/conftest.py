"""End-to-end fixtures on the real compose stack (the harness itself is in harness.py).

Fixtures:
- `stack` (session): the running stack (`harness.running_stack`); prints
  `docker compose logs` when a test failed; logs are saved to test-artifacts/.
- `admin_password` (session): the password the hub generated on first start, read
  from the hub log where it is printed once.
- `admin_token` (session): an API token of the admin.
- `gitserver` (session): base URL of the fixture Git server on the stack's network.
- `demo_image` (session): the fixture repository `demo` built as `gallery-demo:main`, the
  image of the test gallery's examples; visitors are removed when the session ends.
- `artifacts` (session): the folder for screenshots and logs (test-artifacts/).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .environments_client import EnvironmentsClient
from .harness import (
    ARTIFACTS,
    make_admin_token,
    read_admin_password,
    running_stack,
    start_gitserver,
)
from .visitors import remove_visitors


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def stack(request, artifacts):
    with running_stack(artifacts, lambda: request.session.testsfailed > 0) as the_stack:
        yield the_stack


@pytest.fixture(scope="session")
def gitserver(stack) -> str:
    return start_gitserver(stack)


@pytest.fixture(scope="session")
def admin_token(stack, admin_password) -> str:
    return make_admin_token(stack, admin_password)


@pytest.fixture(scope="session")
def admin_password(stack) -> str:
    return read_admin_password(stack)


@pytest.fixture(scope="session")
def demo_image(stack, admin_token, gitserver):
    client = EnvironmentsClient(stack.base_url, admin_token)
    response = client.create(repository=f"{gitserver}/public/demo.git", name="gallery-demo")
    build = client.wait(response.json()["id"])
    assert build["state"] == "built" and build["image"] == "gallery-demo:main"
    yield build["image"]
    remove_visitors(stack, admin_token)
    time.sleep(3)
    client.request("DELETE", f"/{build['id']}")
