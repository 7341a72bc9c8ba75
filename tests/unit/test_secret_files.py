"""Secrets are generated once, kept with mode 600, and never regenerated."""

import stat

import pytest

from gallery_common.secret_files import random_token, read_or_create_secret, write_secret


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_once_with_mode_600(tmp_path):
    path = tmp_path / "state" / "token"
    first, created = read_or_create_secret(path)
    assert created is True
    assert mode(path) == 0o600
    again, created_again = read_or_create_secret(path)
    assert (again, created_again) == (first, False)


def test_uses_the_generator_only_when_missing(tmp_path):
    calls = []

    def generate():
        calls.append(1)
        return "s3cret-value"

    path = tmp_path / "x"
    assert read_or_create_secret(path, generate) == ("s3cret-value", True)
    assert read_or_create_secret(path, generate) == ("s3cret-value", False)
    assert len(calls) == 1


def test_tightens_a_readable_file(tmp_path):
    path = tmp_path / "loose"
    path.write_text("value\n")
    path.chmod(0o644)
    assert read_or_create_secret(path)[0] == "value"
    assert mode(path) == 0o600


def test_empty_file_is_an_error_not_an_empty_secret(tmp_path):
    path = tmp_path / "empty"
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_or_create_secret(path)


def test_random_tokens_are_long_and_distinct():
    tokens = {random_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 43 for t in tokens)


def test_write_secret_replaces_with_mode_600(tmp_path):
    path = tmp_path / "w"
    write_secret(path, "one")
    write_secret(path, "two")
    assert path.read_text() == "two\n"
    assert mode(path) == 0o600
