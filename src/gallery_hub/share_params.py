"""Share links: `/hub/gallery/<id>?p.<name>=<value>` hands parameters to the example.

The hub never interprets them: it checks their shape, shows them on the example's page
(escaped) and appends them to the Voila URL, where the notebook reads them from its query
string (Voila puts it in the kernel's environment: `os.environ["QUERY_STRING"]`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlencode

PREFIX = "p."
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,39}")
MAX_VALUE_LENGTH = 200
MAX_PARAMS = 10


class ParamError(ValueError):
    """A share link's parameters are not usable (the message says why)."""


def share_params(arguments: Mapping[str, list]) -> list[tuple[str, str]]:
    """The `p.<name>` arguments of a request (tornado's `request.arguments` shape), checked."""
    params: list[tuple[str, str]] = []
    for key, values in arguments.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        if not NAME.fullmatch(name):
            raise ParamError(
                f"parameter names use letters, digits, '_', '.' and '-' (max 40): {name[:40]!r}"
            )
        for raw in values:
            value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            if len(value) > MAX_VALUE_LENGTH:
                raise ParamError(
                    f"the value of {name} is longer than {MAX_VALUE_LENGTH} characters"
                )
            if any(ord(c) < 32 for c in value):
                raise ParamError(f"the value of {name} holds control characters")
            params.append((name, value))
    if len(params) > MAX_PARAMS:
        raise ParamError(f"a share link carries at most {MAX_PARAMS} parameters")
    return params


def query_string(params: list[tuple[str, str]]) -> str:
    """The parameters as the app's query string (without `?`)."""
    return urlencode(params)


def form_fields(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The parameters as the Launch form's hidden fields (`p.<name>`)."""
    return [(PREFIX + name, value) for name, value in params]
