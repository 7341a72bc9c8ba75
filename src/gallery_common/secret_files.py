"""Secrets generated on first start and kept in files only their owner can read."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

SECRET_FILE_MODE = 0o600


def random_token(nbytes: int = 32) -> str:
    """A URL-safe random string with `nbytes` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def read_or_create_secret(
    path: Path, generate: Callable[[], str] = random_token
) -> tuple[str, bool]:
    """Return the secret stored at `path`, creating it with mode 600 if missing.

    The second value is True when the secret was created by this call.
    Creation is atomic (O_EXCL), so two processes starting at once agree on one value.
    A file that others can read is tightened to 600 rather than trusted as is.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    except FileExistsError:
        return _read_existing_secret(path), False
    value = generate()
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value, True


def write_secret(path: Path, value: str) -> None:
    """Replace the secret at `path` atomically, keeping mode 600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.replace(tmp, path)


def _read_existing_secret(path: Path) -> str:
    if stat.S_IMODE(path.stat().st_mode) != SECRET_FILE_MODE:
        path.chmod(SECRET_FILE_MODE)
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"secret file {path} is empty; delete it to generate a new one")
    return value
