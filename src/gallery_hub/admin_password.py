"""The first admin's password: taken from the environment or generated once and kept hashed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from gallery_common.secret_files import read_or_create_secret

_ALGORITHM = "pbkdf2_sha256"
_ITERATIONS = 310_000
MIN_PASSWORD_LENGTH = 12


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = _ITERATIONS
) -> str:
    """A salted PBKDF2 hash in the form `pbkdf2_sha256$<iterations>$<salt>$<hash>`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join(
        [_ALGORITHM, str(iterations), _b64(salt), _b64(digest)],
    )


def verify_password(password: str, stored_hash: str) -> bool:
    """True when `password` matches `stored_hash`; False for any malformed hash."""
    try:
        algorithm, iterations, salt, digest = stored_hash.split("$")
        if algorithm != _ALGORITHM:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)


@dataclass(frozen=True)
class AdminPassword:
    """The hash to check logins against, and the clear password if we just generated it."""

    password_hash: str
    generated_password: str | None = None


def load_admin_password(state_dir: Path, configured_password: str) -> AdminPassword:
    """Hash the configured password, or generate one on first start and keep its hash.

    Only the hash is written to disk (mode 600). The clear text of a generated password
    is returned once, on the start that created it, so the hub can print it once.
    """
    if configured_password:
        return AdminPassword(hash_password(configured_password))
    generated: list[str] = []

    def generate_hash() -> str:
        generated.append(secrets.token_urlsafe(18))
        return hash_password(generated[0])

    password_hash, _ = read_or_create_secret(state_dir / "admin-password.hash", generate_hash)
    return AdminPassword(password_hash, generated[0] if generated else None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
