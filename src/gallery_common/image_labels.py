"""The labels every gallery environment image carries, and how to read them back.

The builder writes them at build time (through the repo2docker engine's `labels`), and the hub
reads them from an image's `Config.Labels` to list environments and size their servers.
Every value is a string, as Docker requires. Standard library only: both sides import this.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

LABEL_PREFIX = "org.neurolang-gallery."

# Present (with the value "true") on every image the gallery built; nothing else counts.
MARKER_LABEL = f"{LABEL_PREFIX}environment"
MARKER_VALUE = "true"
# For `docker images --filter label=...` / APIClient.images(filters={"label": ...}).
MARKER_FILTER = f"{MARKER_LABEL}={MARKER_VALUE}"

REPOSITORY_LABEL = f"{LABEL_PREFIX}repository"
REF_LABEL = f"{LABEL_PREFIX}ref"
COMMIT_LABEL = f"{LABEL_PREFIX}commit"
DISPLAY_NAME_LABEL = f"{LABEL_PREFIX}display-name"
MEMORY_LIMIT_LABEL = f"{LABEL_PREFIX}memory-limit-gb"
CPU_LIMIT_LABEL = f"{LABEL_PREFIX}cpu-limit"
BUILD_TIME_LABEL = f"{LABEL_PREFIX}build-time"
BUILDER_VERSION_LABEL = f"{LABEL_PREFIX}builder-version"
# Which stack (compose project) built it: `prune` touches only its own stack's images.
STACK_LABEL = f"{LABEL_PREFIX}stack"

LABEL_KEYS = (
    MARKER_LABEL,
    REPOSITORY_LABEL,
    REF_LABEL,
    COMMIT_LABEL,
    DISPLAY_NAME_LABEL,
    MEMORY_LIMIT_LABEL,
    CPU_LIMIT_LABEL,
    BUILD_TIME_LABEL,
    BUILDER_VERSION_LABEL,
    STACK_LABEL,
)

MAX_TEXT_LENGTH = 1024
_COMMIT_RE = re.compile(r"[0-9a-f]{7,64}")
# scp-like git address `user@host:path` (no scheme); the part before `@` is userinfo.
_SCP_LIKE_RE = re.compile(r"^(?P<userinfo>[^/@:]+(?::[^/@]*)?)@(?P<rest>[^/:]+:.*)$")
_DISTRIBUTION = "neurolang-gallery"


@dataclass(frozen=True)
class EnvironmentLabels:
    """What a gallery environment image says about itself.

    Text fields are "" when the label is missing; numbers and the build time are None when
    missing or unreadable, so an old or hand-labelled image still parses.
    """

    repository: str
    ref: str
    commit: str
    display_name: str
    memory_limit_gb: float | None
    cpu_limit: float | None
    build_time: datetime | None
    builder_version: str


def strip_credentials(url: str) -> str:
    """`url` without userinfo (user, password or token), query or fragment.

    Handles scheme URLs (https://user:secret@host/repo) and scp-like git addresses
    (user@host:path). Anything else (a local path) is returned unchanged.
    """
    url = url.strip()
    if "://" in url:
        # Split by hand rather than urlsplit, which raises on malformed hosts like "[::1".
        scheme, _, rest = url.partition("://")
        end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        # rpartition: an unencoded "@" in a password still leaves the host after the last one.
        host = rest[:end].rpartition("@")[2]
        # Query and fragment are dropped too: tokens are sometimes passed as ?access_token=.
        path = re.split(r"[?#]", rest[end:], maxsplit=1)[0]
        return f"{scheme}://{host}{path}"
    match = _SCP_LIKE_RE.match(url)
    if match:
        return match.group("rest")
    return url


def make_labels(
    *,
    repository: str,
    ref: str,
    commit: str,
    display_name: str,
    memory_limit_gb: float | None = None,
    cpu_limit: float | None = None,
    build_time: datetime | None = None,
    builder_version: str | None = None,
    stack: str | None = None,
) -> dict[str, str]:
    """The labels to put on an environment image built from `repository` at `commit`.

    Validates every value and raises ValueError naming the field on bad input. The repository
    URL is stored without any credentials. `memory_limit_gb` and `cpu_limit` are omitted when
    None; `build_time` defaults to now and must be timezone-aware; `builder_version` defaults
    to the installed version of this project; `stack` (the compose project) is omitted when
    None or empty.
    """
    clean_repository = strip_credentials(_text("repository", repository))
    if not clean_repository:
        raise ValueError("repository: must not be empty")
    labels = {
        MARKER_LABEL: MARKER_VALUE,
        REPOSITORY_LABEL: clean_repository,
        REF_LABEL: _text("ref", ref),
        COMMIT_LABEL: _commit(commit),
        DISPLAY_NAME_LABEL: _text("display_name", display_name),
        BUILD_TIME_LABEL: _format_time(build_time),
        BUILDER_VERSION_LABEL: _text(
            "builder_version", builder_version if builder_version is not None else _version()
        ),
    }
    if memory_limit_gb is not None:
        labels[MEMORY_LIMIT_LABEL] = _format_positive("memory_limit_gb", memory_limit_gb)
    if cpu_limit is not None:
        labels[CPU_LIMIT_LABEL] = _format_positive("cpu_limit", cpu_limit)
    if stack:
        labels[STACK_LABEL] = _text("stack", stack)
    return labels


def parse_labels(labels: dict[str, str] | None) -> EnvironmentLabels | None:
    """Read the gallery labels of an image (its `Config.Labels`).

    None when `labels` is None or lacks the gallery marker. Missing or malformed values do
    not raise: text becomes "", numbers and the build time become None.
    """
    if not labels or str(labels.get(MARKER_LABEL, "")).strip().lower() != MARKER_VALUE:
        return None

    def text(key: str) -> str:
        value = labels.get(key)
        return value.strip() if isinstance(value, str) else ""

    return EnvironmentLabels(
        # Cleaned again: the image may have been labelled by something other than make_labels.
        repository=strip_credentials(text(REPOSITORY_LABEL)),
        ref=text(REF_LABEL),
        commit=text(COMMIT_LABEL).lower(),
        display_name=text(DISPLAY_NAME_LABEL),
        memory_limit_gb=_parse_positive(labels.get(MEMORY_LIMIT_LABEL)),
        cpu_limit=_parse_positive(labels.get(CPU_LIMIT_LABEL)),
        build_time=_parse_time(labels.get(BUILD_TIME_LABEL)),
        builder_version=text(BUILDER_VERSION_LABEL),
    )


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise ValueError(f"{field}: must not be empty")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"{field}: longer than {MAX_TEXT_LENGTH} characters")
    # Control characters (newlines, escapes) would corrupt logs and the hub's pages.
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError(f"{field}: must not contain control characters")
    return value


def _commit(value: object) -> str:
    commit = _text("commit", value).lower()
    if not _COMMIT_RE.fullmatch(commit):
        raise ValueError(f"commit: expected a resolved hexadecimal commit id, got {commit!r}")
    return commit


def _format_positive(field: str, value: object) -> str:
    # bool is an int subclass; True GB is a bug, not a limit.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field}: expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{field}: must be a positive number, got {value!r}")
    return str(int(number)) if number.is_integer() else repr(number)


def _parse_positive(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def _format_time(value: datetime | None) -> str:
    if value is None:
        value = datetime.now(UTC)
    if not isinstance(value, datetime):
        raise ValueError(f"build_time: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("build_time: must be timezone-aware (a naive time is ambiguous)")
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    # A naive stamp can only have come from a careless writer; UTC is what we always write.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _version() -> str:
    try:
        return metadata.version(_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        # Running from a source tree (PYTHONPATH=src) without an installed distribution.
        return "0+unknown"
