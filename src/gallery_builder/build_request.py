"""Validate an admin's build request before git or repo2docker ever see it.

Every check raises `ValidationError` naming the form/API field, so the UI can show the message
next to the right input. Nothing here runs git or talks to Docker; the repository URL is
checked by `repository_policy` (its only I/O is DNS, through an injectable resolver), or by
another check the caller passes (build-image's local directories).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from gallery_builder.repository_policy import (
    SCP_SYNTAX,
    URL_SYNTAX,
    RepositoryRefused,
    Resolver,
    check_repository_url,
    url_scheme,
)
from gallery_common.gallery_file import NAME_PATTERN

# Turns the submitted repository value into the URL git gets; raises ValidationError.
RepositoryCheck = Callable[[object], str]
# A full commit id (SHA-1 or SHA-256), as git prints it.
FULL_COMMIT = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")


class ValidationError(ValueError):
    """One field of a build request is unusable; `field` says which, `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ValidationError], tuple[str, str]]:
        # ValueError would pickle only the joined text, which __init__ cannot take back.
        return (type(self), (self.field, self.message))


# --- repository URL -------------------------------------------------------------------------


def validate_repository_url(
    url: object,
    *,
    allow_private: bool = True,
    blocked_hosts: frozenset[str] = frozenset(),
    host_addresses: frozenset[str] = frozenset(),
    resolve: Resolver = socket.getaddrinfo,
) -> str:
    """The URL git may fetch from (see `repository_policy`); else ValidationError."""
    try:
        return check_repository_url(
            url,  # type: ignore[arg-type]
            allow_private=allow_private,
            blocked_hosts=blocked_hosts,
            host_addresses=host_addresses,
            resolve=resolve,
        )
    except RepositoryRefused as e:
        raise ValidationError("repository", str(e)) from None


# --- ref, name, image tag -------------------------------------------------------------------

_MAX_REF_LENGTH = 255
_REF_FORBIDDEN = " ~^:?*[\\"
_NAME_INVALID = re.compile(r"[^a-z0-9_.-]+")
_NAME_SEPARATOR_RUN = re.compile(r"[._-]{2,}")
_TAG_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_TAG_LENGTH = 128


def _ref_problem(ref: str) -> str | None:
    """The first `git check-ref-format` rule that `ref` breaks, or None."""
    if len(ref) > _MAX_REF_LENGTH:
        return f"must be at most {_MAX_REF_LENGTH} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in ref):
        return "must not contain control characters"
    if not ref.isprintable():
        return "must not contain unprintable characters"
    for ch in _REF_FORBIDDEN:
        if ch in ref:
            return f"must not contain {ch!r}"
    checks = (
        (".." in ref, "must not contain '..'"),
        ("@{" in ref, "must not contain '@{'"),
        (ref == "@", "must not be '@'"),
        (ref.startswith("-"), "must not start with '-'"),
        (ref.startswith("/"), "must not start with '/'"),
        (ref.endswith("/"), "must not end with '/'"),
        ("//" in ref, "must not contain '//'"),
        (ref.endswith("."), "must not end with '.'"),
    )
    for broken, message in checks:
        if broken:
            return message
    for component in ref.split("/"):
        if component.startswith("."):
            return "no part between '/' may start with '.'"
        if component.endswith(".lock"):
            return "no part between '/' may end with '.lock'"
    return None


def validate_ref(ref: str | None) -> str | None:
    """The branch, tag or commit to build; None (or blank) means the default branch."""
    if ref is None:
        return None
    if not isinstance(ref, str):
        raise ValidationError("ref", "must be a string")
    ref = ref.strip()
    if not ref:
        return None
    problem = _ref_problem(ref)
    if problem is not None:
        raise ValidationError("ref", problem)
    return ref


def validate_name(name: str) -> str:
    """The environment name without surrounding whitespace, if it fits the name pattern."""
    if not isinstance(name, str):
        raise ValidationError("name", "must be a string")
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            "name",
            "use 1-63 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def derive_name(url: str) -> str:
    """A default environment name: the repository's last path part, made to fit the pattern."""
    text = url.strip() if isinstance(url, str) else ""
    if url_match := URL_SYNTAX.fullmatch(text):
        path = re.split(r"[?#]", url_match["rest"], maxsplit=1)[0]
    elif scp_match := SCP_SYNTAX.fullmatch(text):
        path = scp_match["path"]
    else:
        path = text
    last = unquote(path.rstrip("/").rsplit("/", 1)[-1])
    if last.lower().endswith(".git"):
        last = last[: -len(".git")]
    candidate = _NAME_INVALID.sub("-", last.lower())
    # Runs like ".." or "-_" are legal names but not legal Docker image names.
    candidate = _NAME_SEPARATOR_RUN.sub("-", candidate)
    candidate = candidate[:63].strip("._-")
    return candidate or "environment"


def image_tag_for_ref(ref: str) -> str:
    """A Docker tag for `ref`: full commit ids shorten to 7 hex digits, other refs are sanitized.

    An empty ref gives "latest"; refs longer than a tag allows keep a hash suffix so that two
    long branch names with the same beginning still get different tags.
    """
    if FULL_COMMIT.fullmatch(ref):
        return ref[:7].lower()
    tag = _TAG_INVALID.sub("-", ref).lstrip(".-")
    if not tag:
        return "latest"
    if len(tag) > _MAX_TAG_LENGTH:
        digest = hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        tag = f"{tag[: _MAX_TAG_LENGTH - len(digest) - 1]}-{digest}"
    return tag


def image_name(name: str, ref: str) -> str:
    """The image reference "name:tag" for an environment built from `ref`."""
    return f"{validate_name(name)}:{image_tag_for_ref(ref)}"


# --- resources ------------------------------------------------------------------------------

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _positive_number(field: str, value: object, maximum: float, unit: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        # bool is an int subclass; true would silently mean 1.
        raise ValidationError(field, "must be a number, not true or false")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if not _DECIMAL.fullmatch(text):
            raise ValidationError(field, "must be a number like 2 or 0.5")
        number = float(text)
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise ValidationError(field, f"must be at most {maximum:g}{unit}") from None
    else:
        raise ValidationError(field, "must be a number like 2 or 0.5")
    if not math.isfinite(number):
        raise ValidationError(field, "must be a finite number")
    if number <= 0:
        raise ValidationError(field, "must be greater than 0")
    if number > maximum:
        raise ValidationError(field, f"must be at most {maximum:g}{unit}")
    return number


def validate_memory_gb(value: object, *, maximum: float) -> float | None:
    """Memory limit in GB (number or numeric string); None/"" means no explicit limit."""
    return _positive_number("memory", value, maximum, " GB")


def validate_cpu(value: object, *, maximum: float) -> float | None:
    """CPU limit in cores (number or numeric string); None/"" means no explicit limit."""
    return _positive_number("cpu", value, maximum, " CPUs")


# --- credentials ----------------------------------------------------------------------------

_MAX_USERNAME_LENGTH = 256
_MAX_PASSWORD_LENGTH = 4096


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Username and password/token for fetching a private repository over https."""

    username: str
    password: str = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        # Requests get logged; the secret must never be.
        return f"Credentials(username={self.username!r}, password='***')"


def _optional_text(field: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    return value


def validate_credentials(username: str | None, password: str | None) -> Credentials | None:
    """Credentials when both parts are given, None when neither is; never echoes the password."""
    user = _optional_text("username", username).strip()
    secret = _optional_text("password", password)
    if not user and not secret:
        return None
    if not user:
        raise ValidationError("username", "is required when a password is given")
    if not secret:
        raise ValidationError("password", "is required when a username is given")
    if len(user) > _MAX_USERNAME_LENGTH:
        raise ValidationError("username", f"must be at most {_MAX_USERNAME_LENGTH} characters")
    if not user.isprintable():
        raise ValidationError("username", "must not contain control characters")
    if ":" in user:
        # HTTP basic auth joins "user:password"; a colon in the user name would split wrongly.
        raise ValidationError("username", "must not contain ':'")
    if len(secret) > _MAX_PASSWORD_LENGTH:
        raise ValidationError("password", f"must be at most {_MAX_PASSWORD_LENGTH} characters")
    if not secret.isprintable():
        raise ValidationError("password", "must not contain line breaks or control characters")
    return Credentials(user, secret)


# --- whole request --------------------------------------------------------------------------

_BODY_KEYS = frozenset({"repository", "ref", "name", "memory", "cpu", "credentials"})
_CREDENTIAL_KEYS = frozenset({"username", "password"})


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """A fully validated build: safe to hand to git and repo2docker."""

    repository: str
    ref: str | None
    name: str
    memory_gb: float | None
    cpu: float | None
    credentials: Credentials | None = None


def _refuse_unknown_keys(body: Mapping[Any, Any], known: frozenset[str], prefix: str) -> None:
    unknown = sorted(str(key) for key in body if key not in known)
    if unknown:
        expected = ", ".join(sorted(known))
        raise ValidationError(f"{prefix}{unknown[0]}", f"unknown field; expected: {expected}")


def _parse_credentials(value: object, repository: str) -> Credentials | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError("credentials", "must be an object with username and password")
    _refuse_unknown_keys(value, _CREDENTIAL_KEYS, prefix="credentials.")
    credentials = validate_credentials(value.get("username"), value.get("password"))
    if credentials is None:
        return None
    # Plain http is allowed for self-hosted servers on a LAN; the README advises https.
    if url_scheme(repository) not in {"https", "http"}:
        raise ValidationError(
            "credentials", "a username and password only work with https:// (or http://)"
        )
    return credentials


def parse_build_request(
    body: Mapping[str, Any],
    *,
    max_memory_gb: float,
    max_cpu: float,
    allow_private: bool = True,
    blocked_hosts: frozenset[str] = frozenset(),
    host_addresses: frozenset[str] = frozenset(),
    resolve: Resolver = socket.getaddrinfo,
    check_repository: RepositoryCheck | None = None,
) -> BuildRequest:
    """Validate a submitted build (form or JSON body) into a BuildRequest; else ValidationError.

    The repository goes through `check_repository` when given (build-image's local paths),
    else through the URL policy with `allow_private`, `blocked_hosts` and `resolve`.
    """
    if not isinstance(body, Mapping):
        raise ValidationError("body", "must be a JSON object")
    _refuse_unknown_keys(body, _BODY_KEYS, prefix="")
    repository = body.get("repository")
    if repository is None:
        raise ValidationError("repository", "is required")
    if check_repository is None:
        repository = validate_repository_url(
            repository,
            allow_private=allow_private,
            blocked_hosts=blocked_hosts,
            host_addresses=host_addresses,
            resolve=resolve,
        )
    else:
        repository = check_repository(repository)
    ref = validate_ref(body.get("ref"))
    raw_name = body.get("name")
    # A blank name means "pick one for me", like a missing one.
    if raw_name is None or (isinstance(raw_name, str) and not raw_name.strip()):
        name = derive_name(repository)
    else:
        name = validate_name(raw_name)
    return BuildRequest(
        repository=repository,
        ref=ref,
        name=name,
        memory_gb=validate_memory_gb(body.get("memory"), maximum=max_memory_gb),
        cpu=validate_cpu(body.get("cpu"), maximum=max_cpu),
        credentials=_parse_credentials(body.get("credentials"), repository),
    )
