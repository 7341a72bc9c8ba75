"""Read typed, validated settings from environment variables.

Every error names the variable, so a self-hoster knows which line of `.env` to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


class SettingError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""

    def __init__(self, name: str, problem: str):
        self.name = name
        super().__init__(f"{name}: {problem}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_BYTES_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def env_str(env: Mapping[str, str], name: str, default: str = "") -> str:
    """The variable's value with surrounding spaces removed; `default` when unset or empty."""
    value = env.get(name, "").strip()
    return value or default


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env_str(env, name).lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingError(name, f"expected true or false, got {value!r}")


def env_int(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = env_str(env, name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingError(name, f"expected a whole number, got {value!r}") from None
    _check_range(name, number, minimum, maximum)
    return number


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    value = env_str(env, name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingError(name, f"expected a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise SettingError(name, f"expected a finite number, got {value!r}")
    _check_range(name, number, minimum, maximum)
    return number


def parse_bytes(name: str, value: str) -> int:
    """Parse a size such as `2G`, `512M` or `1073741824` (binary units) into bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[bB]?\s*", value)
    if not match:
        raise SettingError(name, f"expected a size such as 512M or 2G, got {value!r}")
    number = float(match.group(1)) * _BYTES_UNITS[match.group(2).lower()]
    if number <= 0:
        raise SettingError(name, "must be greater than zero")
    return int(number)


def env_bytes(env: Mapping[str, str], name: str, default: str) -> int:
    return parse_bytes(name, env_str(env, name, default))


def _check_range(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise SettingError(name, f"must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise SettingError(name, f"must be at most {maximum}, got {number}")
