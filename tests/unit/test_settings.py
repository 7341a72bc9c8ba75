"""Environment parsing: values, defaults, and errors that name the variable."""

import pytest

from gallery_common.settings import (
    SettingError,
    env_bool,
    env_bytes,
    env_float,
    env_int,
    env_str,
    parse_bytes,
)


def test_env_str_strips_and_defaults():
    assert env_str({"A": "  x "}, "A") == "x"
    assert env_str({"A": "   "}, "A", "d") == "d"
    assert env_str({}, "A", "d") == "d"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("off", False), ("0", False), ("", None)],
)
def test_env_bool(raw, expected):
    default = None
    assert env_bool({"B": raw}, "B", default) is expected


def test_env_bool_rejects_other_words_naming_the_variable():
    with pytest.raises(SettingError, match=r"^GALLERY_DATA_READ_ONLY: expected true or false"):
        env_bool({"GALLERY_DATA_READ_ONLY": "maybe"}, "GALLERY_DATA_READ_ONLY", True)


def test_env_int_range_and_type():
    assert env_int({"N": "7"}, "N", 1, minimum=1, maximum=10) == 7
    assert env_int({}, "N", 3) == 3
    with pytest.raises(SettingError, match="N: expected a whole number"):
        env_int({"N": "7.5"}, "N", 1)
    with pytest.raises(SettingError, match="N: must be at most 10"):
        env_int({"N": "11"}, "N", 1, maximum=10)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "abc"])
def test_env_float_refuses_non_finite_and_words(raw):
    with pytest.raises(SettingError) as info:
        env_float({"CPU": raw}, "CPU", 1.0)
    assert info.value.name == "CPU"


def test_env_float_minimum():
    with pytest.raises(SettingError, match=r"CPU: must be at least 0\.01"):
        env_float({"CPU": "0"}, "CPU", 1.0, minimum=0.01)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("512M", 512 * 1024**2), ("2G", 2 * 1024**3), ("1.5g", int(1.5 * 1024**3)), ("4096", 4096)],
)
def test_parse_bytes(raw, expected):
    assert parse_bytes("MEM", raw) == expected


@pytest.mark.parametrize("raw", ["", "2X", "-1G", "0", "G"])
def test_parse_bytes_rejects(raw):
    with pytest.raises(SettingError) as info:
        parse_bytes("GALLERY_DEFAULT_MEM_LIMIT", raw)
    assert info.value.name == "GALLERY_DEFAULT_MEM_LIMIT"


def test_env_bytes_default():
    assert env_bytes({}, "MEM", "1G") == 1024**3
