"""Gallery image labels: what make_labels writes and parse_labels reads back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gallery_common.image_labels import (
    BUILD_TIME_LABEL,
    COMMIT_LABEL,
    CPU_LIMIT_LABEL,
    LABEL_KEYS,
    LABEL_PREFIX,
    MARKER_FILTER,
    MARKER_LABEL,
    MEMORY_LIMIT_LABEL,
    REPOSITORY_LABEL,
    EnvironmentLabels,
    make_labels,
    parse_labels,
    strip_credentials,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
BUILT = datetime(2026, 5, 7, 21, 9, 36, tzinfo=UTC)


def labels(**overrides: object) -> dict[str, str]:
    args: dict[str, object] = {
        "repository": "https://github.com/NeuroLang/gallery-demo",
        "ref": "main",
        "commit": COMMIT,
        "display_name": "Gallery demo",
        "memory_limit_gb": 2,
        "cpu_limit": 1.5,
        "build_time": BUILT,
        "builder_version": "0.1.0",
        "stack": "neurolang-gallery",
    }
    args.update(overrides)
    return make_labels(**args)  # type: ignore[arg-type]


def test_round_trip() -> None:
    parsed = parse_labels(labels())
    assert parsed == EnvironmentLabels(
        repository="https://github.com/NeuroLang/gallery-demo",
        ref="main",
        commit=COMMIT,
        display_name="Gallery demo",
        memory_limit_gb=2.0,
        cpu_limit=1.5,
        build_time=BUILT,
        builder_version="0.1.0",
    )


def test_every_label_is_a_prefixed_string_and_marks_the_image() -> None:
    written = labels()
    assert set(written) == set(LABEL_KEYS)
    assert all(key.startswith(LABEL_PREFIX) for key in written)
    assert all(isinstance(value, str) for value in written.values())
    assert f"{MARKER_LABEL}={written[MARKER_LABEL]}" == MARKER_FILTER
    assert written[MEMORY_LIMIT_LABEL] == "2"
    assert written[CPU_LIMIT_LABEL] == "1.5"
    assert written[BUILD_TIME_LABEL] == "2026-05-07T21:09:36Z"


def test_the_result_is_frozen() -> None:
    parsed = parse_labels(labels())
    assert parsed is not None
    with pytest.raises(AttributeError):
        parsed.ref = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:secret@host/repo", "https://host/repo"),
        ("https://ghp_token@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("https://user:p@ss@host:8443/repo", "https://host:8443/repo"),
        ("https://host/repo?access_token=secret#frag", "https://host/repo"),
        ("git@github.com:org/repo.git", "github.com:org/repo.git"),
        ("https://github.com/org/repo", "https://github.com/org/repo"),
        ("/srv/repos/demo", "/srv/repos/demo"),
    ],
)
def test_strip_credentials(url: str, expected: str) -> None:
    assert strip_credentials(url) == expected


def test_credentials_never_reach_the_labels() -> None:
    written = labels(repository="https://user:secret@host/repo")
    assert written[REPOSITORY_LABEL] == "https://host/repo"
    assert not any("secret" in value or "user" in value for value in written.values())


def test_parse_strips_credentials_from_hand_written_labels() -> None:
    written = labels()
    written[REPOSITORY_LABEL] = "https://user:secret@host/repo"
    parsed = parse_labels(written)
    assert parsed is not None
    assert parsed.repository == "https://host/repo"


@pytest.mark.parametrize(
    "image_labels",
    [
        None,
        {},
        {"maintainer": "someone", "repo2docker.version": "2026.4.0"},
        {MARKER_LABEL: "false", REPOSITORY_LABEL: "https://host/repo"},
    ],
)
def test_non_gallery_images_parse_to_none(image_labels: dict[str, str] | None) -> None:
    assert parse_labels(image_labels) is None


def test_parse_is_tolerant_of_missing_and_malformed_values() -> None:
    parsed = parse_labels(
        {
            MARKER_LABEL: "True",
            MEMORY_LIMIT_LABEL: "lots",
            CPU_LIMIT_LABEL: "-1",
            BUILD_TIME_LABEL: "yesterday",
        }
    )
    assert parsed == EnvironmentLabels(
        repository="",
        ref="",
        commit="",
        display_name="",
        memory_limit_gb=None,
        cpu_limit=None,
        build_time=None,
        builder_version="",
    )


@pytest.mark.parametrize("value", ["nan", "inf", "0", "", "1e999"])
def test_parse_rejects_unusable_numbers(value: str) -> None:
    parsed = parse_labels({MARKER_LABEL: "true", MEMORY_LIMIT_LABEL: value})
    assert parsed is not None
    assert parsed.memory_limit_gb is None


def test_parse_reads_times_with_offsets_or_none_as_utc() -> None:
    with_offset = parse_labels(
        {MARKER_LABEL: "true", BUILD_TIME_LABEL: "2026-05-07T23:09:36+02:00"}
    )
    naive = parse_labels({MARKER_LABEL: "true", BUILD_TIME_LABEL: "2026-05-07T21:09:36"})
    assert with_offset is not None and with_offset.build_time == BUILT
    assert with_offset.build_time.tzinfo == UTC
    assert naive is not None and naive.build_time == BUILT


def test_build_time_is_stored_in_utc() -> None:
    cest = timezone(timedelta(hours=2))
    written = labels(build_time=datetime(2026, 5, 7, 23, 9, 36, 123456, tzinfo=cest))
    assert written[BUILD_TIME_LABEL] == "2026-05-07T21:09:36Z"


def test_build_time_defaults_to_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    parsed = parse_labels(labels(build_time=None))
    after = datetime.now(UTC)
    assert parsed is not None and parsed.build_time is not None
    assert before <= parsed.build_time <= after


def test_optional_limits_are_omitted() -> None:
    written = labels(memory_limit_gb=None, cpu_limit=None)
    assert MEMORY_LIMIT_LABEL not in written
    assert CPU_LIMIT_LABEL not in written
    parsed = parse_labels(written)
    assert parsed is not None
    assert (parsed.memory_limit_gb, parsed.cpu_limit) == (None, None)


def test_builder_version_defaults_to_something() -> None:
    assert parse_labels(labels(builder_version=None)).builder_version  # type: ignore[union-attr]


def test_commit_is_normalised_to_lower_case() -> None:
    assert labels(commit=COMMIT.upper())[COMMIT_LABEL] == COMMIT


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repository", ""),
        ("repository", "   "),
        ("ref", ""),
        ("commit", "main"),
        ("commit", "abc"),
        ("display_name", "two\nlines"),
        ("display_name", "x" * 2000),
        ("display_name", 42),
        ("memory_limit_gb", 0),
        ("memory_limit_gb", -1),
        ("memory_limit_gb", float("nan")),
        ("memory_limit_gb", "2"),
        ("cpu_limit", True),
        ("cpu_limit", float("inf")),
        ("build_time", datetime(2026, 5, 7, 21, 9, 36)),
        ("build_time", "2026-05-07"),
        ("builder_version", ""),
    ],
)
def test_make_labels_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        labels(**{field: value})
