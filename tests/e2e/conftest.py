"""End-to-end fixtures on the real compose stack (the harness itself is in harness.py).

Fixtures:
- `stack` (session): the running stack (`harness.running_stack`); prints
  `docker compose logs` when a test failed; logs are saved to test-artifacts/.
- `admin_password` (session): the password the hub generated on first start, read
  from the hub log where it is printed once.
- `admin_token` (session): an API token of the admin.
- `gitserver` (session): base URL of the fixture Git server on the stack's network.
- `artifacts` (session): the folder for screenshots and logs (test-artifacts/).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import (
    ARTIFACTS,
    make_admin_token,
    read_admin_password,
    running_stack,
    start_gitserver,
)


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
